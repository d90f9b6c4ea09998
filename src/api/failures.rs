//! `POST /v1/tasks/{task_id}/mirror-failures`: a client reports a mirror
//! failure the gateway never saw (a network partition, a worker-side
//! timeout: the SDK's `MirrorErrorMessage`). Counted, logged and kept with
//! the gateway's own failures for the admin API.
//!
//! Not fenced by the writer lease: a report is not a write to the
//! transcript, and a report from a worker presumed dead is still worth
//! keeping.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AppJson, RequestId, TaskPath};
use super::{paths, AppState, DataEnvelope};
use crate::domain::{ProjectKey, SessionId, Subpath};
use crate::engine::ClientReport;
use crate::error::Error;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// A failure a client saw.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "project_key": "-workspace-01JD8X3Q6W7N5K2M4P9R0T1V3Y",
    "session_id": "8f14e45f-ceea-467f-a2b1-5b1f1c7e9d02",
    "error": "append failed after 3 attempts: connection reset",
    "occurred_ms": 1764979200000u64
}))]
pub struct FailureReport {
    /// The transcript's project key, when the failure was on one.
    pub project_key: Option<String>,
    /// The transcript's session, when the failure was on one.
    pub session_id: Option<String>,
    /// The subkey, when the failure was on one.
    pub subpath: Option<String>,
    /// What the client saw (the SDK's `MirrorErrorMessage.error`): 1 to
    /// 4,096 characters, kept to its first 1,024.
    pub error: String,
    /// When it happened, epoch ms (default: when the report arrives); at
    /// most a day in the future.
    pub occurred_ms: Option<u64>,
}

/// The kept report.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Reported {
    /// The failure's id.
    pub id: String,
}

/// Keeps a mirror failure a client reports.
#[utoipa::path(
    post,
    path = paths::MIRROR_FAILURES,
    tag = "transcripts",
    params(("task_id" = String, Path, description = "Task id")),
    request_body = FailureReport,
    responses(
        (status = 201, description = "Kept", body = DataEnvelope<Reported>),
        (status = 400, description = "Invalid input", body = super::error::ErrorEnvelope),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
    RequestId(request_id): RequestId,
    AppJson(body): AppJson<FailureReport>,
) -> Result<(StatusCode, Json<DataEnvelope<Reported>>), Error> {
    let report = ClientReport {
        project_key: body.project_key.map(ProjectKey::new).transpose()?,
        session_id: body.session_id.map(SessionId::new).transpose()?,
        subpath: body.subpath.map(Subpath::new).transpose()?,
        error: body.error,
        occurred_ms: body.occurred_ms,
    };
    let id = state
        .engine
        .report_from_client(&task, report, request_id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DataEnvelope {
            data: Reported { id },
        }),
    ))
}
