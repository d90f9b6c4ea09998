//! Our extractors: axum's, with every rejection turned into [`Error`] and
//! every path segment validated into a domain type before a handler runs.

use axum::extract::{FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;
use serde::Deserialize;

use crate::domain::{ProjectKey, SessionId, SessionRef, Subpath, TaskId};
use crate::error::Error;

/// `axum::Json` whose rejections are [`Error`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(Error))]
pub struct AppJson<T>(pub T);

/// `axum::extract::Query` whose rejections are [`Error`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(Error))]
pub struct AppQuery<T>(pub T);

#[derive(Deserialize)]
struct RawSessionPath {
    task_id: String,
    project_key: String,
    session_id: String,
}

#[derive(Deserialize)]
struct RawProjectPath {
    task_id: String,
    project_key: String,
}

#[derive(Deserialize)]
struct RawTaskPath {
    task_id: String,
}

/// `/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}`, validated.
pub struct SessionPath(pub SessionRef);

/// `/v1/tasks/{task_id}/projects/{project_key}`, validated.
pub struct ProjectPath(pub TaskId, pub ProjectKey);

/// `/v1/tasks/{task_id}`, validated.
pub struct TaskPath(pub TaskId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(raw) = Path::<RawSessionPath>::from_request_parts(parts, state).await?;
        Ok(SessionPath(SessionRef {
            task_id: TaskId::new(raw.task_id)?,
            project_key: ProjectKey::new(raw.project_key)?,
            session_id: SessionId::new(raw.session_id)?,
        }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ProjectPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(raw) = Path::<RawProjectPath>::from_request_parts(parts, state).await?;
        Ok(ProjectPath(
            TaskId::new(raw.task_id)?,
            ProjectKey::new(raw.project_key)?,
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TaskPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(raw) = Path::<RawTaskPath>::from_request_parts(parts, state).await?;
        Ok(TaskPath(TaskId::new(raw.task_id)?))
    }
}

/// A header's value as text; `name` is as documented (`Idempotency-Key`),
/// looked up case-insensitively.
pub fn header_str<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, Error> {
    parts
        .headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::invalid(format!("{name} must be visible ASCII")))
        })
        .transpose()
}

/// The request's id (`x-request-id`, set for every request).
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(RequestId(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

/// `X-Writer-Epoch`: the epoch of the writer's lease, if it sent one. Every
/// write of a task that has a lease must carry the current one.
pub struct WriterEpoch(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for WriterEpoch {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let epoch = header_str(parts, "X-Writer-Epoch")?
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| Error::invalid("X-Writer-Epoch must be a non-negative integer"))
            })
            .transpose()?;
        Ok(WriterEpoch(epoch))
    }
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// `Idempotency-Key`: 1–255 visible ASCII characters, if sent.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(value) = header_str(parts, "Idempotency-Key")? else {
            return Ok(IdempotencyKey(None));
        };
        if value.is_empty() || value.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(Error::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
            )));
        }
        Ok(IdempotencyKey(Some(value.to_string())))
    }
}

/// `?subpath=`: present means a subkey; present but empty is an error.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubpathQuery {
    /// A subkey below the session, such as `subagents/agent-1`.
    pub subpath: Option<String>,
}

impl SubpathQuery {
    /// The validated subpath, if any.
    pub fn subpath(&self) -> Result<Option<Subpath>, Error> {
        Ok(self.subpath.clone().map(Subpath::new).transpose()?)
    }
}

/// Default page size of every list.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size of every list.
pub const MAX_LIMIT: usize = 1000;

/// `?limit=&next_token=` of every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// The `next_token` of the previous page.
    pub next_token: Option<String>,
}

impl PageQuery {
    /// The validated page size.
    pub fn limit(&self) -> Result<usize, Error> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(Error::invalid(format!(
                "limit must be 1 to {MAX_LIMIT}, not {n}"
            ))),
        }
    }

    /// The decoded token: the last item of the previous page.
    pub fn after(&self) -> Result<Option<String>, Error> {
        self.next_token.as_deref().map(decode_token).transpose()
    }
}

/// Encodes the last item of a page as an opaque token.
pub fn encode_token(last: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn decode_token(token: &str) -> Result<String, Error> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::invalid("next_token is not a token this gateway issued"))
}
