"""The SessionStore adapter that keeps transcripts in a transcript-gateway task."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote, urlencode

import httpx
from claude_agent_sdk import fold_session_summary
from claude_agent_sdk.types import (
    SessionKey,
    SessionListSubkeysKey,
    SessionStore,
    SessionStoreEntry,
    SessionStoreListEntry,
    SessionSummaryEntry,
)

from ._errors import (
    GatewayError,
    GatewayUnavailableError,
    StaleWriterError,
    StoreClosedError,
    SummaryConflictError,
)
from ._version import __version__

try:  # Optional: an agent that traces with OpenTelemetry continues its trace
    # through the gateway (W3C `traceparent`/`tracestate` on every request).
    from opentelemetry.propagate import inject as _inject_trace_context
except ImportError:  # Without opentelemetry-api nothing is added.
    _inject_trace_context = None

__all__ = ["Binding", "GatewaySessionStore", "TokenSource"]

TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A bearer token, or a callable (sync or async) returning the current one."""

logger = logging.getLogger("transcript_gateway")

# What the gateway calls retryable: the same request may succeed shortly
# (appends carry an Idempotency-Key, so a retry never stores twice). Never
# checksum_mismatch, integrity_violation, internal or any 4xx refusal.
_RETRYABLE_CODES = frozenset(
    {"backend_unavailable", "timeout", "draining", "conflict", "overloaded"}
)
# An answer without the gateway's envelope (a proxy or load balancer in front
# of it) is retried by its status.
_RETRY_STATUSES_WITHOUT_CODE = frozenset({502, 503, 504})
_MIN_ATTEMPT_SECONDS = 0.05
# Longest Retry-After honoured; the call's own deadline bounds it too.
_MAX_RETRY_AFTER_SECONDS = 30.0

K = TypeVar("K")
V = TypeVar("V")


class Binding(TypedDict):
    """A task's binding to its Claude session, as the gateway stores it."""

    claude_session_id: str
    project_key: str
    cwd: str
    created_ms: int


