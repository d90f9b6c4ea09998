"""The SDK's SessionStore conformance suite, over HTTP against a real gateway."""

from __future__ import annotations

import pytest

from transcript_gateway import GatewaySessionStore

from conformance import run_full_conformance
from conftest import Gateway
from helpers import new_task_id


def _store(gateway: Gateway) -> GatewaySessionStore:
    """A fresh, isolated store: a new task and a write token for it alone."""
    task = new_task_id()
    return GatewaySessionStore(gateway.url, task, token=gateway.token(task))


async def test_sdk_conformance_all_contracts(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    """All 14 contracts pass with no optional method skipped, with per-task tokens."""
    ran = await run_full_conformance(lambda: _store(gateway))
    with capsys.disabled():
        print(f"\nSDK conformance against {gateway.url}: {len(ran)} contracts passed")
        for name in ran:
            print(f"  passed: contract {name}")
