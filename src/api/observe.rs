//! Middleware: every request gets a server span and one log line.
//!
//! The span is named `{method} {route}` (the route template, never the raw
//! path), kind SERVER, with the current HTTP semantic-convention attributes;
//! its parent comes from an incoming `traceparent`/`tracestate` (W3C trace
//! context), so an agent's trace continues through the gateway, and the
//! response names the span in `traceresponse` when traces are exported.
//! The log line carries `request_id`, `method`, `route`, `status`,
//! `latency_ms`, `task_id` and `bytes` (the request body's length), never a
//! body, summary or token.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tracing::field::Empty;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::metrics::METRICS;

/// The response header naming the server span (W3C Trace Context Level 2).
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");

/// Reads propagation headers from a request.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Counts a request in flight until dropped (also when the client goes away).
struct InFlight;

impl InFlight {
    fn start() -> Self {
        METRICS.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        METRICS.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The value of the `{name}` segment of `route` in `path`, if any.
fn path_param<'a>(route: &str, path: &'a str, name: &str) -> Option<&'a str> {
    route
        .split('/')
        .zip(path.split('/'))
        .find(|(template, _)| *template == name)
        .map(|(_, value)| value)
}

/// `traceresponse` for `span`, when it is exported.
fn traceresponse(span: &tracing::Span) -> Option<HeaderValue> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    let value = format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    );
    HeaderValue::from_str(&value).ok()
}

/// The middleware.
pub async fn observe(request: Request, next: Next) -> Response {
    let _counted = InFlight::start();
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let request_id = header("x-request-id").unwrap_or_default().to_owned();
    let bytes: u64 = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Percent-decoding is not needed: task ids are plain (see `TaskId`).
    let task_id = route
        .as_deref()
        .and_then(|r| path_param(r, request.uri().path(), "{task_id}"))
        .map(str::to_owned);
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.to_string(),
    };
    let span = tracing::info_span!(
        "request",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = route.as_deref(),
        http.response.status_code = Empty,
        request_id = %request_id,
        task_id = task_id.as_deref(),
    );
    {
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Headers(request.headers()))
        });
        // Only fails when traces are not exported: then there is nothing to join.
        let _ = span.set_parent(parent);
    }

    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    if let Some(value) = traceresponse(&span) {
        response.headers_mut().insert(TRACERESPONSE, value);
    }
    let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
    let route = route.as_deref().unwrap_or("");
    let task_id = task_id.as_deref().unwrap_or("");
    let status = status.as_u16();
    // One line per request, outside the span: the span has these already.
    if status >= 500 {
        tracing::warn!(parent: None, request_id, %method, route, status, latency_ms, task_id, bytes, "request");
    } else {
        tracing::info!(parent: None, request_id, %method, route, status, latency_ms, task_id, bytes, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_parameter_is_read_where_the_route_names_it() {
        let route = "/v1/tasks/{task_id}/sessions/{project_key}/{session_id}/entries";
        let path = "/v1/tasks/t-1/sessions/p/s/entries";
        assert_eq!(path_param(route, path, "{task_id}"), Some("t-1"));
        assert_eq!(path_param(route, path, "{session_id}"), Some("s"));
        assert_eq!(path_param("/healthz", "/healthz", "{task_id}"), None);
    }
}
