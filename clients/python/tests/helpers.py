"""Shared test helpers: a fault-injecting transport and store bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx


def new_task_id() -> str:
    """Return a fresh task id so every store starts empty."""
    return "t-" + uuid.uuid4().hex


class FaultTransport(httpx.AsyncBaseTransport):
    """Forwards requests to an inner transport and injects failures on matching ones."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        match: Callable[[httpx.Request], bool] = lambda request: True,
        fail_before_send: int = 0,
        fail_after_send: int = 0,
        status_before_send: int | None = None,
    ) -> None:
        self.inner = inner
        self.match = match
        self.fail_before_send = fail_before_send
        self.fail_after_send = fail_after_send
        self.status_before_send = status_before_send
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Record the request, then fail it or pass it on as configured."""
        self.requests.append(request)
        matched = self.match(request)
        if matched and self.fail_before_send > 0:
            self.fail_before_send -= 1
            if self.status_before_send is not None:
                return httpx.Response(
                    self.status_before_send,
                    json={
                        "error": {
                            "code": "backend_unavailable",
                            "message": "injected",
                            "request_id": "inj",
                        }
                    },
                )
            raise httpx.ConnectError("injected connect error", request=request)
        response = await self.inner.handle_async_request(request)
        if matched and self.fail_after_send > 0:
            self.fail_after_send -= 1
            await response.aread()
            await response.aclose()
            raise httpx.ReadError("injected read error after the gateway answered", request=request)
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()

    def matching(self, method: str, path_suffix: str) -> list[httpx.Request]:
        """Return the recorded requests with this method whose path ends with the suffix."""
        return [r for r in self.requests if r.method == method and r.url.path.endswith(path_suffix)]


def is_entries_post(request: httpx.Request) -> bool:
    """True for an append request."""
    return request.method == "POST" and request.url.path.endswith("/entries")
