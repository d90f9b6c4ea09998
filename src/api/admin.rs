//! Operator endpoints under `/admin/v1`: on-demand compaction.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::extract::TaskPath;
use super::{paths, AppState, DataEnvelope};
use crate::engine::CompactionReport;
use crate::error::Error;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route(paths::ADMIN_COMPACT, post(compact_task))
}

/// What an on-demand compaction did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CompactView {
    /// One report per transcript that gained a snapshot; transcripts with no
    /// parts since their last snapshot are left alone.
    pub compacted: Vec<CompactionReport>,
}

/// Compacts every transcript of a task now, whatever the threshold.
#[utoipa::path(
    post,
    path = paths::ADMIN_COMPACT,
    tag = "admin",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "What was compacted", body = DataEnvelope<CompactView>),
        (status = 400, description = "Invalid task id", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn compact_task(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
) -> Result<Json<DataEnvelope<CompactView>>, Error> {
    let compacted = state.engine.compact_task(&task).await?;
    Ok(Json(DataEnvelope {
        data: CompactView { compacted },
    }))
}
