"""Mirror gaps healed end to end with the real SDK: a local transcript (main session
and a subagent) mirrored through the SDK's own TranscriptMirrorBatcher while the
gateway is stopped for a moment, the failures reported, then ``heal``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from claude_agent_sdk import MirrorErrorMessage, project_key_for_directory
from claude_agent_sdk._internal.transcript_mirror_batcher import TranscriptMirrorBatcher

from transcript_gateway import GatewaySessionStore, heal

from conftest import Gateway, Restartable
from helpers import FaultTransport, new_task_id


def _entry(session_id: str, text: str, parent: str | None) -> dict[str, Any]:
    return {
        "type": "user",
        "uuid": str(uuid.uuid4()),
        "parentUuid": parent,
        "sessionId": session_id,
        "message": {"role": "user", "content": text},
    }


def _write_jsonl(path: Path, entries: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


@pytest.mark.parametrize("gap", ["middle", "end"])
async def test_heal_after_a_mirror_gap_adds_exactly_the_missing_entries(
    gateway: Gateway,
    other_gateway: Gateway,
    restartable_gateway: Restartable,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gap: str,
) -> None:
    """The SDK's own batcher mirrors a local transcript (main session and a subagent) while
    the gateway is stopped for a moment, so it drops batches and reports them; ``heal`` then
    leaves the entries mirrored before the gap in place and adds the gap's after them in file
    order (a gap at the end heals to exactly the file), each uuid once; healing again adds only
    the entry without a uuid. On shared storage the heal runs through a second gateway process
    (the worker that took the task over) and the reads through a third."""
    config = tmp_path / "claude-config"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    cwd = tmp_path / "workspace"
    cwd.mkdir()
    project_key = project_key_for_directory(str(cwd))
    projects = config / "projects"
    session_id = str(uuid.uuid4())
    main_file = projects / project_key / f"{session_id}.jsonl"
    sub_file = projects / project_key / session_id / "subagents" / "agent-1.jsonl"

    # Three turns of the main session and two of a subagent, mirrored in this order. The
    # gateway is down for two of them (one of each file); the main one carries a title,
    # which has no uuid.
    main = [[_entry(session_id, f"turn {t} entry {i}", None) for i in range(3)] for t in range(3)]
    sub = [[_entry(session_id, f"sub {t}", None)] for t in range(2)]
    title = {"type": "custom-title", "customTitle": "healed", "sessionId": session_id}
    order = [("main", 0), ("sub", 0), ("main", 1), ("main", 2), ("sub", 1)]
    down = {("sub", 0), ("main", 1)} if gap == "middle" else {("main", 2), ("sub", 1)}
    refused_main = 1 if gap == "middle" else 2
    main[refused_main].append(title)
    main_local = [e for turn in main for e in turn]
    sub_local = [e for turn in sub for e in turn]
    _write_jsonl(main_file, main_local)
    _write_jsonl(sub_file, sub_local)

    shared = other_gateway is not gateway
    task = new_task_id()
    token = gateway.token(task)
    store = GatewaySessionStore(restartable_gateway.url, task, token=token, backoff=(0.0, 0.0))
    reported: list[str] = []

    async def on_error(key: Any, error: str) -> None:
        message = MirrorErrorMessage(
            subtype="mirror_error", data={"key": key, "error": error}, key=key, error=error
        )
        reported_by = GatewaySessionStore(other_gateway.url, task, token=token)
        async with reported_by:  # the gateway that failed is down: report through another
            reported.append(await reported_by.report_mirror_error(message))

    batcher = TranscriptMirrorBatcher(store=store, projects_dir=str(projects), on_error=on_error)
    running = True
    for file, turn in order:
        if ((file, turn) in down) == running:
            if running:
                restartable_gateway.stop()
            else:
                restartable_gateway.start()
            running = not running
        path, turns = (main_file, main) if file == "main" else (sub_file, sub)
        batcher.enqueue(str(path), turns[turn])
        await batcher.flush()
    await batcher.close()
    if not running:
        restartable_gateway.start()
    await store.aclose()
    assert len(reported) == 2, "the SDK reported both dropped batches, and they were reported"

    key = {"project_key": project_key, "session_id": session_id}
    sub_key = {**key, "subpath": "subagents/agent-1"}
    reader_url = gateway.url if shared else restartable_gateway.url
    healer_url = other_gateway.url if shared else restartable_gateway.url
    reader = GatewaySessionStore(reader_url, task, token=token)
    healer = GatewaySessionStore(healer_url, task, token=token)
    async with reader, healer:
        mirrored = [e for t, turn in enumerate(main) if ("main", t) not in down for e in turn]
        sub_mirrored = [e for t, turn in enumerate(sub) if ("sub", t) not in down for e in turn]
        assert await reader.load(key) == mirrored
        assert await reader.load(sub_key) == (sub_mirrored or None)

        await heal(healer, session_id, directory=str(cwd))
        healed = await reader.load(key)
        # Mirrored entries in place, the gap's after them in file order, each uuid once.
        assert healed == mirrored + main[refused_main]
        if gap == "end":
            assert healed == main_local, "a gap at the end heals to exactly the file"
        uuids = [e["uuid"] for e in healed if "uuid" in e]
        assert sorted(uuids) == sorted(e["uuid"] for e in main_local if "uuid" in e)
        assert len(set(uuids)) == len(uuids), "each uuid once"
        sub_missing = [e for e in sub_local if e not in sub_mirrored]
        assert await reader.load(sub_key) == sub_mirrored + sub_missing
        if gap == "end":
            assert await reader.load(sub_key) == sub_local

        # Again: only the entry without a uuid is appended a second time.
        await heal(healer, session_id, directory=str(cwd))
        assert await reader.load(key) == healed + [title]
        assert await reader.load(sub_key) == sub_mirrored + sub_missing


async def test_report_mirror_error_sends_the_key_and_error(gateway: Gateway) -> None:
    """The SDK's MirrorErrorMessage goes to the gateway as is; one without a key too."""
    task = new_task_id()
    transport = FaultTransport(httpx.AsyncHTTPTransport())
    store = GatewaySessionStore(gateway.url, task, token=gateway.token(task), transport=transport)
    key = {"project_key": "-workspace-x", "session_id": str(uuid.uuid4()), "subpath": "subagents/a"}
    async with store:
        first = await store.report_mirror_error(
            MirrorErrorMessage(subtype="mirror_error", data={}, key=key, error="timed out")  # type: ignore[arg-type]
        )
        second = await store.report_mirror_error(
            MirrorErrorMessage(subtype="mirror_error", data={}, key=None, error="no key")
        )
    assert first and second and first != second
    (sent_first, sent_second) = transport.matching("POST", "/mirror-failures")
    assert json.loads(sent_first.content) == {**key, "error": "timed out"}
    assert json.loads(sent_second.content) == {"error": "no key"}


async def test_the_adapter_warns_once_when_the_project_key_drifts_from_the_binding(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """After bind(), appends under another project key are sent (never refused) with one warning."""
    task = new_task_id()
    store = GatewaySessionStore(gateway.url, task, token=gateway.token(task))
    async with store:
        await store.bind(str(uuid.uuid4()), "-workspace-bound", "/workspace/bound")
        moved = {"project_key": "-workspace-moved", "session_id": str(uuid.uuid4())}
        with caplog.at_level("WARNING", logger="transcript_gateway"):
            await store.append(moved, [{"type": "x", "n": 1}])
            await store.append(moved, [{"type": "x", "n": 2}])
        assert await store.load(moved) == [{"type": "x", "n": 1}, {"type": "x", "n": 2}]
    warnings = [r for r in caplog.records if "bound to project key" in r.getMessage()]
    assert len(warnings) == 1
    assert "-workspace-moved" in warnings[0].getMessage()
