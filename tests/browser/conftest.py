"""Fixtures for the dashboard's browser test: a gateway process on loopback (embedded
backend, tokens on), tokens minted by its own `token mint`, and Debian's chromium driven
by Playwright. Every wait is bounded; the browser and the gateway stop at the end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = "target/debug/transcript-gateway"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def _binary() -> Path:
    binary = Path(os.environ.get("TG_TEST_GATEWAY_BIN", DEFAULT_BIN))
    if not binary.is_absolute():
        binary = REPO_ROOT / binary
    if not binary.is_file():
        pytest.fail(f"gateway binary {binary} not found: run `cargo build` or set TG_TEST_GATEWAY_BIN")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Gateway:
    """A running gateway and the secret its tokens are signed with."""

    url: str
    secret: str
    log: Path

    def token(self, task: str, scope: str) -> str:
        """A token from `transcript-gateway token mint`, as an operator would mint one."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
        env["TG_AUTH_SECRET"] = self.secret
        out = subprocess.run(
            [str(_binary()), "token", "mint", "--task", task, "--scope", scope, "--ttl", "1h"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return out.stdout.strip()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway process on a free loopback port with a fresh secret and data directory."""
    workdir = tmp_path_factory.mktemp("gateway")
    secret = "browser-" + uuid.uuid4().hex + uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("TG_")}
    env["TG_AUTH_SECRET"] = secret
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "gateway.log"
    with log.open("ab") as log_file:
        proc = subprocess.Popen(
            [str(_binary()), "serve", "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(workdir / "data")],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"gateway exited with {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"gateway not healthy after {READY_TIMEOUT_S:.0f}s")
            time.sleep(0.1)
        yield Gateway(url, secret, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _chromium() -> str:
    path = os.environ.get("TG_TEST_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "no chromium: install Debian's package (`apt-get install chromium`; scripts/test "
            "does) or set TG_TEST_CHROMIUM to a Chromium binary"
        )
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian chromium under Playwright (never a browser Playwright downloads)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), headless=True, timeout=60_000)
        try:
            yield browser
        finally:
            browser.close()
