"""Fixtures: a real gateway process (or TG_TEST_GATEWAY_URL) and a factory of adapter stores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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


def _binary() -> Path:
    binary = Path(os.environ.get("TG_TEST_GATEWAY_BIN", DEFAULT_BIN))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.is_file():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set TG_TEST_GATEWAY_BIN")
    return binary


@dataclass(frozen=True)
class Gateway:
    """A running gateway and the secret its tokens are signed with (None: it runs open)."""

    url: str
    secret: str | None

    def token(self, task_id: str, scope: str = "transcripts:write", ttl: str = "1h") -> str | None:
        """A token minted by `transcript-gateway token mint`, as an orchestrator would."""
        if self.secret is None:
            return None
        env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
        env["TG_AUTH_SECRET"] = self.secret
        out = subprocess.run(
            [str(_binary()), "token", "mint", "--task", task_id, "--scope", scope, "--ttl", ttl],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()

    def headers(self, task_id: str, scope: str = "transcripts:write") -> dict[str, str]:
        """Request headers carrying a token for the task."""
        token = self.token(task_id, scope)
        return {"Authorization": f"Bearer {token}"} if token else {}


def _extra_env() -> dict[str, str]:
    extra: Any = json.loads(os.environ.get("TG_TEST_GATEWAY_EXTRA_ENV") or "{}")
    if not isinstance(extra, dict):
        pytest.fail("TG_TEST_GATEWAY_EXTRA_ENV must be a JSON object")
    return {str(k): str(v) for k, v in extra.items()}


@contextmanager
def _spawn(workdir: Path, secret: str, port: int | None = None) -> Iterator[Gateway]:
    """A gateway process with its data directory and log in ``workdir`` (kept across
    restarts in the same directory), on ``port`` or a free one, stopped on exit."""
    env = dict(os.environ)
    env["TG_AUTH_SECRET"] = secret
    env.update(_extra_env())
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log = workdir / "gateway.log"
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as log_file:
        proc = subprocess.Popen(
            [str(_binary()), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_ready(url, proc, log)
        yield Gateway(url, secret)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A running gateway with authentication on: TG_TEST_GATEWAY_URL (with TG_AUTH_SECRET if it
    needs tokens), or a process started for the session with a fresh secret."""
    external = os.environ.get("TG_TEST_GATEWAY_URL")
    if external:
        url = external.rstrip("/")
        _wait_ready(url, None, None)
        yield Gateway(url, os.environ.get("TG_AUTH_SECRET") or None)
        return
    secret = "pytest-" + uuid.uuid4().hex + uuid.uuid4().hex
    with _spawn(tmp_path_factory.mktemp("gateway"), secret) as gw:
        yield gw


@pytest.fixture(scope="session")
def other_gateway(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A second gateway process on the same storage when the storage is shared (S3 and
    DynamoDB); the same gateway on the embedded backend, whose files one process owns."""
    if os.environ.get("TG_TEST_GATEWAY_URL") or "TG_S3_BUCKET" not in _extra_env():
        yield gateway
        return
    assert gateway.secret is not None
    with _spawn(tmp_path_factory.mktemp("other-gateway"), gateway.secret) as gw:
        yield gw


@dataclass
class Restartable:
    """A gateway of the test's own that can be stopped and started again on the same
    address and storage, as a worker sees a gateway that is down for a moment."""

    workdir: Path
    secret: str
    port: int
    stack: ExitStack

    @property
    def url(self) -> str:
        """The address it serves on, whether or not it runs now."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts it and waits until it is ready."""
        self.stack.enter_context(_spawn(self.workdir, self.secret, self.port))

    def stop(self) -> None:
        """Stops it (SIGTERM, after it drains)."""
        self.stack.close()
        self.stack = ExitStack()


@pytest.fixture
def restartable_gateway(gateway: Gateway, tmp_path: Path) -> Iterator[Restartable]:
    """A gateway process with the session gateway's secret, started; the test may stop and
    start it. On shared storage (S3 and DynamoDB) it serves the session gateway's data, on
    the embedded backend its own data directory. Needs a gateway this suite starts itself."""
    if os.environ.get("TG_TEST_GATEWAY_URL") or gateway.secret is None:
        pytest.skip("needs a gateway process started by the suite (TG_TEST_GATEWAY_URL is set)")
    workdir = tmp_path / "restartable"
    workdir.mkdir()
    restartable = Restartable(workdir, gateway.secret, _free_port(), ExitStack())
    restartable.start()
    try:
        yield restartable
    finally:
        restartable.stop()


@pytest.fixture(scope="session")
def gateway_url(gateway: Gateway) -> str:
    """Base URL of the session's gateway."""
    return gateway.url


StoreFactory = Callable[..., GatewaySessionStore]


@pytest.fixture
async def make_store(gateway: Gateway) -> AsyncIterator[StoreFactory]:
    """Factory of stores on the test gateway, each on a fresh task unless task_id is given,
    each with a write token for its task unless token= is given."""
    stores: list[GatewaySessionStore] = []

    def factory(task_id: str | None = None, **kwargs: Any) -> GatewaySessionStore:
        task = task_id or new_task_id()
        kwargs.setdefault("token", gateway.token(task))
        store = GatewaySessionStore(gateway.url, task, **kwargs)
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.aclose()
