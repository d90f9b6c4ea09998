"""The Python side of the cross-language round trip (run by crosslang.test.ts, not collected).

python crosslang.py write URL TASK_ID
    Appends a session with two subagents through the Python adapter (summaries
    folded by the Python SDK), binds the task, and prints one JSON line: the
    binding, the key, the entries of every transcript and the listed summary.

python crosslang.py read URL TASK_ID PROJECT_KEY SESSION_ID
    A fresh store loads the session and its subkeys and lists the summaries;
    prints them with the summary Python's own fold gives for the loaded entries.

python crosslang.py resume URL TASK_ID
    A fresh worker resumes the task: reads its binding, takes a lease, and
    prints what `read` prints for the bound session, with the binding and epoch.

python crosslang.py cas URL TASK_ID PROJECT_KEY SESSION_ID
    Prints "ready", then follows commands on stdin, appending batches with
    customTitle "py-<i>": "one I" appends batch I and prints "ok"; "burst I J"
    appends batches I to J-1, 15 ms apart, and prints "done". Ends at EOF.

The token is in GATEWAY_TOKEN.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from typing import Any

from claude_agent_sdk import fold_session_summary, project_key_for_directory

from transcript_gateway import GatewaySessionStore


def _store(url: str, task_id: str) -> GatewaySessionStore:
    return GatewaySessionStore(url, task_id, token=os.environ.get("GATEWAY_TOKEN") or None)


def _emit(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _entry(kind: str, session_id: str, cwd: str, text: str, second: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "uuid": str(uuid.uuid4()),
        "sessionId": session_id,
        "cwd": cwd,
        "isSidechain": False,
        "timestamp": f"2025-03-01T10:00:{second:02d}.000Z",
        "message": {"role": kind, "content": text},
        **extra,
    }


async def write(url: str, task_id: str) -> None:
    cwd = f"/workspace/{task_id}"
    session_id = str(uuid.uuid4())
    project_key = project_key_for_directory(cwd)
    key = {"project_key": project_key, "session_id": session_id}
    batches = [
        [
            _entry("user", session_id, cwd, "Fix the failing test", 1, gitBranch="main"),
            _entry("assistant", session_id, cwd, "Looking at it", 2),
        ],
        [{"type": "custom-title", "customTitle": "Failing test", "sessionId": session_id}],
        [
            _entry("user", session_id, cwd, "Now run it again", 3, lastPrompt="Now run it again"),
            {"type": "tag", "tag": "bugfix", "sessionId": session_id},
            _entry("assistant", session_id, cwd, "Done", 4, summary="Fixed the test"),
        ],
    ]
    subkeys: dict[str, list[dict[str, Any]]] = {}
    async with _store(url, task_id) as store:
        await store.lease()
        main: list[dict[str, Any]] = []
        for number, batch in enumerate(batches):
            await store.append(key, batch)
            main.extend(batch)
            subpath = f"subagents/agent-{number}"
            if number < 2:
                sub = [{**_entry("user", session_id, cwd, f"sub {number}", 5), "isSidechain": True}]
                await store.append({**key, "subpath": subpath}, sub)
                subkeys[subpath] = sub
        binding = await store.bind(session_id, project_key, cwd)
        summaries = await store.list_session_summaries(project_key)
    _emit(
        {
            "binding": binding,
            "key": key,
            "main": main,
            "subkeys": subkeys,
            "summaries": summaries,
        }
    )


async def _read(store: GatewaySessionStore, project_key: str, session_id: str) -> dict[str, Any]:
    key = {"project_key": project_key, "session_id": session_id}
    main = await store.load(key)
    subkeys = {
        subpath: await store.load({**key, "subpath": subpath})
        for subpath in await store.list_subkeys(key)
    }
    summaries = await store.list_session_summaries(project_key)
    expected = fold_session_summary(None, key, main or [])["data"]
    return {"main": main, "subkeys": subkeys, "summaries": summaries, "fold": expected}


async def read(url: str, task_id: str, project_key: str, session_id: str) -> None:
    async with _store(url, task_id) as store:
        _emit(await _read(store, project_key, session_id))


async def resume(url: str, task_id: str) -> None:
    async with _store(url, task_id) as store:
        binding = await store.binding()
        if binding is None:
            _emit({"binding": None})
            return
        epoch = await store.lease()
        read = await _read(store, binding["project_key"], binding["claude_session_id"])
    _emit({"binding": binding, "epoch": epoch, **read})


async def cas(url: str, task_id: str, project_key: str, session_id: str) -> None:
    key = {"project_key": project_key, "session_id": session_id}
    loop = asyncio.get_running_loop()

    async def append(i: int) -> None:
        await store.append(key, [{"type": "x", "uuid": str(uuid.uuid4()), "customTitle": f"py-{i}"}])

    async with _store(url, task_id) as store:
        _emit("ready")
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, *numbers = line.split()
            if command == "one":
                await append(int(numbers[0]))
                _emit("ok")
            elif command == "burst":
                for i in range(int(numbers[0]), int(numbers[1])):
                    await append(i)
                    await asyncio.sleep(0.015)  # as the TypeScript writer does: the two interleave
                _emit("done")


def main() -> None:
    role, url, task_id, *rest = sys.argv[1:]
    if role == "write":
        asyncio.run(write(url, task_id))
    elif role == "read":
        asyncio.run(read(url, task_id, rest[0], rest[1]))
    elif role == "resume":
        asyncio.run(resume(url, task_id))
    elif role == "cas":
        asyncio.run(cas(url, task_id, rest[0], rest[1]))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
