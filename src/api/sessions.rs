//! Sessions of a project: list (with summaries), delete, subkeys, summary.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{
    encode_token, AppJson, AppQuery, PageQuery, ProjectPath, SessionPath, SubpathQuery, WriterEpoch,
};
use super::{paths, AppState, DataEnvelope};
use crate::domain::{SessionId, SessionKey, Subpath};
use crate::error::Error;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(delete_session))
        .routes(routes!(list_subkeys))
        .routes(routes!(get_summary, put_summary))
}

/// A page of a list, with the token of the next page at the top level.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PagedEnvelope<T> {
    /// The page.
    pub data: T,
    /// Pass as `next_token` for the next page; `null` on the last page.
    pub next_token: Option<String>,
}

/// `?summaries=true` plus paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSessionsQuery {
    /// Include each session's stored summary as `data`.
    #[serde(default)]
    pub summaries: bool,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// The `next_token` of the previous page.
    pub next_token: Option<String>,
}

/// One main transcript.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionItem {
    /// The Claude session id.
    pub session_id: String,
    /// Last write, epoch ms; with `?summaries=true`, when the summary was stored.
    pub mtime: u64,
    /// The stored summary (only with `?summaries=true`; `null` when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Option<Box<RawValue>>>,
}

/// `data` of a session list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionsView {
    /// Main transcripts, ascending by session id.
    pub sessions: Vec<SessionItem>,
}

/// `data` of a subkey list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubkeysView {
    /// Subpaths, ascending.
    pub subkeys: Vec<String>,
}

/// A session's summary.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SummaryData {
    /// The version to send as `expected_version` with the next update.
    pub version: u64,
    /// The stored summary, verbatim.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// When the summary was stored (its storage write time), epoch ms, on
    /// the clock of the session's `mtime`; older than it means the summary
    /// has not folded the newest entries yet.
    pub mtime: u64,
}

/// A compare-and-set summary write.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"data": {"title": "List the files", "turns": 4}, "expected_version": 3}))]
pub struct PutSummaryBody {
    /// The new summary, stored verbatim.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// The version this summary was folded on.
    pub expected_version: u64,
}

/// The new summary version.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SummaryVersion {
    /// The version now stored.
    pub version: u64,
}

/// Lists a project's main transcripts.
#[utoipa::path(
    get,
    path = paths::SESSIONS,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ListSessionsQuery,
    ),
    responses(
        (status = 200, description = "One page", body = PagedEnvelope<SessionsView>),
        (status = 400, description = "Invalid input", body = super::error::ErrorEnvelope),
    )
)]
pub async fn list_sessions(
    State(state): State<AppState>,
    ProjectPath(task, project): ProjectPath,
    AppQuery(query): AppQuery<ListSessionsQuery>,
) -> Result<Json<PagedEnvelope<SessionsView>>, Error> {
    let paging = PageQuery {
        limit: query.limit,
        next_token: query.next_token,
    };
    let limit = paging.limit()?;
    let after = paging.after()?.map(SessionId::new).transpose()?;
    let page = state
        .engine
        .list_sessions(&task, &project, after.as_ref(), limit)
        .await?;
    let next_token = page
        .more
        .then(|| {
            page.items
                .last()
                .map(|s| encode_token(s.session_id.as_str()))
        })
        .flatten();
    let sessions = page
        .items
        .into_iter()
        .map(|s| SessionItem {
            session_id: s.session_id.to_string(),
            // With summaries, each item is the SDK's SessionSummaryEntry: its
            // mtime is the summary's own (older than the session's while the
            // newest entries are not folded in yet).
            mtime: if query.summaries && s.summary.is_some() {
                s.summary_mtime
            } else {
                s.mtime
            },
            data: query.summaries.then_some(s.summary),
        })
        .collect();
    Ok(Json(PagedEnvelope {
        data: SessionsView { sessions },
        next_token,
    }))
}

/// Deletes a session with every subkey and its summary, or one subkey.
#[utoipa::path(
    delete,
    path = paths::SESSION,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
        SubpathQuery,
    ),
    responses(
        (status = 204, description = "Deleted (or was absent)"),
        (status = 400, description = "Invalid input", body = super::error::ErrorEnvelope),
    )
)]
pub async fn delete_session(
    State(state): State<AppState>,
    SessionPath(session): SessionPath,
    AppQuery(query): AppQuery<SubpathQuery>,
    WriterEpoch(writer_epoch): WriterEpoch,
) -> Result<StatusCode, Error> {
    let key = SessionKey {
        session,
        subpath: query.subpath()?,
    };
    state.engine.delete(&key, writer_epoch).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a session's subkeys.
#[utoipa::path(
    get,
    path = paths::SUBKEYS,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "One page", body = PagedEnvelope<SubkeysView>),
        (status = 400, description = "Invalid input", body = super::error::ErrorEnvelope),
    )
)]
pub async fn list_subkeys(
    State(state): State<AppState>,
    SessionPath(session): SessionPath,
    AppQuery(paging): AppQuery<PageQuery>,
) -> Result<Json<PagedEnvelope<SubkeysView>>, Error> {
    let limit = paging.limit()?;
    let after = paging.after()?.map(Subpath::new).transpose()?;
    let page = state
        .engine
        .list_subkeys(&session, after.as_ref(), limit)
        .await?;
    let next_token = page
        .more
        .then(|| page.items.last().map(|s| encode_token(s.as_str())))
        .flatten();
    Ok(Json(PagedEnvelope {
        data: SubkeysView {
            subkeys: page.items.into_iter().map(|s| s.to_string()).collect(),
        },
        next_token,
    }))
}

/// Reads a session's summary and its version.
#[utoipa::path(
    get,
    path = paths::SUMMARY,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
    ),
    responses(
        (status = 200, description = "The summary", body = DataEnvelope<SummaryData>),
        (status = 404, description = "`not_found`: the session has no summary (never written, or deleted); update it with `expected_version` 0", body = super::error::ErrorEnvelope),
    )
)]
pub async fn get_summary(
    State(state): State<AppState>,
    SessionPath(session): SessionPath,
) -> Result<Json<DataEnvelope<SummaryData>>, Error> {
    let view = state.engine.summary(&session).await?.ok_or_else(|| {
        Error::not_found(format!(
            "session {}/{}/{} has no summary",
            session.task_id, session.project_key, session.session_id
        ))
    })?;
    Ok(Json(DataEnvelope {
        data: SummaryData {
            version: view.version,
            data: view.data,
            mtime: view.mtime,
        },
    }))
}

/// Stores a summary if its version is still `expected_version`.
#[utoipa::path(
    put,
    path = paths::SUMMARY,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
    ),
    request_body = PutSummaryBody,
    responses(
        (status = 200, description = "Stored", body = DataEnvelope<SummaryVersion>),
        (status = 409, description = "`summary_conflict`: the version moved on; re-read and fold again", body = super::error::ErrorEnvelope),
    )
)]
pub async fn put_summary(
    State(state): State<AppState>,
    SessionPath(session): SessionPath,
    WriterEpoch(writer_epoch): WriterEpoch,
    AppJson(body): AppJson<PutSummaryBody>,
) -> Result<Json<DataEnvelope<SummaryVersion>>, Error> {
    let version = state
        .engine
        .put_summary(&session, body.data, body.expected_version, writer_epoch)
        .await?;
    Ok(Json(DataEnvelope {
        data: SummaryVersion { version },
    }))
}
