"""Bearer tokens: the adapter sends them, and 401/403 raise typed errors at once."""

from __future__ import annotations

import httpx
import pytest

from transcript_gateway import ForbiddenError, GatewaySessionStore, UnauthorizedError

from conftest import Gateway
from helpers import FaultTransport, new_task_id

KEY = {"project_key": "-workspace-task", "session_id": "6a1d3f0e-8a7b-4c2d-9e5f-0123456789ab"}


def _counted(gateway: Gateway, task: str, token: object) -> tuple[GatewaySessionStore, FaultTransport]:
    transport = FaultTransport(httpx.AsyncHTTPTransport())
    store = GatewaySessionStore(gateway.url, task, token=token, transport=transport)  # type: ignore[arg-type]
    return store, transport


async def test_missing_token_raises_unauthorized_without_retrying(gateway: Gateway) -> None:
    """No token: one request, UnauthorizedError with the envelope's code."""
    if gateway.secret is None:
        pytest.skip("the gateway under test runs without authentication")
    store, transport = _counted(gateway, new_task_id(), None)
    async with store:
        with pytest.raises(UnauthorizedError) as raised:
            await store.append(KEY, [{"type": "x"}])
    assert raised.value.status == 401 and raised.value.code == "unauthorized"
    assert "missing bearer token" in raised.value.message
    assert len(transport.requests) == 1, "a 401 is never retried"


async def test_another_tasks_token_raises_forbidden(gateway: Gateway) -> None:
    """A token for task A cannot read or write task B."""
    if gateway.secret is None:
        pytest.skip("the gateway under test runs without authentication")
    task_b = new_task_id()
    owner = GatewaySessionStore(gateway.url, task_b, token=gateway.token(task_b))
    async with owner:
        await owner.append(KEY, [{"type": "x", "n": 1}])
    intruder, transport = _counted(gateway, task_b, gateway.token(new_task_id()))
    async with intruder:
        with pytest.raises(ForbiddenError) as raised:
            await intruder.load(KEY)
        assert raised.value.code == "forbidden"
        with pytest.raises(ForbiddenError):
            await intruder.append(KEY, [{"type": "x", "n": 2}])
    assert len(transport.requests) == 2, "each 403 is answered once, never retried"
    async with GatewaySessionStore(gateway.url, task_b, token=gateway.token(task_b)) as check:
        assert await check.load(KEY) == [{"type": "x", "n": 1}]


async def test_read_only_token_loads_but_cannot_append(gateway: Gateway) -> None:
    """transcripts:read loads and lists; an append is 403 and writes nothing."""
    if gateway.secret is None:
        pytest.skip("the gateway under test runs without authentication")
    task = new_task_id()
    async with GatewaySessionStore(gateway.url, task, token=gateway.token(task)) as writer:
        await writer.append(KEY, [{"type": "x", "n": 1}])
    reader = GatewaySessionStore(
        gateway.url, task, token=gateway.token(task, scope="transcripts:read")
    )
    async with reader:
        assert await reader.load(KEY) == [{"type": "x", "n": 1}]
        assert [s["session_id"] for s in await reader.list_sessions(KEY["project_key"])] == [
            KEY["session_id"]
        ]
        with pytest.raises(ForbiddenError) as raised:
            await reader.append(KEY, [{"type": "x", "n": 2}])
        assert "transcripts:write" in raised.value.message
        assert await reader.load(KEY) == [{"type": "x", "n": 1}]


async def test_a_token_callable_is_asked_for_every_request(gateway: Gateway) -> None:
    """token= may be a sync or async callable; each request carries its current answer."""
    if gateway.secret is None:
        pytest.skip("the gateway under test runs without authentication")
    task = new_task_id()
    calls: list[str] = []

    def sync_token() -> str:
        calls.append("sync")
        token = gateway.token(task)
        assert token is not None
        return token

    async def async_token() -> str:
        calls.append("async")
        return sync_token()

    for source in (sync_token, async_token):
        calls.clear()
        store, transport = _counted(gateway, task, source)
        async with store:
            await store.append({**KEY, "subpath": "subagents/a"}, [{"type": "x"}])
            assert await store.load({**KEY, "subpath": "subagents/a"}) is not None
        assert len(calls) >= len(transport.requests) >= 2, (calls, transport.requests)
        sent = {r.headers.get("authorization", "") for r in transport.requests}
        assert all(h.startswith("Bearer ") for h in sent), sent


def test_a_token_that_is_neither_str_nor_callable_is_refused() -> None:
    """A wrong token type fails at construction, not on the first request."""
    with pytest.raises(TypeError):
        GatewaySessionStore("http://gateway.test", "t1", token=42)  # type: ignore[arg-type]
