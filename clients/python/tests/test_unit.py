"""Adapter behaviour against an in-process fake of the gateway's HTTP contract."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from claude_agent_sdk import fold_session_summary

from transcript_gateway import (
    GatewayError,
    GatewaySessionStore,
    GatewayUnavailableError,
)

from conformance import run_full_conformance
from fake_gateway import FakeGateway
from helpers import FaultTransport, is_entries_post, new_task_id

BASE = "http://gateway.test"
KEY = {"project_key": "-workspace-t1", "session_id": "s1"}


def _store(
    transport: httpx.AsyncBaseTransport, task_id: str = "t1", **kwargs
) -> GatewaySessionStore:
    return GatewaySessionStore(BASE, task_id, transport=transport, **kwargs)


async def test_conformance_against_fake() -> None:
    """The SDK conformance suite passes against the fake, all contracts."""
    fake = FakeGateway()
    ran = await run_full_conformance(lambda: _store(fake.transport(), new_task_id()))
    assert len(ran) == 14


async def test_empty_append_sends_nothing() -> None:
    """append([]) makes no request at all."""
    fake = FakeGateway()
    async with _store(fake.transport()) as store:
        await store.append(KEY, [])
        await store.append({**KEY, "subpath": "subagents/agent-1"}, [])
    assert fake.requests == []


async def test_post_body_headers_and_quoting() -> None:
    """An append carries the entries, the folded summary, a uuid Idempotency-Key and auth."""
    fake = FakeGateway()
    entries = [{"type": "user", "uuid": "u1", "customTitle": "hello"}]
    key = {**KEY, "subpath": "subagents/agent-1"}
    async with _store(fake.transport(), token="tok") as store:
        await store.append(KEY, entries)
        await store.append(key, entries)
    get_summary, post_main, post_sub = fake.requests
    assert get_summary.method == "GET" and get_summary.url.path.endswith("/summary")
    body = json.loads(post_main.content)
    assert body["entries"] == entries
    assert body["summary"] == {
        "data": fold_session_summary(None, KEY, entries)["data"],
        "expected_version": 0,
    }
    assert len(post_main.headers["idempotency-key"]) == 32
    assert post_main.headers["authorization"] == "Bearer tok"
    assert post_main.headers["content-type"] == "application/json"
    assert "summary" not in json.loads(post_sub.content)
    assert post_sub.url.raw_path.endswith(b"/entries?subpath=subagents%2Fagent-1")
    assert post_main.headers["idempotency-key"] != post_sub.headers["idempotency-key"]


async def test_summary_version_is_cached_between_appends() -> None:
    """The second append folds on the cached version without re-reading the summary."""
    fake = FakeGateway()
    async with _store(fake.transport()) as store:
        await store.append(KEY, [{"type": "x", "customTitle": "a"}])
        await store.append(KEY, [{"type": "x", "gitBranch": "main"}])
    methods = [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in fake.requests]
    assert methods == [("GET", "summary"), ("POST", "entries"), ("POST", "entries")]
    assert json.loads(fake.requests[2].content)["summary"]["expected_version"] == 1
    summary = fake.summaries[("t1", KEY["project_key"], KEY["session_id"])]
    assert summary.data["custom_title"] == "a" and summary.data["git_branch"] == "main"


@pytest.mark.parametrize("mode", ["read_error_after_send", "connect_error", "status_503"])
async def test_retry_reuses_idempotency_key(mode: str) -> None:
    """A retried append sends the same key and body, and the batch is stored once."""
    fake = FakeGateway()
    transport = FaultTransport(
        fake.transport(),
        match=is_entries_post,
        fail_after_send=1 if mode == "read_error_after_send" else 0,
        fail_before_send=0 if mode == "read_error_after_send" else 1,
        status_before_send=503 if mode == "status_503" else None,
    )
    entries = [{"type": "x", "uuid": "a", "n": 1}, {"type": "x", "n": 2}]
    async with _store(transport) as store:
        await store.append(KEY, entries)
        assert await store.load(KEY) == entries
    posts = transport.matching("POST", "/entries")
    assert len(posts) == 2
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert posts[0].content == posts[1].content
    assert len(fake.parts[("t1", KEY["project_key"], KEY["session_id"], None)]) == 1


async def test_exhausted_retries_raise_and_sdk_retry_reuses_key() -> None:
    """After three failed attempts append raises; an SDK retry of that batch keeps its key."""
    fake = FakeGateway()
    transport = FaultTransport(fake.transport(), match=is_entries_post, fail_after_send=3)
    entries = [{"type": "x", "n": 1}]
    async with _store(transport, backoff=(0.0, 0.0)) as store:
        with pytest.raises(GatewayUnavailableError):
            await store.append(KEY, entries)
        await store.append(KEY, entries)
        assert await store.load(KEY) == entries
        await store.append(KEY, list(entries))
        assert await store.load(KEY) == entries * 2
    keys = [r.headers["idempotency-key"] for r in transport.matching("POST", "/entries")]
    assert len(keys) == 5 and len(set(keys[:4])) == 1 and keys[4] != keys[0]


async def test_retries_stop_at_the_time_budget() -> None:
    """A gateway that never answers fails the call within the configured budget."""

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("no route", request=request)

    async with _store(
        httpx.MockTransport(hang), timeout=0.5, backoff=(0.4, 0.4), max_attempts=10
    ) as store:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(GatewayUnavailableError):
            await store.load(KEY)
        assert loop.time() - started < 1.0


async def test_errors_carry_the_envelope() -> None:
    """Non-2xx answers raise GatewayError with code, message and request_id; 404 load is None."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/entries"):
            return httpx.Response(
                404, json={"error": {"code": "not_found", "message": "gone", "request_id": "r1"}}
            )
        return httpx.Response(
            413,
            json={"error": {"code": "too_large", "message": "body too large", "request_id": "r2"}},
        )

    async with _store(httpx.MockTransport(handler)) as store:
        assert await store.load(KEY) is None
        with pytest.raises(GatewayError) as info:
            await store.list_sessions("p")
    assert (info.value.status, info.value.code, info.value.request_id) == (413, "too_large", "r2")
    assert info.value.message == "body too large"
    assert "too_large" in str(info.value) and "r2" in str(info.value)


