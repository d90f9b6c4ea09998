"""Exceptions raised by the transcript-gateway client."""

from __future__ import annotations

from typing import Any

import httpx


class GatewayError(Exception):
    """A request to the gateway failed; carries the error envelope's fields."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"HTTP {self.status}" if self.status is not None else "gateway"
        if self.code:
            head = f"{head} {self.code}"
        text = f"{head}: {self.message}"
        if self.request_id:
            text = f"{text} (request_id={self.request_id})"
        return text

    @classmethod
    def from_response(cls, response: httpx.Response) -> GatewayError:
        """Build the error for a non-2xx response from its JSON error envelope."""
        code: str | None = None
        message: str | None = None
        request_id: str | None = None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code = _str_or_none(error.get("code"))
            message = _str_or_none(error.get("message"))
            request_id = _str_or_none(error.get("request_id"))
        if request_id is None:
            request_id = response.headers.get("x-request-id")
        if message is None:
            message = response.text[:500] or response.reason_phrase or "request failed"
        error_cls = _CODE_CLASSES.get(code or "", cls)
        return error_cls(message, status=response.status_code, code=code, request_id=request_id)


class GatewayUnavailableError(GatewayError):
    """The gateway could not be reached within the retry budget."""


class SummaryConflictError(GatewayError):
    """A summary compare-and-set kept losing to concurrent writers."""


class BindingConflictError(GatewayError):
    """The task is already bound to a different Claude session, project key or cwd."""


class StaleWriterError(GatewayError):
    """A newer writer holds the task's lease; this store's epoch is fenced off.

    The append wrote nothing and must not be retried with the same epoch.
    """


class UnknownEpochError(GatewayError):
    """The store's epoch was never issued for this task (409 unknown_epoch): it is
    newer than every lease. Take a lease with ``lease()`` instead of inventing one."""


class EpochRequiredError(GatewayError):
    """The task has a writer lease and this store sent no epoch (409 epoch_required).

    Once any worker has leased a task, every write must carry the current epoch:
    call ``lease()`` (or set ``epoch=``) before writing.
    """


class TaskErasedError(GatewayError):
    """The task was erased (or is being erased) while this write was under way
    (409 task_erased): nothing of the write was kept. Never retried: sending it
    again would start a new transcript after the erasure."""


class UnauthorizedError(GatewayError):
    """The gateway refused the token (401): missing, malformed, expired or wrongly signed.

    Never retried: a fresh token is needed (see the ``token=`` callable form).
    """


class ForbiddenError(GatewayError):
    """The token is valid but not for this task or this operation (403). Never retried."""


class StoreClosedError(GatewayError):
    """An append after ``aclose()`` began: the store takes no new writes."""


_CODE_CLASSES: dict[str, type[GatewayError]] = {
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "summary_conflict": SummaryConflictError,
    "binding_conflict": BindingConflictError,
    "stale_writer": StaleWriterError,
    "unknown_epoch": UnknownEpochError,
    "epoch_required": EpochRequiredError,
    "task_erased": TaskErasedError,
}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
