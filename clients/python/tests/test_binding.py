"""Task binding (first writer wins) and writer fencing against a real gateway."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from claude_agent_sdk import fold_session_summary

from transcript_gateway import (
    BindingConflictError,
    EpochRequiredError,
    GatewayError,
    GatewaySessionStore,
    StaleWriterError,
    UnknownEpochError,
)

from conftest import StoreFactory
from helpers import FaultTransport, is_entries_post, new_task_id


def _binding_values(task_id: str, claude_session_id: str | None = None) -> dict[str, str]:
    return {
        "claude_session_id": claude_session_id or str(uuid.uuid4()),
        "project_key": f"-workspace-{task_id}",
        "cwd": f"/workspace/{task_id}",
    }


def _key(task_id: str, session_id: str) -> dict[str, str]:
    return {"project_key": f"-workspace-{task_id}", "session_id": session_id}


# -- binding -------------------------------------------------------------------


async def test_unbound_task_has_no_binding(make_store: StoreFactory) -> None:
    """binding() on a task nobody bound is None."""
    assert await make_store().binding() is None


async def test_bind_first_writer_wins(make_store: StoreFactory) -> None:
    """Same values again return the stored binding; any different value is a conflict."""
    store = make_store()
    values = _binding_values(store.task_id)
    created = await store.bind(**values)
    assert {k: created[k] for k in values} == values
    assert isinstance(created["created_ms"], int) and created["created_ms"] > 0

    assert await store.bind(**values) == created
    assert await make_store(task_id=store.task_id).bind(**values) == created
    assert await store.binding() == created

    for field, other in [
        ("claude_session_id", str(uuid.uuid4())),
        ("project_key", "-workspace-elsewhere"),
        ("cwd", "/workspace/elsewhere"),
    ]:
        with pytest.raises(BindingConflictError) as info:
            await store.bind(**{**values, field: other})
        assert info.value.status == 409
        assert info.value.code == "binding_conflict"
        assert isinstance(info.value, GatewayError)

    reader = make_store(task_id=store.task_id)
    assert await reader.binding() == created


async def test_bind_invalid_values_is_a_plain_gateway_error(make_store: StoreFactory) -> None:
    """A binding the gateway rejects as invalid is a 400, not a conflict, and binds nothing."""
    store = make_store()
    with pytest.raises(GatewayError) as info:
        await store.bind("a/b", "-workspace-x", "/workspace/x")
    assert not isinstance(info.value, BindingConflictError)
    assert (info.value.status, info.value.code) == (400, "invalid_request")
    with pytest.raises(GatewayError):
        await store.bind(str(uuid.uuid4()), "-workspace-x", "relative/cwd")
    assert await store.binding() is None


async def test_concurrent_binds_with_different_values_have_one_winner(
    make_store: StoreFactory,
) -> None:
    """Ten stores race to bind one task to ten sessions: one wins, nine get a conflict."""
    task_id = new_task_id()
    candidates = [_binding_values(task_id) for _ in range(10)]
    stores = [make_store(task_id=task_id) for _ in candidates]
    results = await asyncio.gather(
        *(store.bind(**values) for store, values in zip(stores, candidates, strict=True)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, BindingConflictError)]
    assert len(winners) == 1, results
    assert len(losers) == 9, results
    (winner,) = winners
    assert {k: winner[k] for k in candidates[0]} in candidates
    assert await make_store(task_id=task_id).binding() == winner


async def test_concurrent_binds_with_the_same_values_all_succeed(
    make_store: StoreFactory,
) -> None:
    """Ten stores binding the same values all get the one stored binding back."""
    task_id = new_task_id()
    values = _binding_values(task_id)
    results = await asyncio.gather(*(make_store(task_id=task_id).bind(**values) for _ in range(10)))
    assert all(r == results[0] for r in results)
    assert await make_store(task_id=task_id).binding() == results[0]


# -- leases and fencing --------------------------------------------------------


async def test_lease_hands_out_increasing_epochs_and_sets_the_store_epoch(
    make_store: StoreFactory,
) -> None:
    """Each lease is one higher than the last for the task, and becomes the store's epoch."""
    a = make_store()
    b = make_store(task_id=a.task_id)
    assert a.epoch is None
    assert await a.lease() == 1
    assert a.epoch == 1
    assert await b.lease() == 2
    assert b.epoch == 2
    assert await a.lease() == 3
    assert a.epoch == 3
    assert await make_store().lease() == 1, "epochs are per task"


