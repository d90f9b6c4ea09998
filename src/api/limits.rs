//! Refusals before any work: too many requests in flight, headers too large.
//! Each answers in the error envelope like every other refusal.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::Error;

/// Middleware: at most the semaphore's permits run at once; the rest are
/// refused at once with 503 `overloaded` and `Retry-After` rather than
/// queued, so a burst cannot grow memory without bound.
pub async fn in_flight(
    State(permits): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match permits.try_acquire_owned() {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(_) => Error::Overloaded.into_response(),
    }
}

/// The size of a request's head as sent: the target and every header line.
fn head_size(request: &Request) -> usize {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let headers: usize = request
        .headers()
        .iter()
        // "name: value\r\n"
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    target + headers
}

/// Middleware: refuses a request whose target and headers exceed the limit
/// with 431 `headers_too_large`.
pub async fn header_limit(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let size = head_size(&request);
    if size > limit {
        return Error::HeadersTooLarge(format!(
            "request target and headers are {size} bytes; at most {limit} are accepted"
        ))
        .into_response();
    }
    next.run(request).await
}
