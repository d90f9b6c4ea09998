"""Adapter behaviour over HTTP against a real gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from claude_agent_sdk import fold_session_summary

from transcript_gateway import GatewayError, GatewaySessionStore

from conftest import Gateway, StoreFactory
from helpers import FaultTransport, is_entries_post, new_task_id

KEY = {"project_key": "-workspace-task", "session_id": "0b7c8a52-2f4e-4d55-9a1e-3c1f0e6d9b21"}
SUB = {**KEY, "subpath": "subagents/agent-1"}


async def test_empty_append_sends_nothing(make_store: StoreFactory) -> None:
    """append([]) makes no request; the key stays absent."""
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    client = httpx.AsyncClient(event_hooks={"request": [count]})
    try:
        store = make_store(client=client)
        await store.append(KEY, [])
        await store.append(SUB, [])
        assert sent == []
        assert await store.load(KEY) is None
        assert len(sent) == 1
    finally:
        await client.aclose()


@pytest.mark.parametrize("key", [KEY, SUB], ids=["main", "subpath"])
async def test_retry_after_lost_response_stores_one_batch(
    make_store: StoreFactory, key: dict
) -> None:
    """A response lost after the write is retried with the same key; the batch is stored once."""
    transport = FaultTransport(httpx.AsyncHTTPTransport(), match=is_entries_post, fail_after_send=1)
    store = make_store(transport=transport)
    first = [{"type": "user", "uuid": "u-1", "n": 1}, {"type": "x", "n": 2}]
    second = [{"type": "assistant", "uuid": "u-2", "n": 3}]
    await store.append(key, first)
    await store.append(key, second)

    posts = transport.matching("POST", "/entries")
    assert len(posts) == 3
    assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
    assert posts[0].content == posts[1].content
    assert posts[2].headers["idempotency-key"] != posts[0].headers["idempotency-key"]
    assert await store.load(key) == first + second

    reader = make_store(task_id=store.task_id)
    assert await reader.load(key) == first + second
    if "subpath" not in key:
        (summary,) = await reader.list_session_summaries(key["project_key"])
        assert summary["data"] == fold_session_summary(None, key, first + second)["data"]


async def test_idempotency_key_replays_the_first_receipt(gateway: Gateway) -> None:
    """Posting the same Idempotency-Key twice returns the same receipt and writes once."""
    task = new_task_id()
    url = (
        f"{gateway.url}/v1/tasks/{task}/projects/{KEY['project_key']}"
        f"/sessions/{KEY['session_id']}/entries"
    )
    body = {"entries": [{"type": "x", "n": 1}]}
    headers = {"Idempotency-Key": "k-123"}
    async with httpx.AsyncClient(headers=gateway.headers(task)) as client:
        first = await client.post(url, json=body, headers=headers)
        again = await client.post(url, json=body, headers=headers)
        loaded = await client.get(url)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["data"] == again.json()["data"]
    assert loaded.json()["data"]["entries"] == body["entries"]


async def test_concurrent_adapters_never_lose_a_summary_update(make_store: StoreFactory) -> None:
    """Two adapters appending to one session at once keep every summary update."""
    a_transport = FaultTransport(httpx.AsyncHTTPTransport())
    a = make_store(transport=a_transport)
    b = make_store(task_id=a.task_id)
    ts = "2025-01-01T00:00:00.000Z"

    await a.append(KEY, [{"type": "x", "timestamp": ts, "customTitle": "a-start"}])
    await b.append(KEY, [{"type": "x", "timestamp": ts, "gitBranch": "b-start"}])
    await a.append(KEY, [{"type": "x", "timestamp": ts, "lastPrompt": "a-stale"}])
    assert len(a_transport.matching("PUT", "/summary")) == 1, (
        "a stale summary version must be reconciled with PUT .../summary"
    )

    async def write(store: GatewaySessionStore, field: str, tag: str) -> None:
        for i in range(25):
            await store.append(KEY, [{"type": "x", "timestamp": ts, field: f"{tag}-{i}"}])

    await asyncio.gather(write(a, "customTitle", "a"), write(b, "gitBranch", "b"))

    reader = make_store(task_id=a.task_id)
    entries = await reader.load(KEY)
    assert entries is not None and len(entries) == 53
    (summary,) = await reader.list_session_summaries(KEY["project_key"])
    expected = fold_session_summary(None, KEY, entries)["data"]
    assert summary["data"] == expected
    assert expected["custom_title"] == "a-24" and expected["git_branch"] == "b-24"
    assert expected["last_prompt"] == "a-stale"
    (listed,) = await reader.list_sessions(KEY["project_key"])
    assert summary["mtime"] >= listed["mtime"]


async def test_listing_pages_through_next_token(make_store: StoreFactory) -> None:
    """Listing more sessions and subkeys than one page returns all of them."""
    store = make_store(page_size=2)
    ids = [f"sess-{i}" for i in range(5)]
    for sid in ids:
        await store.append(
            {"project_key": "paged", "session_id": sid}, [{"type": "x", "customTitle": sid}]
        )
    for i in range(3):
        await store.append(
            {"project_key": "paged", "session_id": ids[0], "subpath": f"subagents/agent-{i}"},
            [{"type": "x"}],
        )
    assert sorted(s["session_id"] for s in await store.list_sessions("paged")) == ids
    summaries = await store.list_session_summaries("paged")
    assert sorted(s["session_id"] for s in summaries) == ids
    assert all(s["data"]["custom_title"] == s["session_id"] for s in summaries)
    subkeys = await store.list_subkeys({"project_key": "paged", "session_id": ids[0]})
    assert sorted(subkeys) == [f"subagents/agent-{i}" for i in range(3)]


async def test_large_transcript_round_trips(make_store: StoreFactory) -> None:
    """Many batches with entries of tens of KB load back deep-equal and in order."""
    store = make_store()
    blob = "x" * 20_000
    expected = []
    for batch in range(20):
        entries = [
            {
                "type": "assistant",
                "uuid": f"u-{batch}-{i}",
                "text": blob,
                "nested": {"i": i, "u": "é\u2603"},
            }
            for i in range(5)
        ]
        expected.extend(entries)
        await store.append(KEY, entries)
    assert await store.load(KEY) == expected


async def test_errors_carry_code_message_and_request_id(make_store: StoreFactory) -> None:
    """A rejected request raises GatewayError with the envelope; a missing key loads as None."""
    store = make_store()
    assert await store.load({"project_key": "nothing-here", "session_id": "none"}) is None
    with pytest.raises(GatewayError) as info:
        await store.append({"project_key": "bad_key", "session_id": "s"}, [{"type": "x"}])
    err = info.value
    assert err.status == 400, err
    assert err.code and err.message and err.request_id, err


async def test_delete_clears_the_cached_summary(make_store: StoreFactory) -> None:
    """After delete and re-append the summary reflects only the new entries."""
    store = make_store()
    await store.append(KEY, [{"type": "x", "customTitle": "old", "gitBranch": "old"}])
    await store.delete(KEY)
    assert await store.list_session_summaries(KEY["project_key"]) == []
    await store.append(KEY, [{"type": "x", "customTitle": "new"}])
    (summary,) = await store.list_session_summaries(KEY["project_key"])
    assert (
        summary["data"]
        == fold_session_summary(None, KEY, [{"type": "x", "customTitle": "new"}])["data"]
    )


def _version_data(response: httpx.Response) -> tuple[Any, Any]:
    data = response.json()["data"]
    return data["version"], data["data"]


async def test_summary_put_conflicts_on_a_stale_version(gateway: Gateway) -> None:
    """PUT .../summary is a compare-and-set: a stale version gets 409 summary_conflict."""
    task = new_task_id()
    base = (
        f"{gateway.url}/v1/tasks/{task}/projects/{KEY['project_key']}/sessions/{KEY['session_id']}"
    )
    async with httpx.AsyncClient(headers=gateway.headers(task)) as client:
        await client.post(f"{base}/entries", json={"entries": [{"type": "x"}]})
        absent = await client.get(f"{base}/summary")
        ok = await client.put(f"{base}/summary", json={"data": {"a": 1}, "expected_version": 0})
        stale = await client.put(f"{base}/summary", json={"data": {"a": 2}, "expected_version": 0})
        now = await client.get(f"{base}/summary")
    assert absent.status_code == 404 and absent.json()["error"]["code"] == "not_found", absent.text
    assert ok.status_code == 200 and ok.json()["data"]["version"] == 1, ok.text
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "summary_conflict", (
        stale.text
    )
    assert _version_data(now) == (1, {"a": 1}), now.text


async def test_summary_cas_survives_a_delete_by_another_adapter(make_store: StoreFactory) -> None:
    """An adapter whose cached summary predates a delete cannot overwrite the newer summary."""
    a = make_store()
    b = make_store(task_id=a.task_id)
    await b.append(KEY, [{"type": "x", "customTitle": "old"}])
    await a.delete(KEY)
    await a.append(KEY, [{"type": "x", "customTitle": "new"}])
    await b.append(KEY, [{"type": "x", "gitBranch": "main"}])
    entries = await a.load(KEY)
    assert entries is not None
    (summary,) = await a.list_session_summaries(KEY["project_key"])
    assert summary["data"] == fold_session_summary(None, KEY, entries)["data"]


async def test_unreconciled_summary_reads_as_stale(
    gateway: Gateway, make_store: StoreFactory
) -> None:
    """Entries appended without a summary update leave a sidecar older than list_sessions' mtime."""
    store = make_store()
    await store.append(KEY, [{"type": "x", "customTitle": "first"}])
    url = (
        f"{gateway.url}/v1/tasks/{store.task_id}/projects/{KEY['project_key']}"
        f"/sessions/{KEY['session_id']}/entries"
    )
    async with httpx.AsyncClient(headers=gateway.headers(store.task_id)) as client:
        rejected = await client.post(
            url,
            json={
                "entries": [{"type": "x", "customTitle": "second"}],
                "summary": {"data": {"custom_title": "second"}, "expected_version": 0},
            },
        )
    assert rejected.json()["data"]["summary"]["applied"] is False
    (listed,) = await store.list_sessions(KEY["project_key"])
    (summary,) = await store.list_session_summaries(KEY["project_key"])
    assert summary["data"]["custom_title"] == "first"
    assert summary["mtime"] < listed["mtime"]