async def test_stale_summary_is_reconciled_with_compare_and_set() -> None:
    """If another writer moved the summary, entries land and the batch is re-folded onto it."""
    fake = FakeGateway()
    async with _store(fake.transport()) as a, _store(fake.transport()) as b:
        await a.append(KEY, [{"type": "x", "customTitle": "from-a"}])
        await b.append(KEY, [{"type": "x", "gitBranch": "from-b"}])
        fake.requests.clear()
        await a.append(KEY, [{"type": "x", "lastPrompt": "again-a"}])
    methods = [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in fake.requests]
    assert methods == [("POST", "entries"), ("GET", "summary"), ("PUT", "summary")]
    summary = fake.summaries[("t1", KEY["project_key"], KEY["session_id"])]
    assert summary.version == 3
    assert summary.data == {
        "is_sidechain": False,
        "custom_title": "from-a",
        "git_branch": "from-b",
        "last_prompt": "again-a",
    }


async def test_concurrent_writers_keep_every_summary_update() -> None:
    """Two adapters appending to one session at once lose no summary update."""
    fake = FakeGateway()
    async with _store(fake.transport()) as a, _store(fake.transport()) as b:

        async def write(store: GatewaySessionStore, field: str, tag: str) -> None:
            for i in range(15):
                await store.append(KEY, [{"type": "x", field: f"{tag}-{i}"}])
                await asyncio.sleep(0)

        await asyncio.gather(write(a, "customTitle", "a"), write(b, "gitBranch", "b"))
        entries = await a.load(KEY)
        (summary,) = await b.list_session_summaries(KEY["project_key"])
    assert summary["data"] == fold_session_summary(None, KEY, entries)["data"]
    assert summary["data"]["custom_title"] == "a-14" and summary["data"]["git_branch"] == "b-14"


async def test_summary_conflicts_are_bounded() -> None:
    """A summary that always conflicts raises after the configured rounds, with entries stored."""
    fake = FakeGateway()
    inner = fake.transport()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(
                409,
                json={"error": {"code": "summary_conflict", "message": "moved", "request_id": "r"}},
            )
        if request.method == "POST":
            body = json.loads(request.content)
            body["summary"]["expected_version"] = 99
            request = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=json.dumps(body).encode(),
            )
        return await inner.handle_async_request(request)

    async with _store(httpx.MockTransport(handler), max_summary_rounds=3) as store:
        with pytest.raises(GatewayError) as info:
            await store.append(KEY, [{"type": "x", "n": 1}])
        assert info.value.code == "summary_conflict"
        assert await store.load(KEY) == [{"type": "x", "n": 1}]
    assert sum(r.method == "PUT" for r in fake.requests) == 0


