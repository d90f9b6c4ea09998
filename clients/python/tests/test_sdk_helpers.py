"""The SDK's store-backed session helpers give the same answers over the gateway as in memory."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    InMemorySessionStore,
    delete_session_via_store,
    fork_session_via_store,
    get_session_messages_from_store,
    get_subagent_messages_from_store,
    list_sessions_from_store,
    list_subagents_from_store,
    project_key_for_directory,
    rename_session_via_store,
    tag_session_via_store,
)

from conftest import StoreFactory


def _transcript(session_id: str, cwd: str) -> list[dict[str, Any]]:
    base = {"sessionId": session_id, "cwd": cwd, "isSidechain": False, "gitBranch": "main"}
    u1, a1, u2, a2 = (str(uuid.uuid4()) for _ in range(4))
    return [
        {
            **base,
            "type": "user",
            "uuid": u1,
            "parentUuid": None,
            "timestamp": "2025-03-01T10:00:00.000Z",
            "message": {"role": "user", "content": "Make the flaky upload test deterministic"},
        },
        {
            **base,
            "type": "assistant",
            "uuid": a1,
            "parentUuid": u1,
            "timestamp": "2025-03-01T10:00:05.000Z",
            "message": {
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "text", "text": "Looking at the test now."}],
            },
        },
        {
            **base,
            "type": "user",
            "uuid": u2,
            "parentUuid": a1,
            "timestamp": "2025-03-01T10:01:00.000Z",
            "message": {"role": "user", "content": "Also check the retry path"},
        },
        {
            **base,
            "type": "assistant",
            "uuid": a2,
            "parentUuid": u2,
            "timestamp": "2025-03-01T10:01:09.000Z",
            "message": {
                "id": "msg_2",
                "role": "assistant",
                "content": [{"type": "text", "text": "Both fixed."}],
            },
        },
        {"type": "last-prompt", "lastPrompt": "Also check the retry path", "sessionId": session_id},
    ]


def _comparable(items: list[Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        d = dataclasses.asdict(item)
        d.pop("last_modified", None)
        out.append(d)
    return out


async def test_sdk_helpers_match_the_in_memory_store(
    make_store: StoreFactory, tmp_path: Path
) -> None:
    """Listing, reading, renaming, tagging, forking and deleting agree with InMemorySessionStore."""
    cwd = str(tmp_path.resolve())
    directory = cwd
    project_key = project_key_for_directory(directory)
    session_id = str(uuid.uuid4())
    entries = _transcript(session_id, cwd)
    sub_entries = [
        {**e, "isSidechain": True, "agentId": "agent-1"} for e in _transcript(session_id, cwd)[:2]
    ]
    main_key = {"project_key": project_key, "session_id": session_id}
    sub_key = {**main_key, "subpath": "subagents/agent-agent1"}

    gateway = make_store()
    memory = InMemorySessionStore()
    for store in (gateway, memory):
        await store.append(main_key, entries[:2])
        await store.append(main_key, entries[2:])
        await store.append(sub_key, sub_entries)

    async def snapshot(store: Any) -> dict[str, Any]:
        return {
            "sessions": _comparable(await list_sessions_from_store(store, directory=directory)),
            "messages": _comparable(
                await get_session_messages_from_store(store, session_id, directory=directory)
            ),
            "subagents": await list_subagents_from_store(store, session_id, directory=directory),
            "subagent_messages": _comparable(
                await get_subagent_messages_from_store(
                    store, session_id, "agent1", directory=directory
                )
            ),
        }

    first = await snapshot(gateway)
    assert first == await snapshot(memory)
    (info,) = first["sessions"]
    assert info["session_id"] == session_id
    assert info["summary"] == "Also check the retry path"
    assert info["first_prompt"] == "Make the flaky upload test deterministic"
    assert len(first["messages"]) == 4

    for store in (gateway, memory):
        await rename_session_via_store(store, session_id, "Upload test fix", directory=directory)
        await tag_session_via_store(store, session_id, "ci", directory=directory)
    renamed = await snapshot(gateway)
    assert renamed == await snapshot(memory)
    assert renamed["sessions"][0]["custom_title"] == "Upload test fix"
    assert renamed["sessions"][0]["tag"] == "ci"

    fork = await fork_session_via_store(gateway, session_id, directory=directory, title="Fork")
    listed = await list_sessions_from_store(gateway, directory=directory)
    assert {s.session_id for s in listed} == {session_id, fork.session_id}
    assert {s.custom_title for s in listed} == {"Upload test fix", "Fork"}

    await delete_session_via_store(gateway, session_id, directory=directory)
    assert await gateway.load(main_key) is None
    assert await gateway.load(sub_key) is None
    remaining = await list_sessions_from_store(gateway, directory=directory)
    assert [s.session_id for s in remaining] == [fork.session_id]
