//! Operator endpoints under `/admin/v1`: tasks newest activity first, one
//! task in detail, fleet totals, on-demand compaction, a task's export and
//! erasure, and the fleet's recent mirror failures.

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

use super::bindings::BindingView;
use super::extract::{encode_token, AppQuery, PageQuery, TaskPath};
use super::sessions::PagedEnvelope;
use super::{paths, AppState, DataEnvelope};
use crate::domain::{MirrorFailure, SessionKey, TaskId};
use crate::engine::{
    CompactionReport, ErasureReceipt, FleetStats, SessionRecord, TaskCursor, TaskRow,
};
use crate::error::Error;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task, erase_task))
        .routes(routes!(stats))
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

/// One task in the listing.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskSummaryView {
    /// The task.
    pub task_id: String,
    /// Main transcripts.
    pub sessions: u64,
    /// Subagent transcripts (subkeys).
    pub subkeys: u64,
    /// Parts appended, over every transcript.
    pub parts: u64,
    /// Bytes appended, over every transcript.
    pub bytes: u64,
    /// Entries appended, over every transcript.
    pub entries: u64,
    /// The newest transcript's last write, epoch ms; `null` when none.
    pub last_append_ms: Option<u64>,
    /// When the task last changed (the listing's order), epoch ms.
    pub active_ms: u64,
    /// Its binding, if bound.
    pub binding: Option<BindingView>,
    /// Its writer epoch; 0 before any lease.
    pub epoch: u64,
    /// Mirror failures kept for it, ever (drifts included).
    pub failures: u64,
    /// Whether an append's project key ever drifted from the binding's.
    pub drift: bool,
}

impl From<TaskRow> for TaskSummaryView {
    fn from(row: TaskRow) -> Self {
        let a = row.activity.unwrap_or_default();
        Self {
            task_id: row.task_id.to_string(),
            sessions: a.sessions,
            subkeys: a.subkeys,
            parts: a.parts,
            bytes: a.bytes,
            entries: a.entries,
            last_append_ms: (a.last_append_ms > 0).then_some(a.last_append_ms),
            active_ms: a.active_ms,
            binding: row.binding.map(BindingView::from),
            epoch: row.epoch,
            failures: row.failures,
            drift: row.drift,
        }
    }
}

/// A page of tasks.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TasksView {
    /// Newest activity first.
    pub tasks: Vec<TaskSummaryView>,
}

/// `next_token` of a task listing: the last task's activity time and id.
fn task_token(row: &TaskRow) -> Option<String> {
    let a = row.activity.as_ref()?;
    Some(encode_token(&format!("{}/{}", a.active_ms, row.task_id)))
}

fn task_cursor(raw: &str) -> Result<TaskCursor, Error> {
    let bad = || Error::invalid("next_token is not a token this gateway issued");
    let (ms, task) = raw.split_once('/').ok_or_else(bad)?;
    Ok(TaskCursor {
        active_ms: ms.parse().map_err(|_| bad())?,
        task_id: TaskId::new(task).map_err(|_| bad())?,
    })
}