async def test_listing_follows_next_token() -> None:
    """list_sessions, list_session_summaries and list_subkeys page through next_token."""
    pages = {
        None: (
            {"sessions": [{"session_id": "a", "mtime": 1_700_000_000_000, "data": {"x": 1}}]},
            "p2",
        ),
        "p2": ({"sessions": [{"session_id": "b", "mtime": 1_700_000_000_001, "data": None}]}, None),
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        data, token = pages[request.url.params.get("next_token")]
        return httpx.Response(200, json={"data": data, "next_token": token})

    async with _store(httpx.MockTransport(handler), page_size=1) as store:
        assert [s["session_id"] for s in await store.list_sessions("p")] == ["a", "b"]
        summaries = await store.list_session_summaries("p")
    assert summaries == [{"session_id": "a", "mtime": 1_700_000_000_000, "data": {"x": 1}}]
    assert seen[0].endswith("/v1/tasks/t1/projects/p/sessions?limit=1")
    assert seen[1].endswith("/sessions?limit=1&next_token=p2")
    assert "summaries=true" in seen[2]


def _answers(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering each request with the next of ``answers`` (200 once they run out)."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if queue:
            return queue.pop(0)
        return httpx.Response(200, json={"data": {"entries": []}})

    return httpx.MockTransport(handler), seen


def _error(status: int, code: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": f"injected {code}", "request_id": "r"}},
        headers=headers,
    )


@pytest.mark.parametrize(
    ("answer", "retried"),
    [
        (_error(503, "backend_unavailable"), True),
        (_error(504, "timeout"), True),
        (_error(503, "draining"), True),
        (_error(409, "conflict"), True),
        (_error(503, "overloaded"), True),
        (httpx.Response(502, text="<html>bad gateway</html>"), True),
        (_error(502, "checksum_mismatch"), False),
        (_error(502, "integrity_violation"), False),
        (_error(500, "internal"), False),
        (_error(400, "invalid_request"), False),
        (_error(409, "stale_writer"), False),
        (_error(503, "some_future_code"), False),
    ],
)
async def test_retries_follow_the_gateways_error_code(answer: httpx.Response, retried: bool) -> None:
    """What the gateway calls retryable is sent again; a checksum, integrity or validation
    failure (or an unknown code) is not, whatever its status."""
    transport, seen = _answers(answer)
    async with _store(transport, backoff=(0.0, 0.0)) as store:
        if retried:
            assert await store.load(KEY) == []
        else:
            with pytest.raises(GatewayError) as info:
                await store.load(KEY)
            assert info.value.status == answer.status_code
    assert len(seen) == (2 if retried else 1)


async def test_backoff_is_full_jitter_and_honours_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each wait is random between 0 and the backoff step; a Retry-After is never cut short."""
    waits: list[float] = []

    async def record(self: GatewaySessionStore, seconds: float, deadline: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(GatewaySessionStore, "_pause", record)
    answers = [_error(503, "backend_unavailable") for _ in range(40)]
    transport, _ = _answers(*answers)
    async with _store(transport, backoff=(1.0,), max_attempts=41) as store:
        await store.load(KEY)
    assert len(waits) == 40
    assert all(0.0 <= w <= 1.0 for w in waits)
    assert len({round(w, 6) for w in waits}) > 30, "the waits are spread, not one value"

    waits.clear()
    transport, seen = _answers(_error(503, "overloaded", **{"Retry-After": "2"}))
    async with _store(transport, backoff=(0.1,)) as store:
        await store.load(KEY)
    assert len(seen) == 2 and waits == [2.0]


async def test_an_sdk_retry_with_a_copy_of_the_batch_reuses_the_key() -> None:
    """The SDK may retry with another list holding the same entries: same key, stored once."""
    fake = FakeGateway()
    transport = FaultTransport(fake.transport(), match=is_entries_post, fail_after_send=3)
    entries = [{"type": "x", "uuid": "u1"}, {"type": "x", "n": 2}]
    async with _store(transport, backoff=(0.0, 0.0)) as store:
        with pytest.raises(GatewayUnavailableError):
            await store.append(KEY, entries)
        await store.append(KEY, [dict(e) for e in entries])
        assert await store.load(KEY) == entries
    keys = {r.headers["idempotency-key"] for r in transport.matching("POST", "/entries")}
    assert len(keys) == 1


async def test_per_session_caches_stay_within_cache_size() -> None:
    """Summaries, failed batches and append locks are kept for at most cache_size sessions;
    an evicted session's summary is read again, never folded onto a wrong version."""
    fake = FakeGateway()
    async with _store(fake.transport(), cache_size=2) as store:
        for n in range(6):
            await store.append({**KEY, "session_id": f"s{n}"}, [{"type": "x", "customTitle": f"t{n}"}])
        assert len(store._summaries) <= 2
        assert len(store._locks) <= 2
        await store.append({**KEY, "session_id": "s0"}, [{"type": "x", "gitBranch": "b"}])
    summary_reads = [
        r for r in fake.requests if r.method == "GET" and r.url.path.endswith("/s0/summary")
    ]
    assert len(summary_reads) == 2, "s0's summary was evicted and read again"
    s0 = fake.summaries[("t1", KEY["project_key"], "s0")]
    assert s0.data["custom_title"] == "t0" and s0.data["git_branch"] == "b"


async def test_load_is_one_request() -> None:
    """The entries route has no paging: a load is one GET, whatever the transcript's size."""
    fake = FakeGateway()
    async with _store(fake.transport()) as store:
        await store.append({**KEY, "subpath": "subagents/a"}, [{"n": i} for i in range(500)])
        before = len(fake.requests)
        assert len(await store.load({**KEY, "subpath": "subagents/a"}) or []) == 500
    assert len(fake.requests) == before + 1
