"""Closing mirror gaps: replay a worker's local transcript into the gateway."""

from __future__ import annotations

from claude_agent_sdk import import_session_to_store
from claude_agent_sdk.types import SessionStore

__all__ = ["heal"]


async def heal(
    store: SessionStore,
    session_id: str,
    *,
    directory: str | None = None,
    include_subagents: bool = True,
) -> None:
    """Make the store's copy of a session complete again after a mirror gap.

    Replays the worker's local JSONL transcript of ``session_id`` (and, by default,
    its subagents) into ``store`` with the SDK's ``import_session_to_store``. The
    gateway stores an entry whose ``uuid`` it already holds only once, so entries
    mirrored before the gap stay where they are, the gap's entries are added after
    them in file order, and running ``heal`` again adds nothing that carries a uuid
    (entries without one, such as titles, are appended again: the SDK's contract
    never deduplicates those).

    ``directory`` is the agent's working directory (the SDK searches every project
    directory when it is omitted). Raises ``FileNotFoundError`` when the local
    transcript is gone.
    """
    await import_session_to_store(
        session_id,
        store,
        directory=directory,
        include_subagents=include_subagents,
    )
