"""Claude Agent SDK SessionStore adapter for the transcript-gateway HTTP service."""

from ._errors import (
    BindingConflictError,
    GatewayError,
    GatewayUnavailableError,
    StaleWriterError,
    SummaryConflictError,
)
from ._store import GatewaySessionStore
from ._version import __version__

__all__ = [
    "BindingConflictError",
    "GatewayError",
    "GatewaySessionStore",
    "GatewayUnavailableError",
    "StaleWriterError",
    "SummaryConflictError",
    "__version__",
]
