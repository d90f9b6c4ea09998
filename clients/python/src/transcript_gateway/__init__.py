"""Claude Agent SDK SessionStore adapter for the transcript-gateway HTTP service."""

from ._errors import GatewayError, GatewayUnavailableError, SummaryConflictError
from ._store import GatewaySessionStore
from ._version import __version__

__all__ = [
    "GatewayError",
    "GatewaySessionStore",
    "GatewayUnavailableError",
    "SummaryConflictError",
    "__version__",
]