class _Lru(Generic[K, V]):
    """A mapping that keeps at most ``limit`` entries, dropping the least recently used."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._items.pop(key, None)

    def keys(self) -> list[K]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

_SessionId = tuple[str, str]
_KeyId = tuple[str, str, str | None]


@dataclass(frozen=True)
class _Summary:
    version: int
    data: dict[str, Any] | None


@dataclass(frozen=True)
class _FailedAppend:
    body: bytes
    idempotency_key: str


def _quote(segment: str) -> str:
    return quote(segment, safe="")


def _query(params: Mapping[str, Any]) -> str:
    present = {k: v for k, v in params.items() if v is not None}
    if not present:
        return ""
    return "?" + urlencode(present, quote_via=quote)


def _session_id(key: Mapping[str, Any]) -> _SessionId:
    return (key["project_key"], key["session_id"])


def _key_id(key: SessionKey) -> _KeyId:
    return (key["project_key"], key["session_id"], key.get("subpath"))


class GatewaySessionStore(SessionStore):
    """Claude Agent SDK SessionStore backed by one task on a transcript-gateway."""

    def __init__(
        self,
        base_url: str,
        task_id: str,
        *,
        token: TokenSource | None = None,
        timeout: float = 50.0,
        attempt_timeout: float = 20.0,
        max_attempts: int = 3,
        backoff: Sequence[float] = (0.2, 0.8),
        max_summary_rounds: int = 8,
        page_size: int | None = None,
        cache_size: int = 1024,
        epoch: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_summary_rounds < 1:
            raise ValueError("max_summary_rounds must be at least 1")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.task_id = task_id
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.max_attempts = max_attempts
        self.backoff = tuple(backoff)
        self.max_summary_rounds = max_summary_rounds
        self.page_size = page_size
        self.epoch = epoch
        self._stale_epoch: int | None = None
        if token is not None and not (isinstance(token, str) or callable(token)):
            raise TypeError("token must be a str or a callable returning one")
        self._token = token
        self._transport = transport
        self._client = client
        self._owns_client = client is None
        # Per session (and per key): bounded, least recently used first out.
        self.cache_size = cache_size
        self._summaries: _Lru[_SessionId, _Summary] = _Lru(cache_size)
        # The project key the task is bound to, once bind() or binding() saw it.
        self._bound_project: str | None = None
        self._drift_warned: set[str] = set()
        self._locks: OrderedDict[_SessionId, asyncio.Lock] = OrderedDict()
        self._failed: _Lru[_KeyId, _FailedAppend] = _Lru(cache_size)
        # Appends running now; aclose() waits for them.
        self._appending = 0
        self._appends_done = asyncio.Event()
        self._appends_done.set()
        self._closing = False

    @property
    def epoch(self) -> int | None:
        """The writer epoch sent as ``X-Writer-Epoch`` with every append, or None."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise ValueError(f"epoch must be a non-negative int or None, not {value!r}")
        self._epoch = value

    async def __aenter__(self) -> GatewaySessionStore:
        """Enter an async context that closes the HTTP client on exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Wait for pending appends, then close the HTTP client."""
        await self.aclose()

    async def aclose(self, timeout: float | None = None) -> bool:
        """Wait for the appends still running (at most ``timeout`` seconds,
        by default the store's ``timeout``), then close the HTTP client if
        this store created it. Appends called after this starts raise
        :class:`StoreClosedError`. Returns False if appends were still
        running when the wait ran out (they fail as the client closes)."""
        self._closing = True
        limit = self.timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._appends_done.wait(), limit)
            drained = True
        except asyncio.TimeoutError:
            logger.warning(
                "closing with %d append(s) still running after %.1f s", self._appending, limit
            )
            drained = False
        if self._client is not None and self._owns_client:
            await self._client.aclose()
            self._client = None
        return drained

    # -- SessionStore --------------------------------------------------------

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        """Append a batch of entries in order; main keys also fold the session summary."""
        if not entries:
            return
        if self._closing:
            raise StoreClosedError("the store is closing: no new appends")
        self._appending += 1
        self._appends_done.clear()
        try:
            await self._append(key, entries)
        finally:
            self._appending -= 1
            if self._appending == 0:
                self._appends_done.set()

    async def _append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        self._check_not_fenced()
        self._warn_on_drift(key["project_key"])
        deadline = self._deadline()
        kid = _key_id(key)
        failed = self._failed.get(kid)
        entries_json = json.dumps(entries, separators=(",", ":"))
        # The same batch again on the same key right after it failed is the
        # SDK's retry: it reuses the failed attempt's key, so a batch that
        # landed before its answer was lost is not stored twice.
        if failed is not None and failed.body == entries_json.encode():
            idempotency_key = failed.idempotency_key
        else:
            idempotency_key = uuid.uuid4().hex
        try:
            if key.get("subpath") is None:
                await self._append_main(key, entries, entries_json, idempotency_key, deadline)
            else:
                body = '{"entries":' + entries_json + "}"
                await self._post_entries(key, body.encode(), idempotency_key, deadline)
        except Exception:
            self._failed.put(kid, _FailedAppend(entries_json.encode(), idempotency_key))
            raise
        self._failed.pop(kid)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        """Return every entry of a transcript in order, or None if it does not exist."""
        deadline = self._deadline()
        url = self._session_url(key, "/entries") + _query({"subpath": key.get("subpath")})
        response = await self._send("GET", url, deadline=deadline)
        if response.status_code == 404:
            return None
        entries: list[SessionStoreEntry] = self._ok(response)["data"]["entries"]
        return entries

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        """List the main transcripts of a project with their mtimes in epoch ms."""
        items = await self._list_project(project_key, summaries=False)
        return [{"session_id": item["session_id"], "mtime": int(item["mtime"])} for item in items]

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        """List the stored fold_session_summary state of every session in a project."""
        items = await self._list_project(project_key, summaries=True)
        return [
            {
                "session_id": item["session_id"],
                "mtime": int(item["mtime"]),
                "data": item["data"],
            }
            for item in items
            if isinstance(item.get("data"), dict)
        ]

    async def delete(self, key: SessionKey) -> None:
        """Delete a transcript; a main key also deletes its subkeys and summary."""
        deadline = self._deadline()
        url = self._session_url(key, "") + _query({"subpath": key.get("subpath")})
        if key.get("subpath") is None:
            sid = _session_id(key)
            self._summaries.pop(sid)
            for kid in [k for k in self._failed.keys() if k[:2] == sid]:
                self._failed.pop(kid)
        else:
            self._failed.pop(_key_id(key))
        response = await self._write("DELETE", url, deadline=deadline)
        if response.status_code != 404:
            self._ok(response, allow_empty=True)

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        """List the subpaths stored under a session, such as subagents/agent-1."""
        deadline = self._deadline()
        out: list[str] = []
        token: str | None = None
        while True:
            url = self._session_url(key, "/subkeys") + _query(
                {"limit": self.page_size, "next_token": token}
            )
            response = await self._send("GET", url, deadline=deadline)
            if response.status_code == 404:
                return out
            body = self._ok(response)
            out.extend(body["data"]["subkeys"])
            token = _next_token(body, token)
            if token is None:
                return out

    # -- task binding and writer lease ---------------------------------------

    async def bind(self, claude_session_id: str, project_key: str, cwd: str) -> Binding:
        """Bind the task to a Claude session; the first binding wins.

        Returns the stored binding (``claude_session_id``, ``project_key``, ``cwd``,
        ``created_ms``) whether this call created it or it already held the same
        values. Raises BindingConflictError if the task is bound to different values.
        """
        deadline = self._deadline()
        body = json.dumps(
            {"claude_session_id": claude_session_id, "project_key": project_key, "cwd": cwd},
            separators=(",", ":"),
        ).encode()
        response = await self._write("PUT", self._binding_url(), content=body, deadline=deadline)
        data = _binding(self._ok(response)["data"])
        self._bound_project = data["project_key"]
        return data

    async def binding(self) -> Binding | None:
        """Return the task's binding, or None if the task is not bound."""
        deadline = self._deadline()
        response = await self._send("GET", self._binding_url(), deadline=deadline)
        if response.status_code == 404:
            error = GatewayError.from_response(response)
            if error.code == "not_found":
                return None
            raise error
        data = _binding(self._ok(response)["data"])
        self._bound_project = data["project_key"]
        return data

    async def lease(self) -> int:
        """Take a new writer lease: store its epoch on this store and return it.

        Appends from then on carry ``X-Writer-Epoch``; any writer holding an older
        epoch for this task is refused with StaleWriterError.
        """
        deadline = self._deadline()
        url = f"{self.base_url}/v1/tasks/{_quote(self.task_id)}/lease"
        response = await self._send("POST", url, deadline=deadline)
        epoch = int(self._ok(response)["data"]["epoch"])
        self.epoch = epoch
        return epoch

    async def report_mirror_error(self, message: Any) -> str:
        """Report a mirror failure the gateway never saw: the SDK's ``MirrorErrorMessage``
        (a batch dropped after its retries), or anything with ``key`` and ``error``.

        Kept with the gateway's own failures for operators; returns the failure's id.
        """
        key = getattr(message, "key", None) or {}
        error = str(getattr(message, "error", "") or message)
        body: dict[str, Any] = {"error": error[:4096] or "mirror error"}
        for field in ("project_key", "session_id", "subpath"):
            if isinstance(key, Mapping) and key.get(field):
                body[field] = key[field]
        deadline = self._deadline()
        url = f"{self.base_url}/v1/tasks/{_quote(self.task_id)}/mirror-failures"
        response = await self._send(
            "POST",
            url,
            content=json.dumps(body, separators=(",", ":")).encode(),
            deadline=deadline,
        )
        reported: str = self._ok(response)["data"]["id"]
        return reported

    def _warn_on_drift(self, project_key: str) -> None:
        """Warn once per key when the agent's project key is not the one the task is bound to."""
        bound = self._bound_project
        if bound is None or project_key == bound or project_key in self._drift_warned:
            return
        self._drift_warned.add(project_key)
        logger.warning(
            "task %s is bound to project key %r but the agent now writes under %r: its "
            "working directory moved, so a resume from the binding would look in the wrong "
            "place (keep the agent's cwd at the binding's cwd)",
            self.task_id,
            bound,
            project_key,
        )

    def _binding_url(self) -> str:
        return f"{self.base_url}/v1/tasks/{_quote(self.task_id)}/binding"

    def _check_not_fenced(self) -> None:
        """Refuse locally once the gateway has fenced this store's epoch off.

        Epochs only grow, so an epoch the gateway refused stays refused: further
        appends with it (including the SDK's own retries) fail without a request.
        """
        epoch, stale = self._epoch, self._stale_epoch
        if epoch is not None and stale is not None and epoch <= stale:
            raise StaleWriterError(
                f"writer epoch {epoch} was fenced off by a newer lease on task "
                f"{self.task_id}; not sending",
                status=409,
                code="stale_writer",
            )

    # -- summaries -------------------------------------------------------------

    async def _append_main(
        self,
        key: SessionKey,
        entries: list[SessionStoreEntry],
        entries_json: str,
        idempotency_key: str,
        deadline: float,
    ) -> None:
        sid = _session_id(key)
        async with self._lock_for(sid):
            try:
                base = self._summaries.get(sid)
                if base is None:
                    base = await self._get_summary(key, deadline)
                folded = _fold(key, base, entries)
                summary = json.dumps(
                    {"data": folded, "expected_version": base.version},
                    separators=(",", ":"),
                )
                body = '{"entries":' + entries_json + ',"summary":' + summary + "}"
                receipt = await self._post_entries(key, body.encode(), idempotency_key, deadline)
                outcome = receipt.get("summary") or {}
                if outcome.get("applied") is True:
                    self._summaries.put(sid, _Summary(int(outcome["version"]), folded))
                    return
                self._summaries.pop(sid)
                await self._reconcile_summary(key, entries, deadline)
            except BaseException:
                self._summaries.pop(sid)
                raise

    def _lock_for(self, sid: _SessionId) -> asyncio.Lock:
        """The session's append lock. At most ``cache_size`` are kept: the least
        recently used ones nobody holds are dropped (a held lock never is, so two
        appends to one session always share one)."""
        lock = self._locks.get(sid)
        if lock is None:
            lock = self._locks[sid] = asyncio.Lock()
        self._locks.move_to_end(sid)
        if len(self._locks) > self.cache_size:
            for old in [k for k, v in self._locks.items() if not v.locked() and k != sid]:
                if len(self._locks) <= self.cache_size:
                    break
                del self._locks[old]
        return lock

    async def _reconcile_summary(
        self, key: SessionKey, entries: list[SessionStoreEntry], deadline: float
    ) -> None:
        sid = _session_id(key)
        url = self._session_url(key, "/summary")
        conflict: GatewayError | None = None
        for round_no in range(self.max_summary_rounds):
            if round_no:
                await self._pause(0.01 * 2**round_no * (0.5 + random.random()), deadline)
            current = await self._get_summary(key, deadline)
            folded = _fold(key, current, entries)
            body = json.dumps(
                {"data": folded, "expected_version": current.version},
                separators=(",", ":"),
            ).encode()
            response = await self._write("PUT", url, content=body, deadline=deadline)
            if response.status_code == 409:
                conflict = GatewayError.from_response(response)
                if conflict.code == "summary_conflict":
                    logger.debug("summary conflict on %s/%s, retrying", *sid)
                    continue
                raise conflict
            data = self._ok(response)["data"]
            self._summaries.put(sid, _Summary(int(data["version"]), folded))
            return
        raise SummaryConflictError(
            f"summary update lost {self.max_summary_rounds} compare-and-set rounds",
            status=409,
            code="summary_conflict",
            request_id=conflict.request_id if conflict else None,
        )

    async def _get_summary(self, key: SessionKey, deadline: float) -> _Summary:
        response = await self._send("GET", self._session_url(key, "/summary"), deadline=deadline)
        if response.status_code == 404:
            return _Summary(0, None)
        data = self._ok(response)["data"]
        stored = data.get("data")
        return _Summary(int(data.get("version") or 0), stored if isinstance(stored, dict) else None)

    # -- HTTP ------------------------------------------------------------------

    async def _post_entries(
        self, key: SessionKey, body: bytes, idempotency_key: str, deadline: float
    ) -> dict[str, Any]:
        url = self._session_url(key, "/entries") + _query({"subpath": key.get("subpath")})
        headers = {"Idempotency-Key": idempotency_key}
        response = await self._write(
            "POST", url, content=body, headers=headers, deadline=deadline
        )
        receipt: dict[str, Any] = self._ok(response)["data"]
        return receipt

    async def _write(
        self,
        method: str,
        url: str,
        *,
        deadline: float,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a write of this task: with ``X-Writer-Epoch`` when the store holds an
        epoch, refused locally once that epoch was fenced off, and remembering a
        ``stale_writer`` answer so later writes with the same epoch send nothing."""
        self._check_not_fenced()
        epoch = self._epoch
        request_headers = dict(headers or {})
        if epoch is not None:
            request_headers["X-Writer-Epoch"] = str(epoch)
        response = await self._send(
            method, url, content=content, headers=request_headers, deadline=deadline
        )
        if response.status_code == 409 and epoch is not None:
            if GatewayError.from_response(response).code == "stale_writer" and (
                self._stale_epoch is None or epoch > self._stale_epoch
            ):
                self._stale_epoch = epoch
        return response

    async def _list_project(self, project_key: str, *, summaries: bool) -> list[dict[str, Any]]:
        deadline = self._deadline()
        base = self._project_url(project_key) + "/sessions"
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            url = base + _query(
                {
                    "summaries": "true" if summaries else None,
                    "limit": self.page_size,
                    "next_token": token,
                }
            )
            response = await self._send("GET", url, deadline=deadline)
            if response.status_code == 404:
                return out
            body = self._ok(response)
            out.extend(body["data"]["sessions"])
            token = _next_token(body, token)
            if token is None:
                return out

    def _project_url(self, project_key: str) -> str:
        return f"{self.base_url}/v1/tasks/{_quote(self.task_id)}/projects/{_quote(project_key)}"

    def _session_url(self, key: Mapping[str, Any], suffix: str) -> str:
        return (
            f"{self._project_url(key['project_key'])}/sessions/{_quote(key['session_id'])}{suffix}"
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            headers = {"User-Agent": f"transcript-gateway-client/{__version__}"}
            self._client = httpx.AsyncClient(headers=headers, transport=self._transport)
            self._owns_client = True
        return self._client

    async def _authorization(self) -> str | None:
        """The Authorization header value, asking a token callable afresh each time."""
        token = self._token
        if token is None:
            return None
        if callable(token):
            value = token()
            if inspect.isawaitable(value):
                value = await value
            token = value
        if not isinstance(token, str) or not token:
            raise TypeError("the token callable must return a non-empty str")
        return f"Bearer {token}"

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.timeout

    async def _pause(self, seconds: float, deadline: float) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, min(seconds, remaining)))

    async def _send(
        self,
        method: str,
        url: str,
        *,
        deadline: float,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request, retrying with the same body what can succeed shortly:
        transport errors and the answers the gateway's code calls retryable (see
        ``_RETRYABLE_CODES``), after a random wait up to the backoff step (full
        jitter) and never before a ``Retry-After``. Anything else comes back at
        once: 401 and 403 raise typed errors in ``_ok``, a checksum or validation
        failure is not retried.
        """
        client = self._http()
        request_headers = dict(headers or {})
        authorization = await self._authorization()
        if authorization is not None:
            request_headers["Authorization"] = authorization
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        if _inject_trace_context is not None:
            _inject_trace_context(request_headers)
        loop = asyncio.get_running_loop()
        last_error: Exception | None = None
        last_response: httpx.Response | None = None
        retry_after = 0.0
        for attempt in range(self.max_attempts):
            if attempt:
                step = self.backoff[min(attempt - 1, len(self.backoff) - 1)] if self.backoff else 0.0
                await self._pause(max(random.uniform(0.0, step), retry_after), deadline)
            remaining = deadline - loop.time()
            if remaining < _MIN_ATTEMPT_SECONDS:
                break
            try:
                response = await client.request(
                    method,
                    url,
                    content=content,
                    headers=request_headers,
                    timeout=min(self.attempt_timeout, remaining),
                )
            except httpx.TransportError as exc:
                logger.debug("%s %s attempt %d failed: %r", method, url, attempt + 1, exc)
                last_error, last_response = exc, None
                continue
            if _retryable(response):
                logger.debug(
                    "%s %s attempt %d got %d", method, url, attempt + 1, response.status_code
                )
                last_error, last_response = None, response
                retry_after = _retry_after(response)
                continue
            return response
        if last_response is not None:
            raise GatewayError.from_response(last_response)
        raise GatewayUnavailableError(
            f"{method} {url} failed: {last_error!r}"
            if last_error
            else f"{method} {url}: out of time"
        ) from last_error

    @staticmethod
    def _ok(response: httpx.Response, *, allow_empty: bool = False) -> dict[str, Any]:
        if not response.is_success:
            raise GatewayError.from_response(response)
        if allow_empty and not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise GatewayError(
                f"malformed JSON from gateway: {exc}",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from exc
        if not isinstance(body, dict) or ("data" not in body and not allow_empty):
            raise GatewayError(
                "response has no data envelope",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            )
        return body


def _binding(data: Mapping[str, Any]) -> Binding:
    """A binding from the gateway's answer, typed."""
    return {
        "claude_session_id": str(data["claude_session_id"]),
        "project_key": str(data["project_key"]),
        "cwd": str(data["cwd"]),
        "created_ms": int(data["created_ms"]),
    }


def _retryable(response: httpx.Response) -> bool:
    """Whether an answer is worth the same request again, by the gateway's error code."""
    if response.status_code < 400:
        return False
    code: str | None = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raw = body["error"].get("code")
        code = raw if isinstance(raw, str) else None
    if code is None:
        return response.status_code in _RETRY_STATUSES_WITHOUT_CODE
    return code in _RETRYABLE_CODES


def _retry_after(response: httpx.Response) -> float:
    """The answer's ``Retry-After`` in seconds (0 when absent or not a number)."""
    try:
        seconds = float(response.headers.get("retry-after", "0"))
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_SECONDS)


def _fold(key: SessionKey, base: _Summary, entries: list[SessionStoreEntry]) -> dict[str, Any]:
    prev: SessionSummaryEntry | None = None
    if base.data is not None:
        prev = {"session_id": key["session_id"], "mtime": 0, "data": base.data}
    return fold_session_summary(prev, key, entries)["data"]


def _next_token(body: Mapping[str, Any], previous: str | None) -> str | None:
    token = body.get("next_token")
    if token is None and isinstance(body.get("data"), dict):
        token = body["data"].get("next_token")
    if not token:
        return None
    if token == previous:
        raise GatewayError("gateway repeated the same next_token", code="bad_pagination")
    return str(token)
