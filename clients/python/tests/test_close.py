"""Closing a store: aclose() and ``async with`` wait for the appends still
running (bounded), then close; appends after that are refused. Against a real
gateway, with a transport that holds the append requests at will."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from transcript_gateway import StoreClosedError

from conftest import StoreFactory
from helpers import is_entries_post

KEY = {"project_key": "-workspace-close", "session_id": "c10se000-0000-4000-8000-000000000001"}


class HeldTransport(httpx.AsyncBaseTransport):
    """Forwards requests to the gateway; append posts wait for ``release``."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.release = asyncio.Event()
        self.held = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Hold an append until released, then send it."""
        if is_entries_post(request):
            self.held.set()
            await self.release.wait()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


async def test_aclose_waits_for_a_pending_append_and_refuses_new_ones(
    make_store: StoreFactory,
) -> None:
    transport = HeldTransport()
    store = make_store(transport=transport)
    pending = asyncio.create_task(store.append(KEY, [{"type": "user", "uuid": "u-1"}]))
    await asyncio.wait_for(transport.held.wait(), 10)

    closing = asyncio.create_task(store.aclose(timeout=20))
    await asyncio.sleep(0.2)
    assert not closing.done(), "aclose() waits while an append is still running"
    with pytest.raises(StoreClosedError):
        await store.append(KEY, [{"type": "user", "uuid": "u-2"}])

    transport.release.set()
    await asyncio.wait_for(pending, 10)
    assert await asyncio.wait_for(closing, 10) is True, "every pending append finished"

    # What was pending is stored; what came after is not.
    reader = make_store(task_id=store.task_id)
    entries = await reader.load(KEY)
    assert [e["uuid"] for e in entries or []] == ["u-1"]


async def test_async_with_waits_for_pending_appends_on_exit(make_store: StoreFactory) -> None:
    transport = HeldTransport()
    store = make_store(transport=transport)
    async with store:
        pending = asyncio.create_task(store.append(KEY, [{"type": "user", "uuid": "w-1"}]))
        await asyncio.wait_for(transport.held.wait(), 10)
        asyncio.get_running_loop().call_later(0.3, transport.release.set)
    assert pending.done() and pending.exception() is None, "the exit waited for the append"
    reader = make_store(task_id=store.task_id)
    assert [e["uuid"] for e in await reader.load(KEY) or []] == ["w-1"]


async def test_aclose_gives_up_after_its_timeout(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    transport = HeldTransport()
    store = make_store(transport=transport)
    pending = asyncio.create_task(store.append(KEY, [{"type": "user", "uuid": "t-1"}]))
    await asyncio.wait_for(transport.held.wait(), 10)
    with caplog.at_level(logging.WARNING, logger="transcript_gateway"):
        drained = await asyncio.wait_for(store.aclose(timeout=0.3), 10)
    assert drained is False
    assert "closing with 1 append(s) still running after 0.3 s" in caplog.text
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
