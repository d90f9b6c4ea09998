"""Runs the SDK's SessionStore conformance suite and checks that every contract ran."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from claude_agent_sdk.testing import run_session_store_conformance
from claude_agent_sdk.types import SessionStore

from transcript_gateway import GatewaySessionStore

OPTIONAL_METHODS = ("list_sessions", "list_session_summaries", "delete", "list_subkeys")
ALL_METHODS = ("append", "load", *OPTIONAL_METHODS)
CONTRACTS = (
    "1 append then load returns the same entries in order",
    "2 load of an unknown key or subpath returns None",
    "3 multiple appends keep call order",
    "4 append([]) is a no-op",
    "5 subpath keys are independent of the main key",
    "6 project_key isolation",
    "7 list_sessions returns the project's session ids with epoch-ms mtimes",
    "8 list_sessions excludes subpaths",
    "14 list_session_summaries returns fold output that round-trips",
    "9 delete then load returns None",
    "10 delete of a main key cascades to its subkeys",
    "11 delete with a subpath removes only that subkey",
    "12 list_subkeys returns subpaths",
    "13 list_subkeys excludes the main transcript",
)


def _recording(store: GatewaySessionStore, calls: set[str]) -> GatewaySessionStore:
    for name in ALL_METHODS:
        method = getattr(store, name)

        async def wrapper(*args: Any, _method: Any = method, _name: str = name) -> Any:
            calls.add(_name)
            return await _method(*args)

        setattr(store, name, wrapper)
    return store


async def run_full_conformance(make: Callable[[], GatewaySessionStore]) -> list[str]:
    """Run every contract against stores from make(); return the contract names that ran."""
    for name in OPTIONAL_METHODS:
        assert getattr(GatewaySessionStore, name) is not getattr(SessionStore, name), name

    made: list[GatewaySessionStore] = []
    calls: set[str] = set()

    def factory() -> GatewaySessionStore:
        store = make()
        made.append(store)
        return _recording(store, calls)

    try:
        await run_session_store_conformance(factory, skip_optional=frozenset())
    finally:
        for store in made:
            await store.aclose()

    assert len(made) == 1 + len(CONTRACTS), (
        f"expected a probe plus {len(CONTRACTS)} contracts, the suite made {len(made)} stores"
    )
    assert calls == set(ALL_METHODS), f"methods never exercised: {set(ALL_METHODS) - calls}"
    return list(CONTRACTS)
