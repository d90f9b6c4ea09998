"""An in-process stand-in for the gateway's HTTP contract, served through httpx.MockTransport."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

_SESSIONS = re.compile(r"^/v1/tasks/([^/]+)/projects/([^/]+)/sessions$")
_SESSION = re.compile(
    r"^/v1/tasks/([^/]+)/projects/([^/]+)/sessions/([^/]+)(/entries|/summary|/subkeys)?$"
)


@dataclass
class _Summary:
    version: int = 0
    data: Any = None
    mtime: int = 0


@dataclass
class FakeGateway:
    """Holds transcripts in memory and answers the gateway's routes."""

    parts: dict[tuple[str, str, str, str | None], list[list[Any]]] = field(default_factory=dict)
    mtimes: dict[tuple[str, str, str, str | None], int] = field(default_factory=dict)
    summaries: dict[tuple[str, str, str], _Summary] = field(default_factory=dict)
    receipts: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    last_mtime: int = 0

    def transport(self) -> httpx.MockTransport:
        """Return a transport that routes requests to this fake."""
        return httpx.MockTransport(self.handle)

    def _now(self) -> int:
        now = int(time.time() * 1000)
        self.last_mtime = max(now, self.last_mtime + 1)
        return self.last_mtime

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        self.requests.append(request)
        path = request.url.path
        params = request.url.params
        if path in ("/healthz", "/readyz"):
            return _ok({"status": "ok"})
        match = _SESSIONS.match(path)
        if match and request.method == "GET":
            task, project = (unquote(g) for g in match.groups())
            return self._list(task, project, params.get("summaries") == "true")
        match = _SESSION.match(path)
        if not match:
            return _error(404, "not_found", f"no route {request.method} {path}")
        task, project, session = (unquote(g) for g in match.groups()[:3])
        route = match.group(4) or ""
        subpath = params.get("subpath")
        key = (task, project, session, subpath)
        summary_key = (task, project, session)
        if route == "/entries" and request.method == "POST":
            return self._append(request, key, summary_key)
        if route == "/entries" and request.method == "GET":
            if key not in self.parts:
                return _error(404, "not_found", "no such transcript")
            return _ok({"entries": [e for part in self.parts[key] for e in part]})
        if route == "/summary" and request.method == "GET":
            current = self.summaries.get(summary_key, _Summary())
            return _ok({"version": current.version, "data": current.data})
        if route == "/summary" and request.method == "PUT":
            body = json.loads(request.content)
            current = self.summaries.setdefault(summary_key, _Summary())
            if body["expected_version"] != current.version:
                return _error(409, "summary_conflict", "summary version moved")
            current.version += 1
            current.data = body["data"]
            current.mtime = self._now()
            return _ok({"version": current.version})
        if route == "/subkeys" and request.method == "GET":
            subs = sorted(k[3] for k in self.parts if k[:3] == key[:3] and k[3] is not None)
            return _ok({"subkeys": subs}, next_token=None)
        if route == "" and request.method == "DELETE":
            for k in list(self.parts):
                if k == key or (subpath is None and k[:3] == key[:3]):
                    del self.parts[k]
                    self.mtimes.pop(k, None)
            if subpath is None:
                self.summaries.pop(summary_key, None)
            return httpx.Response(204)
        return _error(405, "method_not_allowed", f"{request.method} {path}")

    def _append(
        self,
        request: httpx.Request,
        key: tuple[str, str, str, str | None],
        summary_key: tuple[str, str, str],
    ) -> httpx.Response:
        idem = request.headers.get("idempotency-key")
        if idem and (str(key), idem) in self.receipts:
            return _ok(self.receipts[(str(key), idem)])
        body = json.loads(request.content)
        entries = body["entries"]
        if not entries or not all(isinstance(e, dict) for e in entries):
            return _error(400, "invalid", "entries must be a non-empty list of objects")
        parts = self.parts.setdefault(key, [])
        parts.append(entries)
        mtime = self._now()
        self.mtimes[key] = mtime
        receipt: dict[str, Any] = {"seq": len(parts), "count": len(entries), "mtime": mtime}
        update = body.get("summary")
        if update is not None:
            current = self.summaries.setdefault(summary_key, _Summary())
            applied = update["expected_version"] == current.version
            if applied:
                current.version += 1
                current.data = update["data"]
                current.mtime = mtime
            receipt["summary"] = {"applied": applied, "version": current.version}
        if idem:
            self.receipts[(str(key), idem)] = receipt
        return _ok(receipt)

    def _list(self, task: str, project: str, summaries: bool) -> httpx.Response:
        out = []
        for (t, p, s, sub), mtime in sorted(self.mtimes.items(), key=lambda kv: kv[0][2]):
            if (t, p) != (task, project) or sub is not None:
                continue
            item: dict[str, Any] = {"session_id": s, "mtime": mtime}
            if summaries:
                current = self.summaries.get((t, p, s))
                if current is None or current.data is None:
                    continue
                item = {"session_id": s, "mtime": current.mtime, "data": current.data}
            out.append(item)
        return _ok({"sessions": out}, next_token=None)


def _ok(data: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"data": data, **extra})


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": message, "request_id": "fake-req"}},
    )
