//! The HTTP layer: thin handlers that validate into domain types, make one
//! engine call and shape the response. Nothing here talks to a backend.
//!
//! `mod.rs` merges the per-resource routers and adds the layers: request id,
//! the request's span and log line ([`observe`]), error envelope, the drain
//! ([`drain`]), in-flight limit, header limit, authentication
//! ([`crate::auth::require`]), timeout and body limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

use crate::auth::{self, Guard};
use crate::engine::Engine;
use crate::error::Error;

pub mod admin;
pub mod bindings;
pub mod drain;
pub mod entries;
pub mod error;
pub mod extract;
pub mod failures;
pub mod health;
pub mod limits;
pub mod observe;
pub mod openapi;
pub mod paths;
pub mod sessions;
pub mod stream;

/// The success envelope.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DataEnvelope<T> {
    /// The result.
    pub data: T,
}

/// Whether the gateway takes traffic; cleared when draining starts.
#[derive(Clone, Debug)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    /// Cancelled when draining starts, for requests that wait (live reads).
    draining: tokio_util::sync::CancellationToken,
}

impl Readiness {
    /// A ready flag (also reported as `tg.ready`).
    pub fn new() -> Self {
        crate::metrics::METRICS.ready.store(1, Ordering::Relaxed);
        Self {
            ready: Arc::new(AtomicBool::new(true)),
            draining: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// True until [`Readiness::set_draining`].
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Reports not-ready from now on.
    pub fn set_draining(&self) {
        crate::metrics::METRICS.ready.store(0, Ordering::Relaxed);
        self.ready.store(false, Ordering::SeqCst);
        self.draining.cancel();
    }

    /// Resolves once draining has started.
    pub fn drain_started(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.draining.clone().cancelled_owned()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The transcript engine.
    pub engine: Engine,
    /// Cleared while draining.
    pub readiness: Readiness,
    /// In-flight appends, each its own task; shutdown waits for them.
    pub appends: tokio_util::task::TaskTracker,
    /// The requests being served, for the drain's report.
    pub in_flight: drain::InFlight,
}

/// Limits and checks the HTTP layer enforces before any handler runs.
#[derive(Clone, Debug)]
pub struct HttpLimits {
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Time until a response must start.
    pub request_timeout: Duration,
    /// Largest request target plus headers.
    pub header_limit_bytes: usize,
    /// Most requests served at once.
    pub max_in_flight: usize,
    /// Bounds on live stream reads.
    pub live: stream::LiveLimits,
    /// Who may call what.
    pub guard: Guard,
}

async fn no_route() -> Error {
    Error::NoSuchRoute("no such route".into())
}

async fn wrong_method() -> impl IntoResponse {
    Error::MethodNotAllowed("method not allowed on this route".into())
}

/// The whole application: every route, with its layers.
pub fn router(state: AppState, limits: &HttpLimits) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let docs = utoipa_swagger_ui::SwaggerUi::new(paths::DOCS)
        .url(paths::OPENAPI, openapi::ApiDoc::openapi());
    let gate = drain::DrainGate {
        readiness: state.readiness.clone(),
        in_flight: state.in_flight.clone(),
    };
    Router::new()
        .merge(admin::router())
        .merge(bindings::router())
        .merge(entries::router())
        .merge(failures::router())
        .merge(sessions::router())
        .merge(stream::router(&limits.live))
        .merge(health::router())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(state)
        .merge(docs)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(axum::middleware::from_fn(observe::observe))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(axum::middleware::from_fn(error::envelope))
                .layer(axum::middleware::from_fn_with_state(gate, drain::drain))
                .layer(axum::middleware::from_fn_with_state(
                    Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight)),
                    limits::in_flight,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    limits.header_limit_bytes,
                    limits::header_limit,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    limits.guard.clone(),
                    auth::require,
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    limits.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(limits.body_limit_bytes)),
        )
}