def test_epoch_must_be_a_non_negative_int() -> None:
    """The constructor and the setter refuse epochs the gateway would reject."""
    for bad in (-1, True, 1.5, "2"):
        with pytest.raises(ValueError):
            GatewaySessionStore("http://gateway.test", "t1", epoch=bad)  # type: ignore[arg-type]
    store = GatewaySessionStore("http://gateway.test", "t1", epoch=0)
    store.epoch = 7
    assert store.epoch == 7
    store.epoch = None
    with pytest.raises(ValueError):
        store.epoch = -3


async def test_appends_carry_the_epoch_header_only_when_set(make_store: StoreFactory) -> None:
    """Without an epoch no X-Writer-Epoch is sent; with one, every append carries it."""
    transport = FaultTransport(httpx.AsyncHTTPTransport())
    store = make_store(transport=transport)
    key = _key(store.task_id, str(uuid.uuid4()))
    sub = {**key, "subpath": "subagents/agent-1"}
    await store.append(key, [{"type": "user", "n": 1}])
    await store.lease()
    await store.append(key, [{"type": "user", "n": 2}])
    await store.append(sub, [{"type": "user", "n": 3}])
    store.epoch = await make_store(task_id=store.task_id).lease()
    await store.append(key, [{"type": "user", "n": 4}])
    posts = [r for r in transport.requests if is_entries_post(r)]
    assert [r.headers.get("x-writer-epoch") for r in posts] == [None, "1", "1", "2"]
    lease_posts = transport.matching("POST", "/lease")
    assert len(lease_posts) == 1
    assert "x-writer-epoch" not in lease_posts[0].headers


async def test_constructor_epoch_is_sent(make_store: StoreFactory) -> None:
    """epoch= in the constructor is sent, and a current epoch is accepted."""
    task_id = new_task_id()
    assert await make_store(task_id=task_id).lease() == 1
    transport = FaultTransport(httpx.AsyncHTTPTransport())
    store = make_store(task_id=task_id, epoch=1, transport=transport)
    key = _key(task_id, str(uuid.uuid4()))
    await store.append(key, [{"type": "user", "n": 1}])
    (post,) = [r for r in transport.requests if is_entries_post(r)]
    assert post.headers["x-writer-epoch"] == "1"
    assert await store.load(key) == [{"type": "user", "n": 1}]


async def test_stale_writer_is_fenced_off_and_writes_nothing(make_store: StoreFactory) -> None:
    """After B's lease, A's appends are refused (not retried) and the transcript stays B's."""
    transport_a = FaultTransport(httpx.AsyncHTTPTransport())
    a = make_store(transport=transport_a)
    b = make_store(task_id=a.task_id)
    session_id = str(uuid.uuid4())
    key = _key(a.task_id, session_id)
    sub = {**key, "subpath": "subagents/agent-1"}

    assert await a.lease() == 1
    first = [{"type": "user", "uuid": str(uuid.uuid4()), "message": "from A"}]
    await a.append(key, first)
    await a.append(sub, [{"type": "user", "n": "A-sub"}])

    assert await b.lease() == 2
    second = [{"type": "assistant", "uuid": str(uuid.uuid4()), "message": "from B"}]
    await b.append(key, second)

    refused = [{"type": "user", "uuid": str(uuid.uuid4()), "message": "A after fencing"}]
    posts_before = len([r for r in transport_a.requests if is_entries_post(r)])
    with pytest.raises(StaleWriterError) as info:
        await a.append(key, refused)
    assert (info.value.status, info.value.code) == (409, "stale_writer")
    posts = [r for r in transport_a.requests if is_entries_post(r)]
    assert len(posts) == posts_before + 1, "a stale_writer refusal is not retried"

    # The SDK retries a failed append with the same list; the store refuses it
    # locally without another request, and refuses subpath appends too.
    with pytest.raises(StaleWriterError):
        await a.append(key, refused)
    with pytest.raises(StaleWriterError):
        await a.append(sub, [{"type": "user", "n": "A-sub-late"}])
    assert len([r for r in transport_a.requests if is_entries_post(r)]) == posts_before + 1

    reader = make_store(task_id=a.task_id)
    assert await reader.load(key) == first + second
    assert await reader.load(sub) == [{"type": "user", "n": "A-sub"}]

    third = [{"type": "assistant", "uuid": str(uuid.uuid4()), "message": "B again"}]
    await b.append(key, third)
    await b.append(sub, [{"type": "user", "n": "B-sub"}])
    assert await reader.load(key) == first + second + third
    assert await reader.load(sub) == [
        {"type": "user", "n": "A-sub"},
        {"type": "user", "n": "B-sub"},
    ]
    (summary,) = await reader.list_session_summaries(key["project_key"])
    assert summary["data"] == fold_session_summary(None, key, first + second + third)["data"]

    # A re-leases: it now holds the newest epoch and may write again, and B is fenced.
    assert await a.lease() == 3
    fourth = [{"type": "user", "uuid": str(uuid.uuid4()), "message": "A re-leased"}]
    await a.append(key, fourth)
    with pytest.raises(StaleWriterError):
        await b.append(key, [{"type": "user", "message": "B after A's new lease"}])
    assert await reader.load(key) == first + second + third + fourth


