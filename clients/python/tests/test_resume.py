"""Cross-worker resume: worker A writes and binds, is SIGKILLed; a fresh worker B resumes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import Gateway
from helpers import new_task_id

WORKER = Path(__file__).with_name("resume_worker.py")
LINE_TIMEOUT_S = 60.0


async def _start(
    role: str, url: str, task_id: str, stderr: Path, token: str | None
) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    if token:
        # The worker's task token, as an orchestrator hands it over.
        env["GATEWAY_TOKEN"] = token
    with stderr.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            role,
            url,
            task_id,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env=env,
        )


async def _json_line(proc: asyncio.subprocess.Process, stderr: Path) -> dict[str, Any]:
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), LINE_TIMEOUT_S)
    except asyncio.TimeoutError:
        pytest.fail(f"worker printed nothing in {LINE_TIMEOUT_S:.0f}s:\n{stderr.read_text()}")
    if not line:
        await proc.wait()
        pytest.fail(f"worker exited with {proc.returncode} before printing:\n{stderr.read_text()}")
    payload: dict[str, Any] = json.loads(line)
    return payload


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill a worker this test started, by its own pid, if it is still running."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_worker_b_resumes_what_killed_worker_a_wrote(
    gateway: Gateway, tmp_path: Path
) -> None:
    """B (fresh process, no cache) reads A's binding and loads A's transcript unchanged."""
    task_id = new_task_id()

    a = await _start("write", gateway.url, task_id, tmp_path / "a.err", gateway.token(task_id))
    try:
        written = await _json_line(a, tmp_path / "a.err")
        await asyncio.sleep(0.2)
        assert a.returncode is None, "worker A must still be running when it is killed"
        a.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(a.wait(), 15) == -signal.SIGKILL
    finally:
        await _reap(a)

    b = await _start("resume", gateway.url, task_id, tmp_path / "b.err", gateway.token(task_id))
    try:
        resumed = await _json_line(b, tmp_path / "b.err")
        assert await asyncio.wait_for(b.wait(), 30) == 0, (tmp_path / "b.err").read_text()
    finally:
        await _reap(b)

    assert resumed["binding"] == written["binding"]
    binding = resumed["binding"]
    assert binding["cwd"] == f"/workspace/{task_id}"
    assert binding["claude_session_id"] == written["main"][0]["sessionId"]
    assert len(written["main"]) == 8 and len(written["subkeys"]["subagents/agent-1"]) == 2
    assert resumed["main"] == written["main"]
    assert resumed["subkeys"] == written["subkeys"]
    assert resumed["epoch"] > written["epoch"]
