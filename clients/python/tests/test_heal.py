"""Mirror gaps healed end to end with the real SDK: a local transcript (main session
and a subagent) mirrored through the SDK's own TranscriptMirrorBatcher while the
gateway refuses some batches, the failures reported, then ``heal``."""

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

from conftest import Gateway
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


class _Refuser(FaultTransport):
    """Answers 503 to the appends of the batches whose first entry is in ``refused``."""

    def __init__(self, refused: set[str]) -> None:
        super().__init__(httpx.AsyncHTTPTransport())
        self.refused = refused

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/entries"):
            body = json.loads(request.content)
            if body["entries"][0].get("uuid") in self.refused:
                self.requests.append(request)
                return httpx.Response(
                    503,
                    json={"error": {"code": "backend_unavailable", "message": "down", "request_id": "x"}},
                )
        return await super().handle_async_request(request)


@pytest.mark.parametrize("gap", ["middle", "end"])
async def test_heal_after_a_mirror_gap_adds_exactly_the_missing_entries(
    gateway: Gateway,
    other_gateway: Gateway,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gap: str,
) -> None:
    """Entries mirrored before the gap stay in place, the gap's entries follow in file
    order (a gap at the end heals to exactly the file), every uuid once; heal again adds
    only the entries without a uuid. On shared storage the heal runs through a second
    gateway process (the worker that took the task over), the reads through the first."""
    config = tmp_path / "claude-config"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    cwd = tmp_path / "workspace"
    cwd.mkdir()
    project_key = project_key_for_directory(str(cwd))
    projects = config / "projects"
    session_id = str(uuid.uuid4())
    main_file = projects / project_key / f"{session_id}.jsonl"
    sub_file = projects / project_key / session_id / "subagents" / "agent-1.jsonl"

    # Three turns of the main session, two of a subagent. The gateway refuses one main turn
    # (all its attempts) and the first subagent turn; the refused main turn carries a title,
    # which has no uuid.
    refused_turn = 1 if gap == "middle" else 2
    turns: list[list[dict[str, Any]]] = []
    parent = None
    for t in range(3):
        turn = []
        for i in range(3):
            entry = _entry(session_id, f"turn {t} entry {i}", parent)
            parent = entry["uuid"]
            turn.append(entry)
        turns.append(turn)
    title = {"type": "custom-title", "customTitle": "healed", "sessionId": session_id}
    turns[refused_turn].append(title)
    sub_turns = [[_entry(session_id, f"sub {t}", None)] for t in range(2)]
    main_local = [e for turn in turns for e in turn]
    sub_local = [e for turn in sub_turns for e in turn]
    _write_jsonl(main_file, main_local)
    _write_jsonl(sub_file, sub_local)

    refused = {turns[refused_turn][0]["uuid"], sub_turns[0][0]["uuid"]}
    task = new_task_id()
    transport = _Refuser(refused)
    store = GatewaySessionStore(
        gateway.url, task, token=gateway.token(task), transport=transport, backoff=(0.0, 0.0)
    )
    reported: list[str] = []

    async def on_error(key: Any, error: str) -> None:
        message = MirrorErrorMessage(
            subtype="mirror_error", data={"key": key, "error": error}, key=key, error=error
        )
        reported.append(await store.report_mirror_error(message))

    batcher = TranscriptMirrorBatcher(store=store, projects_dir=str(projects), on_error=on_error)
    for turn in turns:
        batcher.enqueue(str(main_file), turn)
        await batcher.flush()
    for turn in sub_turns:
        batcher.enqueue(str(sub_file), turn)
        await batcher.flush()
    await batcher.close()
    assert len(reported) == 2, "the SDK reported both dropped batches, and the store reported them"

    key = {"project_key": project_key, "session_id": session_id}
    sub_key = {**key, "subpath": "subagents/agent-1"}
    reader = GatewaySessionStore(gateway.url, task, token=gateway.token(task))
    async with reader:
        mirrored = await reader.load(key)
        assert mirrored == [e for i, t in enumerate(turns) if i != refused_turn for e in t]

        healer = GatewaySessionStore(other_gateway.url, task, token=other_gateway.token(task))
        await heal(healer, session_id, directory=str(cwd))
        healed = await reader.load(key)
        # Mirrored entries in place, the gap's after them in file order.
        expected = [e for i, t in enumerate(turns) if i != refused_turn for e in t] + turns[refused_turn]
        assert healed == expected
        if gap == "end":
            assert healed == main_local, "a gap at the end heals to exactly the file"
        uuids = [e["uuid"] for e in healed if "uuid" in e]
        assert sorted(uuids) == sorted(e["uuid"] for e in main_local if "uuid" in e)
        assert len(set(uuids)) == len(uuids), "each uuid once"
        assert await reader.load(sub_key) == sub_turns[1] + sub_turns[0]

        # Again: only the entry without a uuid is appended a second time.
        await heal(healer, session_id, directory=str(cwd))
        await healer.aclose()
        again = await reader.load(key)
        assert again == healed + [title]
        assert await reader.load(sub_key) == sub_turns[1] + sub_turns[0]
    await store.aclose()


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
