//! The one service error type. Engine and handlers return [`Error`]; each
//! variant says what a client can do about it. [`ErrorCode`] names it on the
//! wire and maps it to an HTTP status in one exhaustive `match`.

use std::fmt;

use crate::backend::{BoxError, PortError};
use crate::domain::Invalid;

pub use crate::domain::error_chain as chain;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or breaks a validation rule.
    #[error("{0}")]
    Invalid(String),
    /// The body is not JSON (`Content-Type` is not `application/json`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No credentials, or credentials that do not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the scope this request needs.
    #[error("{0}")]
    Forbidden(String),
    /// A stream offset that is not one this gateway produced.
    #[error("{0}")]
    InvalidOffset(String),
    /// A stream offset of an earlier incarnation of the transcript (deleted
    /// and written again since).
    #[error("{0}")]
    OffsetGone(String),
    /// The resource does not exist (or was deleted).
    #[error("{0}")]
    NotFound(String),
    /// No route matches the path.
    #[error("{0}")]
    NoSuchRoute(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// An idempotency key was reused with a different request.
    #[error("{0}")]
    IdempotencyConflict(String),
    /// A compare-and-set summary update lost to another writer.
    #[error("{0}")]
    SummaryConflict(String),
    /// The task is already bound to different values.
    #[error("{0}")]
    BindingConflict(String),
    /// The writer's epoch is older than the task's current lease.
    #[error("{0}")]
    StaleWriter(String),
    /// The writer's epoch is newer than any lease of the task.
    #[error("{0}")]
    UnknownEpoch(String),
    /// The task has a lease and the write carried no epoch.
    #[error("{0}")]
    EpochRequired(String),
    /// Some other state conflict; retrying may succeed.
    #[error("{0}")]
    Conflict(String),
    /// The task was erased while the write was in flight; nothing of it stays.
    #[error("{0}")]
    Erased(String),
    /// The body is larger than the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// The request target and headers are larger than the configured limit.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// Too many requests are in flight; retry shortly.
    #[error("the gateway is serving its limit of requests at once; retry shortly")]
    Overloaded,
    /// This instance serves its limit of live readers; retry shortly.
    #[error("{0}")]
    TooManyReaders(String),
    /// The gateway is shutting down and takes no new work.
    #[error("the gateway is draining; retry against another instance")]
    Draining,
    /// A backend did not answer or refused the call.
    #[error("storage backend unavailable")]
    BackendUnavailable(#[source] PortError),
    /// Stored data failed its checksum; it is never served.
    #[error("stored data failed checksum verification")]
    ChecksumMismatch(#[source] PortError),
    /// Stored parts break their hash chain: replaced, removed or truncated.
    #[error("stored transcript failed its integrity check: {object}")]
    IntegrityViolation {
        /// The object (or directory) whose check failed.
        object: String,
        /// Which check, and where.
        #[source]
        source: BoxError,
    },
    /// The request took longer than the configured timeout.
    #[error("the request timed out")]
    Timeout,
    /// A bug.
    #[error("internal error: {context}")]
    Internal {
        /// What was being done.
        context: String,
        /// Why, when another error says so.
        #[source]
        source: Option<BoxError>,
    },
    /// A backend answered in a way the gateway does not expect.
    #[error("unexpected backend answer")]
    Backend(#[source] PortError),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    /// [`Error::Internal`] without a source.
    pub fn internal(context: impl fmt::Display) -> Self {
        Error::Internal {
            context: context.to_string(),
            source: None,
        }
    }

    /// [`Error::Internal`] caused by `cause`.
    pub fn internal_from(context: impl fmt::Display, cause: impl Into<BoxError>) -> Self {
        Error::Internal {
            context: context.to_string(),
            source: Some(cause.into()),
        }
    }

    /// The `reason` under which this error counts as a mirror failure when
    /// an append fails with it (`tg.mirror.failures`): `timeout`, `catalog`,
    /// `backend_unavailable`, `checksum`, `conflict_exhausted`, `draining`
    /// or `internal`.
    pub fn mirror_reason(&self) -> &'static str {
        match self {
            Error::BackendUnavailable(p) | Error::Backend(p) if p.is_timeout() => "timeout",
            Error::Timeout => "timeout",
            Error::BackendUnavailable(p) | Error::Backend(p) if p.is_catalog() => "catalog",
            Error::BackendUnavailable(_) => "backend_unavailable",
            Error::ChecksumMismatch(_) => "checksum",
            Error::Conflict(_) => "conflict_exhausted",
            Error::Draining => "draining",
            _ => "internal",
        }
    }

    /// The wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Invalid(_) => ErrorCode::InvalidRequest,
            Error::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::InvalidOffset(_) => ErrorCode::InvalidOffset,
            Error::OffsetGone(_) => ErrorCode::OffsetGone,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::NoSuchRoute(_) => ErrorCode::NoSuchRoute,
            Error::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Error::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
            Error::SummaryConflict(_) => ErrorCode::SummaryConflict,
            Error::BindingConflict(_) => ErrorCode::BindingConflict,
            Error::StaleWriter(_) => ErrorCode::StaleWriter,
            Error::UnknownEpoch(_) => ErrorCode::UnknownEpoch,
            Error::EpochRequired(_) => ErrorCode::EpochRequired,
            Error::Conflict(_) => ErrorCode::Conflict,
            Error::Erased(_) => ErrorCode::TaskErased,
            Error::TooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::HeadersTooLarge(_) => ErrorCode::HeadersTooLarge,
            Error::Overloaded | Error::TooManyReaders(_) => ErrorCode::Overloaded,
            Error::Draining => ErrorCode::Draining,
            Error::BackendUnavailable(_) => ErrorCode::BackendUnavailable,
            Error::ChecksumMismatch(_) => ErrorCode::ChecksumMismatch,
            Error::IntegrityViolation { .. } => ErrorCode::IntegrityViolation,
            Error::Timeout => ErrorCode::Timeout,
            Error::Internal { .. } | Error::Backend(_) => ErrorCode::Internal,
        }
    }
}

