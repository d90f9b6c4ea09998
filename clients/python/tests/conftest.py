"""Fixtures: a real gateway process (or TG_GATEWAY_URL) and a factory of adapter stores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from transcript_gateway import GatewaySessionStore

from helpers import new_task_id

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BIN = "target/debug/transcript-gateway"
READY_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(url: str, proc: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: str = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(
                f"gateway exited with {proc.returncode} before it was ready:\n"
                f"{_log_tail(log) if log else ''}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    pytest.fail(
        f"gateway at {url} not healthy after {READY_TIMEOUT_S:.0f}s ({last}):\n"
        f"{_log_tail(log) if log else ''}"
    )


@pytest.fixture(scope="session")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running gateway: TG_GATEWAY_URL, or a process started for the session."""
    external = os.environ.get("TG_GATEWAY_URL")
    if external:
        url = external.rstrip("/")
        _wait_ready(url, None, None)
        yield url
        return

    binary = Path(os.environ.get("TG_GATEWAY_BIN", DEFAULT_BIN))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.is_file():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set TG_GATEWAY_BIN")

    env = dict(os.environ)
    extra: Any = json.loads(os.environ.get("TG_GATEWAY_EXTRA_ENV") or "{}")
    if not isinstance(extra, dict):
        pytest.fail("TG_GATEWAY_EXTRA_ENV must be a JSON object")
    env.update({str(k): str(v) for k, v in extra.items()})

    workdir = tmp_path_factory.mktemp("gateway")
    data_dir = workdir / "data"
    data_dir.mkdir()
    log = workdir / "gateway.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


StoreFactory = Callable[..., GatewaySessionStore]


@pytest.fixture
async def make_store(gateway_url: str) -> AsyncIterator[StoreFactory]:
    """Factory of stores on the test gateway, each on a fresh task unless task_id is given."""
    stores: list[GatewaySessionStore] = []

    def factory(task_id: str | None = None, **kwargs: Any) -> GatewaySessionStore:
        store = GatewaySessionStore(gateway_url, task_id or new_task_id(), **kwargs)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.aclose()
