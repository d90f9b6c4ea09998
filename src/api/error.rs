//! The error envelope `{"error":{"code","message","request_id"}}` and the
//! only `IntoResponse` for [`Error`].
//!
//! A handler's error becomes a bare response carrying an [`ErrorInfo`]
//! extension; the [`envelope`] middleware then writes the body with the
//! request id, and does the same for the framework's own refusals (unknown
//! route, wrong method, oversized body), so every error looks alike.
//! Server errors are logged here once, with the real cause; clients get a
//! generic message.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{chain as error_chain, Error, ErrorCode};

/// What the envelope middleware needs to render an error.
#[derive(Clone, Debug)]
pub struct ErrorInfo {
    /// The wire code.
    pub code: ErrorCode,
    /// The client-facing message.
    pub message: String,
    /// The full cause, logged for server errors.
    pub detail: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let code = self.code();
        let detail = error_chain(&self);
        // A server error tells the client what it can do; what went wrong
        // (bucket, endpoint, the SDK's own text) goes to the log line that
        // carries the same request id.
        let message = match code {
            ErrorCode::Internal => "internal error".to_string(),
            ErrorCode::BackendUnavailable => {
                "a storage backend is unavailable; retry shortly (the gateway's log has the \
                 details under this request id)"
                    .to_string()
            }
            ErrorCode::IntegrityViolation => {
                "the stored transcript failed its integrity check (a part was replaced, \
                 removed or truncated) and is not served (the gateway's log has the details \
                 under this request id)"
                    .to_string()
            }
            ErrorCode::ChecksumMismatch => {
                "stored data failed its checksum and is not served (the gateway's log has \
                 the details under this request id)"
                    .to_string()
            }
            _ => detail.clone(),
        };
        let mut response = code.status().into_response();
        match code {
            ErrorCode::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"transcript-gateway\""),
                );
            }
            // Another instance (or this one, in a second) will take it.
            ErrorCode::Overloaded | ErrorCode::Draining => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorInfo {
            code,
            message,
            detail,
        });
        response
    }
}

#[derive(Serialize, utoipa::ToSchema)]
/// The failure envelope.
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

#[derive(Serialize, utoipa::ToSchema)]
/// One error.
pub struct ErrorBody {
    /// A stable snake_case code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The request's `x-request-id`.
    pub request_id: String,
}

fn framework_error(status: StatusCode) -> (ErrorCode, &'static str) {
    match status {
        StatusCode::NOT_FOUND => (ErrorCode::NoSuchRoute, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            ErrorCode::PayloadTooLarge,
            "request body is larger than the configured limit",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            (ErrorCode::Timeout, "the request timed out")
        }
        StatusCode::SERVICE_UNAVAILABLE => (ErrorCode::Draining, "the gateway is not ready"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            ErrorCode::HeadersTooLarge,
            "request headers are larger than the configured limit",
        ),
        s if s.is_client_error() => (ErrorCode::InvalidRequest, "bad request"),
        _ => (ErrorCode::Internal, "internal error"),
    }
}

/// Middleware: renders every error response as the envelope.
pub async fn envelope(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let info = match response.extensions_mut().remove::<ErrorInfo>() {
        Some(info) => info,
        None => {
            let (code, message) = framework_error(status);
            ErrorInfo {
                code,
                message: message.to_string(),
                detail: message.to_string(),
            }
        }
    };
    if status.is_server_error() {
        tracing::error!(code = %info.code, error = %info.detail, "request failed");
    }
    let body = ErrorEnvelope {
        error: ErrorBody {
            code: info.code,
            message: info.message,
            request_id,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType(text),
            _ => Error::Invalid(text),
        }
    }
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Self {
        Error::Invalid(rejection.body_text())
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Self {
        Error::Invalid(rejection.body_text())
    }
}