impl From<Invalid> for Error {
    fn from(err: Invalid) -> Self {
        Error::Invalid(err.0)
    }
}

impl From<PortError> for Error {
    fn from(err: PortError) -> Self {
        match err {
            err @ PortError::Unavailable { .. } => Error::BackendUnavailable(err),
            err @ PortError::ChecksumMismatch { .. } => Error::ChecksumMismatch(err),
            PortError::NotFound(msg) => Error::NotFound(msg),
            PortError::AlreadyExists(msg) | PortError::PreconditionFailed(msg) => {
                Error::Conflict(msg)
            }
            err @ PortError::Other { .. } => Error::Backend(err),
        }
    }
}

/// The snake_case code sent as `error.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: bad input.
    InvalidRequest,
    /// 400: a stream offset this gateway did not produce.
    InvalidOffset,
    /// 410: a stream offset of a deleted incarnation.
    OffsetGone,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 401: missing or bad credentials.
    Unauthorized,
    /// 403: credentials lack the scope.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 404: no route matches the path (a client misconfiguration).
    NoSuchRoute,
    /// 405: the route exists for other methods.
    MethodNotAllowed,
    /// 409: idempotency key reused with a different request.
    IdempotencyConflict,
    /// 409: a summary compare-and-set lost.
    SummaryConflict,
    /// 409: the task is bound to other values.
    BindingConflict,
    /// 409: a newer writer epoch exists.
    StaleWriter,
    /// 409: the writer epoch was never issued.
    UnknownEpoch,
    /// 409: the task has a lease and the write sent no epoch.
    EpochRequired,
    /// 409: another state conflict.
    Conflict,
    /// 409: the task was erased while the write was in flight.
    TaskErased,
    /// 413: body over the limit.
    PayloadTooLarge,
    /// 431: request target and headers over the limit.
    HeadersTooLarge,
    /// 503: too many requests in flight.
    Overloaded,
    /// 503: shutting down.
    Draining,
    /// 503: storage unreachable.
    BackendUnavailable,
    /// 502: stored data failed its checksum.
    ChecksumMismatch,
    /// 502: stored parts break their hash chain.
    IntegrityViolation,
    /// 504: the request took too long.
    Timeout,
    /// 500: a bug.
    Internal,
}

impl ErrorCode {
    /// The HTTP status for this code.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ErrorCode::InvalidRequest | ErrorCode::InvalidOffset => S::BAD_REQUEST,
            ErrorCode::OffsetGone => S::GONE,
            ErrorCode::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unauthorized => S::UNAUTHORIZED,
            ErrorCode::Forbidden => S::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::NoSuchRoute => S::NOT_FOUND,
            ErrorCode::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            ErrorCode::IdempotencyConflict
            | ErrorCode::SummaryConflict
            | ErrorCode::BindingConflict
            | ErrorCode::StaleWriter
            | ErrorCode::UnknownEpoch
            | ErrorCode::EpochRequired
            | ErrorCode::Conflict
            | ErrorCode::TaskErased => S::CONFLICT,
            ErrorCode::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::Draining | ErrorCode::BackendUnavailable | ErrorCode::Overloaded => {
                S::SERVICE_UNAVAILABLE
            }
            ErrorCode::ChecksumMismatch | ErrorCode::IntegrityViolation => S::BAD_GATEWAY,
            ErrorCode::Timeout => S::GATEWAY_TIMEOUT,
            ErrorCode::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the same request may succeed if sent again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Draining
                | ErrorCode::BackendUnavailable
                | ErrorCode::Overloaded
                | ErrorCode::Timeout
                | ErrorCode::Conflict
        )
    }

    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidOffset => "invalid_offset",
            ErrorCode::OffsetGone => "offset_gone",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NoSuchRoute => "no_such_route",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::IdempotencyConflict => "idempotency_conflict",
            ErrorCode::SummaryConflict => "summary_conflict",
            ErrorCode::BindingConflict => "binding_conflict",
            ErrorCode::StaleWriter => "stale_writer",
            ErrorCode::UnknownEpoch => "unknown_epoch",
            ErrorCode::EpochRequired => "epoch_required",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TaskErased => "task_erased",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Draining => "draining",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::IntegrityViolation => "integrity_violation",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
