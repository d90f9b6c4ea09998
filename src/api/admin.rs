//! Operator endpoints under `/admin/v1`: on-demand compaction, a task's
//! export, and the fleet's recent mirror failures.

use std::io::Write as _;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use flate2::write::GzEncoder;
use futures::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{encode_token, AppQuery, PageQuery, TaskPath};
use super::sessions::PagedEnvelope;
use super::{paths, AppState, DataEnvelope};
use crate::domain::MirrorFailure;
use crate::engine::CompactionReport;
use crate::error::Error;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(compact_task))
        .routes(routes!(export_task))
        .routes(routes!(list_failures))
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

/// Every transcript of a task as one gzip JSON Lines download: one line per
/// entry, `{"key": {"project_key", "session_id", "subpath"?}, "entry": {...}}`,
/// each transcript's entries in order and in one block. Streamed as it is
/// read; a failure part-way ends the download early (the gzip is then
/// incomplete, which any reader reports).
#[utoipa::path(
    get,
    path = paths::ADMIN_EXPORT,
    tag = "admin",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task's transcripts, gzip-compressed JSON Lines",
            content_type = "application/gzip", body = Vec<u8>,
            headers(("content-disposition" = String, description = "attachment; filename=<task_id>.jsonl.gz"))),
        (status = 400, description = "Invalid task id", body = super::error::ErrorEnvelope),
        (status = 404, description = "The task holds no transcript", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn export_task(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
) -> Result<Response, Error> {
    let Some(lines) = state.engine.export_task(&task).await? else {
        return Err(Error::NotFound(format!("task {task} holds no transcript")));
    };
    let disposition = format!("attachment; filename={task}.jsonl.gz");
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(gzip(lines)),
    )
        .into_response())
}

/// `lines` compressed as they come: each chunk is written to the encoder
/// and what it has produced so far is sent, so memory stays at one chunk.
fn gzip(lines: crate::engine::LoadStream) -> BoxStream<'static, Result<Bytes, Error>> {
    let encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = stream::unfold(Some((lines, encoder)), |state| async move {
        let (mut lines, mut encoder) = state?;
        let compress_err = |e: std::io::Error| Error::internal(format!("gzip: {e}"));
        match lines.next().await {
            Some(Ok(chunk)) => {
                let written = encoder.write_all(&chunk).map_err(compress_err);
                let out = Bytes::from(std::mem::take(encoder.get_mut()));
                match written {
                    Ok(()) => Some((Ok(out), Some((lines, encoder)))),
                    Err(e) => Some((Err(e), None)),
                }
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => Some((
                encoder.finish().map(Bytes::from).map_err(compress_err),
                None,
            )),
        }
    });
    Box::pin(compressed.filter(|chunk| {
        let keep = !matches!(chunk, Ok(bytes) if bytes.is_empty());
        async move { keep }
    }))
}

/// A page of mirror failures.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FailuresView {
    /// Newest first: failed appends (5xx), broken chains found on load,
    /// client reports and project-key drifts, each with its task and key.
    pub failures: Vec<MirrorFailure>,
}

/// Recent mirror failures of every task, newest first, paged like every
/// list (the catalog keeps the newest 10,000 on the embedded backend, 7 days
/// on DynamoDB). Needs an admin token for every task (`task_id` `*`).
#[utoipa::path(
    get,
    path = paths::ADMIN_FAILURES,
    tag = "admin",
    params(PageQuery),
    responses(
        (status = 200, description = "One page, newest first", body = PagedEnvelope<FailuresView>),
        (status = 400, description = "Invalid limit or token", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn list_failures(
    State(state): State<AppState>,
    AppQuery(paging): AppQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<FailuresView>>, Error> {
    let limit = paging.limit()?;
    let before = paging.after()?;
    let page = state.engine.failures(before.as_deref(), limit).await?;
    let next_token = page
        .more
        .then(|| page.items.last().map(|f| encode_token(&f.sort_key())))
        .flatten();
    Ok(Json(PagedEnvelope {
        data: FailuresView {
            failures: page.items,
        },
        next_token,
    }))
}
