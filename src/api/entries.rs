//! `POST .../entries` (append) and `GET .../entries` (load).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use super::extract::{
    AppJson, AppQuery, IdempotencyKey, RequestId, SessionPath, SubpathQuery, WriterEpoch,
};
use super::{paths, AppState, DataEnvelope};
use crate::domain::{AppendReceipt, Seq, SessionKey, SummaryUpdate};
use crate::engine::AppendRequest;
use crate::error::Error;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route(paths::ENTRIES, post(append).get(load))
}

/// The append body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendBody {
    /// The batch: a non-empty array of JSON objects, stored in order.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Box<RawValue>>,
    /// An optional compare-and-set summary update, applied with the append.
    pub summary: Option<SummaryBody>,
}

/// A client-folded summary and the version it was folded on.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryBody {
    /// The summary, stored verbatim.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// The version the client folded on; 0 when it had none.
    pub expected_version: u64,
}

/// `?subpath=&after_seq=` of a load.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoadQuery {
    /// A subkey below the session.
    pub subpath: Option<String>,
    /// Only entries of parts after this sequence number (for tailing).
    pub after_seq: Option<u64>,
}

/// Appends a batch as the transcript's next part.
#[utoipa::path(
    post,
    path = paths::ENTRIES,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
        SubpathQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Repeats with the same key return the first answer and write nothing"),
        ("X-Writer-Epoch" = Option<u64>, Header, description = "The writer's lease epoch; older than the task's current epoch is refused"),
    ),
    request_body = AppendBody,
    responses(
        (status = 200, description = "Appended (or replayed)", body = DataEnvelope<AppendReceipt>),
        (status = 400, description = "Invalid input", body = super::error::ErrorEnvelope),
        (status = 409, description = "Idempotency or writer conflict", body = super::error::ErrorEnvelope),
        (status = 413, description = "Body too large", body = super::error::ErrorEnvelope),
        (status = 415, description = "Not JSON", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable or draining", body = super::error::ErrorEnvelope),
    )
)]
pub async fn append(
    State(state): State<AppState>,
    SessionPath(session): SessionPath,
    AppQuery(query): AppQuery<SubpathQuery>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    WriterEpoch(writer_epoch): WriterEpoch,
    RequestId(request_id): RequestId,
    AppJson(body): AppJson<AppendBody>,
) -> Result<Json<DataEnvelope<AppendReceipt>>, Error> {
    let key = SessionKey {
        session,
        subpath: query.subpath()?,
    };
    let request = AppendRequest {
        key,
        entries: body.entries,
        idempotency_key,
        summary: body.summary.map(|s| SummaryUpdate {
            data: s.data,
            expected_version: s.expected_version,
        }),
        writer_epoch,
    };
    // The append runs as its own task: a client that disconnects, or a
    // request timeout, cannot cut it between writing the part and recording
    // it (and its idempotency key). Shutdown waits for these tasks.
    // A write that did not land is a mirror failure, kept for operators
    // (also when the client has gone: the task reports it).
    let engine = state.engine.clone();
    let appending = async move {
        let key = request.key.clone();
        let result = engine.append(request).await;
        if let Err(e) = &result {
            if e.code().status().is_server_error() {
                let detail = crate::error::chain(e);
                engine.report_gateway_failure(&key, e.mirror_reason(), &detail, request_id);
            }
        }
        result
    };
    let result = state
        .appends
        .spawn(appending.in_current_span())
        .await
        .map_err(|e| Error::internal_from("the append task failed", e))
        .and_then(|r| r);
    Ok(Json(DataEnvelope { data: result? }))
}

/// Loads every entry of the transcript, in order, streamed.
#[utoipa::path(
    get,
    path = paths::ENTRIES,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
        LoadQuery,
    ),
    responses(
        (status = 200, description = "`{\"data\":{\"entries\":[...]}}`; header `x-head-seq` names the last part covered", body = DataEnvelope<EntriesView>),
        (status = 404, description = "Never written, or deleted", body = super::error::ErrorEnvelope),
        (status = 502, description = "Stored data failed its checksum", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn load(
    State(state): State<AppState>,
    SessionPath(session): SessionPath,
    AppQuery(query): AppQuery<LoadQuery>,
) -> Result<Response, Error> {
    let subpath = SubpathQuery {
        subpath: query.subpath,
    }
    .subpath()?;
    let key = SessionKey { session, subpath };
    let after = Seq(query.after_seq.unwrap_or(0));
    let Some(loaded) = state.engine.load(&key, after).await? else {
        return Err(Error::not_found(format!("no transcript at {key}")));
    };
    let mut first = true;
    let entries = loaded.stream.map(move |chunk| {
        let chunk = chunk?;
        Ok::<_, Error>(jsonl_to_array_items(&chunk, std::mem::take(&mut first)))
    });
    let body = futures::stream::once(async { Ok(Bytes::from_static(b"{\"data\":{\"entries\":[")) })
        .chain(entries)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}}"))
        }));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-head-seq", HeaderValue::from(loaded.head.0));
    Ok(response)
}

/// Turns JSONL lines into comma-separated array items, with a leading comma
/// unless this is the first chunk.
pub(super) fn jsonl_to_array_items(chunk: &[u8], first: bool) -> Bytes {
    let trimmed = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    if trimmed.is_empty() {
        return Bytes::new();
    }
    let mut out = Vec::with_capacity(trimmed.len() + 1);
    if !first {
        out.push(b',');
    }
    out.extend(trimmed.iter().map(|&b| if b == b'\n' { b',' } else { b }));
    Bytes::from(out)
}

/// The shape of a load's `data`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EntriesView {
    /// Every entry, in append order.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_becomes_array_items() {
        assert_eq!(
            &jsonl_to_array_items(b"{\"a\":1}\n{\"b\":2}\n", true)[..],
            b"{\"a\":1},{\"b\":2}"
        );
        assert_eq!(
            &jsonl_to_array_items(b"{\"c\":3}\n", false)[..],
            b",{\"c\":3}"
        );
    }
}
