"""The SDK's SessionStore conformance suite, over HTTP against a real gateway."""

from __future__ import annotations

import pytest

from transcript_gateway import GatewaySessionStore

from conformance import run_full_conformance
from helpers import new_task_id


async def test_sdk_conformance_all_contracts(
    gateway_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """All 14 contracts pass with no optional method skipped."""
    ran = await run_full_conformance(lambda: GatewaySessionStore(gateway_url, new_task_id()))
    with capsys.disabled():
        print(f"\nSDK conformance against {gateway_url}: {len(ran)} contracts passed")
        for name in ran:
            print(f"  passed: contract {name}")
