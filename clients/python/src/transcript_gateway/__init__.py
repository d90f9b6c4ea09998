"""Claude Agent SDK SessionStore adapter for the transcript-gateway HTTP service."""

from ._errors import (
    BindingConflictError,
    EpochRequiredError,
    ForbiddenError,
    GatewayError,
    GatewayUnavailableError,
    StaleWriterError,
    StoreClosedError,
    SummaryConflictError,
    TaskErasedError,
    UnauthorizedError,
    UnknownEpochError,
)
from ._heal import heal
from ._store import Binding, GatewaySessionStore, TokenSource
from ._version import __version__

__all__ = [
    "Binding",
    "BindingConflictError",
    "EpochRequiredError",
    "ForbiddenError",
    "GatewayError",
    "GatewaySessionStore",
    "GatewayUnavailableError",
    "StaleWriterError",
    "StoreClosedError",
    "SummaryConflictError",
    "TaskErasedError",
    "TokenSource",
    "UnauthorizedError",
    "UnknownEpochError",
    "__version__",
    "heal",
]
