//! `/healthz`, `/readyz` and `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{paths, AppState, DataEnvelope};
use crate::error::Error;
use crate::metrics::METRICS;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// A health answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = paths::HEALTHZ, tag = "operations",
    responses((status = 200, description = "Alive", body = DataEnvelope<Status>)))]
pub async fn healthz() -> Json<DataEnvelope<Status>> {
    Json(DataEnvelope {
        data: Status { status: "ok" },
    })
}

/// The gateway takes traffic: not draining, and both backends answer.
#[utoipa::path(get, path = paths::READYZ, tag = "operations",
    responses(
        (status = 200, description = "Ready", body = DataEnvelope<Status>),
        (status = 503, description = "Draining or a backend is unreachable", body = super::error::ErrorEnvelope),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<DataEnvelope<Status>>, Error> {
    if !state.readiness.is_ready() {
        return Err(Error::Draining);
    }
    let checked = state.engine.check().await;
    let ready = i64::from(checked.is_ok());
    METRICS
        .ready
        .store(ready, std::sync::atomic::Ordering::Relaxed);
    checked?;
    Ok(Json(DataEnvelope {
        data: Status { status: "ready" },
    }))
}

/// Every metric in the Prometheus text format.
#[utoipa::path(get, path = paths::METRICS, tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        METRICS.render(),
    )
}