/// Tasks newest activity first, with their totals (refreshed about a second
/// after each change), binding, writer epoch and mirror-failure counters.
/// Needs an admin token for every task (`task_id` `*`).
#[utoipa::path(
    get,
    path = paths::ADMIN_TASKS,
    tag = "admin",
    params(PageQuery),
    responses(
        (status = 200, description = "One page, newest activity first", body = PagedEnvelope<TasksView>),
        (status = 400, description = "Invalid limit or token", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    AppQuery(paging): AppQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<TasksView>>, Error> {
    let limit = paging.limit()?;
    let after = paging.after()?.as_deref().map(task_cursor).transpose()?;
    let page = state.engine.list_tasks(after.as_ref(), limit).await?;
    let next_token = page
        .more
        .then(|| page.items.last().and_then(task_token))
        .flatten();
    Ok(Json(PagedEnvelope {
        data: TasksView {
            tasks: page.items.into_iter().map(TaskSummaryView::from).collect(),
        },
        next_token,
    }))
}

/// One transcript of a task.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TranscriptView {
    /// Its project key.
    pub project_key: String,
    /// Its session.
    pub session_id: String,
    /// The subkey; absent for the main transcript.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    /// The highest sequence number written.
    pub head: u64,
    /// Parts appended.
    pub parts: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// Entries appended (0 for appends from before entries were counted).
    pub entries: u64,
    /// The newest snapshot covers parts up to this one (0: none).
    pub compacted_through: u64,
    /// Last write, epoch ms.
    pub mtime: u64,
    /// The current incarnation (one more after each delete).
    pub incarnation: u64,
}

impl TranscriptView {
    fn new(key: &SessionKey, record: &SessionRecord) -> Self {
        Self {
            project_key: key.session.project_key.to_string(),
            session_id: key.session.session_id.to_string(),
            subpath: key.subpath.as_ref().map(|s| s.to_string()),
            head: record.head.0,
            parts: record.parts,
            bytes: record.bytes,
            entries: record.entries,
            compacted_through: record.compacted_through.0,
            mtime: record.mtime,
            incarnation: record.incarnation,
        }
    }
}

/// One task in detail.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskDetailView {
    /// The task.
    pub task_id: String,
    /// Its binding, if bound.
    pub binding: Option<BindingView>,
    /// Its writer epoch; 0 before any lease.
    pub epoch: u64,
    /// Every transcript, main sessions and subkeys, ascending by key
    /// (deleted ones, which hold no parts, left out).
    pub transcripts: Vec<TranscriptView>,
    /// Its recent mirror failures, newest first (at most 100).
    pub failures: Vec<MirrorFailure>,
    /// Its recent project-key drifts, newest first (at most 100).
    pub drift: Vec<MirrorFailure>,
}

/// One task: binding, writer epoch, every transcript with its parts, bytes,
/// entries, `compacted_through` and mtime, and its recent failures and drifts.
#[utoipa::path(
    get,
    path = paths::ADMIN_TASK,
    tag = "admin",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = DataEnvelope<TaskDetailView>),
        (status = 400, description = "Invalid task id", body = super::error::ErrorEnvelope),
        (status = 404, description = "The catalog knows nothing of the task", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn get_task(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
) -> Result<Json<DataEnvelope<TaskDetailView>>, Error> {
    let Some(detail) = state.engine.task_detail(&task).await? else {
        return Err(Error::NotFound(format!("task {task} is not known")));
    };
    let row = detail.row;
    Ok(Json(DataEnvelope {
        data: TaskDetailView {
            task_id: task.to_string(),
            binding: row
                .as_ref()
                .and_then(|r| r.binding.clone())
                .map(BindingView::from),
            epoch: row.as_ref().map_or(0, |r| r.epoch),
            transcripts: detail
                .transcripts
                .iter()
                .filter(|(_, r)| r.parts > 0)
                .map(|(k, r)| TranscriptView::new(k, r))
                .collect(),
            failures: detail.failures,
            drift: detail.drift,
        },
    }))
}

/// Erases a task for compliance: every part, snapshot and seal under its
/// directory, every catalog row (transcript records, idempotency records,
/// binding, epoch, totals, kept failures), then answers with a receipt and
/// writes an audit log line. An append racing the erasure lands before it
/// (and is erased) or fails with `task_erased`. Erasing an erased (or
/// unknown) task answers 200 with zero counts.
#[utoipa::path(
    delete,
    path = paths::ADMIN_TASK,
    tag = "admin",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "What was removed", body = DataEnvelope<ErasureReceipt>),
        (status = 400, description = "Invalid task id", body = super::error::ErrorEnvelope),
        (status = 409, description = "Appends kept arriving through every round; run it again", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn erase_task(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
) -> Result<Json<DataEnvelope<ErasureReceipt>>, Error> {
    let receipt = state.engine.erase_task(&task).await?;
    Ok(Json(DataEnvelope { data: receipt }))
}

/// Fleet totals: tasks, transcripts, parts, bytes and entries (summed over
/// the task listing), appends and mirror failures in the last hour. Needs
/// an admin token for every task (`task_id` `*`).
#[utoipa::path(
    get,
    path = paths::ADMIN_STATS,
    tag = "admin",
    responses(
        (status = 200, description = "Fleet totals", body = DataEnvelope<FleetStats>),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn stats(State(state): State<AppState>) -> Result<Json<DataEnvelope<FleetStats>>, Error> {
    Ok(Json(DataEnvelope {
        data: state.engine.fleet_stats().await?,
    }))
}
