"""A worker process for the cross-worker resume test (run as a script, not collected).

python resume_worker.py write URL TASK_ID
    Worker A: leases the task, appends a transcript in several batches (main
    key and a subagent subpath), binds the task, prints one JSON line with
    what it wrote, then sleeps until it is killed.

python resume_worker.py resume URL TASK_ID
    Worker B: a fresh store with no cache reads the binding, leases, loads the
    main transcript and every subkey, and prints them as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from typing import Any

from claude_agent_sdk import project_key_for_directory

from transcript_gateway import GatewaySessionStore


def _token() -> str | None:
    return os.environ.get("GATEWAY_TOKEN") or None


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _entry(kind: str, session_id: str, cwd: str, text: str, parent: str | None) -> dict[str, Any]:
    return {
        "type": kind,
        "uuid": str(uuid.uuid4()),
        "parentUuid": parent,
        "sessionId": session_id,
        "cwd": cwd,
        "isSidechain": False,
        "timestamp": "2025-03-01T10:00:00.000Z",
        "message": {"role": kind, "content": text},
    }


async def write(url: str, task_id: str) -> None:
    cwd = f"/workspace/{task_id}"
    session_id = str(uuid.uuid4())
    project_key = project_key_for_directory(cwd)
    key = {"project_key": project_key, "session_id": session_id}
    sub = {**key, "subpath": "subagents/agent-1"}
    main: list[dict[str, Any]] = []
    subagent: list[dict[str, Any]] = []
    async with GatewaySessionStore(url, task_id, token=_token()) as store:
        epoch = await store.lease()
        parent: str | None = None
        for batch_no in range(4):
            batch = []
            for kind in ("user", "assistant"):
                entry = _entry(kind, session_id, cwd, f"batch {batch_no} {kind}", parent)
                parent = entry["uuid"]
                batch.append(entry)
            await store.append(key, batch)
            main.extend(batch)
            if batch_no in (1, 2):
                sub_batch = [
                    {
                        **_entry("user", session_id, cwd, f"sub {batch_no}", None),
                        "isSidechain": True,
                    }
                ]
                await store.append(sub, sub_batch)
                subagent.extend(sub_batch)
        binding = await store.bind(session_id, project_key, cwd)
    _emit(
        {
            "epoch": epoch,
            "binding": binding,
            "main": main,
            "subkeys": {sub["subpath"]: subagent},
        }
    )
    # Stay alive so the test's SIGKILL, not a clean exit, ends this worker.
    while True:
        time.sleep(3600)


async def resume(url: str, task_id: str) -> None:
    async with GatewaySessionStore(url, task_id, token=_token()) as store:
        binding = await store.binding()
        if binding is None:
            _emit({"binding": None})
            return
        epoch = await store.lease()
        key = {"project_key": binding["project_key"], "session_id": binding["claude_session_id"]}
        main = await store.load(key)
        subkeys = {
            subpath: await store.load({**key, "subpath": subpath})
            for subpath in await store.list_subkeys(key)
        }
    _emit({"epoch": epoch, "binding": binding, "main": main, "subkeys": subkeys})


def main() -> None:
    role, url, task_id = sys.argv[1:4]
    if role == "write":
        asyncio.run(write(url, task_id))
    elif role == "resume":
        asyncio.run(resume(url, task_id))
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main()
