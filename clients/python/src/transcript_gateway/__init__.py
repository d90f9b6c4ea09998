"""Claude Agent SDK SessionStore adapter for the transcript-gateway HTTP service."""

from ._errors import (
    BindingConflictError,
    ForbiddenError,
    GatewayError,
    GatewayUnavailableError,
    StaleWriterError,
    SummaryConflictError,
    UnauthorizedError,
)
from ._store import GatewaySessionStore, TokenSource
from ._version import __version__

__all__ = [
    "BindingConflictError",
    "ForbiddenError",
    "GatewayError",
    "GatewaySessionStore",
    "GatewayUnavailableError",
    "StaleWriterError",
    "SummaryConflictError",
    "TokenSource",
    "UnauthorizedError",
    "__version__",
]