async def test_after_a_lease_every_write_needs_the_current_epoch(make_store: StoreFactory) -> None:
    """Before any lease a store without an epoch writes; after one, every write of the
    task (append, summary, delete, bind) without the current epoch is refused and
    changes nothing."""
    store = make_store()
    key = _key(store.task_id, str(uuid.uuid4()))
    await store.append(key, [{"type": "user", "n": 1}])
    holder = make_store(task_id=store.task_id)
    epoch = await holder.lease()
    with pytest.raises(EpochRequiredError) as info:
        await store.append(key, [{"type": "user", "n": 2}])
    assert (info.value.status, info.value.code) == (409, "epoch_required")
    with pytest.raises(EpochRequiredError):
        await store.delete(key)
    with pytest.raises(EpochRequiredError):
        await store.bind(**_binding_values(store.task_id))
    future = make_store(task_id=store.task_id, epoch=epoch + 5)
    with pytest.raises(UnknownEpochError) as unknown:
        await future.append(key, [{"type": "user", "n": 3}])
    assert unknown.value.code == "unknown_epoch"
    assert await holder.load(key) == [{"type": "user", "n": 1}]
    assert await holder.binding() is None
    await holder.append(key, [{"type": "user", "n": 4}])
    assert await holder.load(key) == [{"type": "user", "n": 1}, {"type": "user", "n": 4}]


async def test_a_stale_writer_cannot_delete_or_rebind(make_store: StoreFactory) -> None:
    """The lease fences deletes, summary updates and bindings as it fences appends."""
    a = make_store()
    key = _key(a.task_id, str(uuid.uuid4()))
    await a.lease()
    await a.append(key, [{"type": "user", "n": 1}])
    b = make_store(task_id=a.task_id)
    await b.lease()
    with pytest.raises(StaleWriterError):
        await a.delete(key)
    with pytest.raises(StaleWriterError):
        await a.bind(**_binding_values(a.task_id))
    assert await b.load(key) == [{"type": "user", "n": 1}]
    await b.delete(key)
    assert await b.load(key) is None


# -- erasure -------------------------------------------------------------------


async def test_an_erased_task_keeps_nothing_and_a_new_append_starts_fresh(
    make_store: StoreFactory, gateway_url: str, gateway
) -> None:
    """After DELETE /admin/v1/tasks/{task_id} the task's transcripts, subkeys and binding are
    gone for the adapter too; an append afterwards starts a new transcript."""
    store = make_store()
    key = _key(store.task_id, "s1")
    await store.append(key, [{"type": "user", "uuid": str(uuid.uuid4()), "n": 1}])
    await store.append({**key, "subpath": "subagents/agent-1"}, [{"type": "user", "n": 2}])
    await store.bind(**_binding_values(store.task_id))

    admin = gateway.token(store.task_id, "admin")
    headers = {"Authorization": f"Bearer {admin}"} if admin else {}
    async with httpx.AsyncClient() as http:
        resp = await http.delete(f"{gateway_url}/admin/v1/tasks/{store.task_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    receipt = resp.json()["data"]
    assert receipt["task_id"] == store.task_id
    assert receipt["objects_removed"] >= 2 and receipt["digest"].startswith("sha256:")

    fresh = make_store(task_id=store.task_id)
    assert await fresh.load(key) is None
    assert await fresh.list_subkeys(key) == []
    assert await fresh.binding() is None
    await fresh.append(key, [{"type": "user", "n": 3}])
    assert await fresh.load(key) == [{"type": "user", "n": 3}]


def test_task_erased_answers_raise_their_own_error() -> None:
    """A 409 task_erased is a TaskErasedError, and not retried."""
    from transcript_gateway import TaskErasedError

    response = httpx.Response(
        409,
        json={"error": {"code": "task_erased", "message": "task t was erased", "request_id": "r"}},
    )
    error = GatewayError.from_response(response)
    assert isinstance(error, TaskErasedError)
    assert (error.status, error.code) == (409, "task_erased")
