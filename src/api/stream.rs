//! `GET .../stream`: a transcript read as a Durable Streams stream in JSON
//! mode (each message is one entry, exactly as a load returns it), for
//! clients such as `@durable-streams/client` and the dashboard.
//!
//! Without `live` it is a catch-up read: every entry after `offset` as a
//! JSON array. `live=long-poll` waits (at most [`LiveLimits::long_poll`])
//! for entries after `offset` and answers 204 when none came.
//! `live=sse` streams `data` events (JSON arrays of entries) each batch
//! followed by a `control` event with the next offset, keep-alive comments
//! in between, and ends after [`LiveLimits::sse`] so clients reconnect. Live
//! readers are bounded per instance and end when the gateway drains. The
//! engine does the reading and the waiting ([`crate::engine::StreamStart`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::entries::jsonl_to_array_items;
use super::extract::{AppQuery, SessionPath, SubpathQuery};
use super::{paths, AppState};
use crate::domain::SessionKey;
use crate::engine::{Engine, LoadStream, StreamOffset, StreamRead, StreamStart, StreamWatch};
use crate::error::Error;
use crate::metrics::METRICS;

/// `Stream-Next-Offset`: where the next read starts.
const NEXT_OFFSET: HeaderName = HeaderName::from_static("stream-next-offset");
/// `Stream-Up-To-Date`: the response holds everything there is.
const UP_TO_DATE: HeaderName = HeaderName::from_static("stream-up-to-date");
/// `Stream-Cursor`: echoed by clients as `cursor`, for CDN collapsing.
const CURSOR: HeaderName = HeaderName::from_static("stream-cursor");
/// The protocol's cursor epoch, 2024-10-09T00:00:00Z, in seconds.
const CURSOR_EPOCH_SECS: u64 = 1_728_432_000;
/// The protocol's cursor interval.
const CURSOR_INTERVAL_SECS: u64 = 20;
/// Comments sent on a quiet SSE stream, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Bounds on live reads, from the configuration.
#[derive(Clone, Debug)]
pub struct LiveLimits {
    /// Most live readers (long-poll and SSE) served at once.
    pub max_readers: usize,
    /// Longest wait of a long-poll read.
    pub long_poll: Duration,
    /// How long an SSE read stays open.
    pub sse: Duration,
}

/// What the handler needs besides the state: the limits and the readers'
/// permits.
#[derive(Clone)]
pub struct Live {
    limits: LiveLimits,
    readers: Arc<Semaphore>,
}

impl Live {
    /// A live reader's place, or 503 `overloaded` when all are taken.
    fn admit(&self) -> Result<Reader, Error> {
        let permit = self.readers.clone().try_acquire_owned().map_err(|_| {
            Error::TooManyReaders(format!(
                "this instance serves its limit of {} live readers; retry shortly (or read \
                 without live)",
                self.limits.max_readers
            ))
        })?;
        METRICS.live_readers.fetch_add(1, Ordering::Relaxed);
        Ok(Reader { _permit: permit })
    }
}

/// A live reader's place, counted in `tg.stream.readers` until dropped.
struct Reader {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Reader {
    fn drop(&mut self) {
        METRICS.live_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read))
}

/// The live readers' shared state under `limits`, as the layer that hands
/// it to [`read`].
pub fn live_layer(limits: &LiveLimits) -> Extension<Live> {
    Extension(Live {
        readers: Arc::new(Semaphore::new(limits.max_readers)),
        limits: limits.clone(),
    })
}

/// `?subpath=&offset=&live=&cursor=` of a stream read.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// A subkey below the session.
    pub subpath: Option<String>,
    /// `-1` (the beginning; the default), `now` (the tail: nothing already
    /// written) or a `Stream-Next-Offset` value from an earlier read.
    pub offset: Option<String>,
    /// `long-poll` or `sse`; absent for a catch-up read.
    pub live: Option<String>,
    /// The last `Stream-Cursor` (or SSE `streamCursor`) received.
    pub cursor: Option<String>,
}

/// How a read goes on after what is there now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    CatchUp,
    LongPoll,
    Sse,
}

/// Reads a transcript as a Durable Streams stream (JSON mode).
#[utoipa::path(
    get,
    path = paths::STREAM,
    tag = "transcripts",
    params(
        ("task_id" = String, Path, description = "Task id"),
        ("project_key" = String, Path, description = "SDK project key"),
        ("session_id" = String, Path, description = "Claude session id"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "Catch-up or long-poll: a JSON array of the entries after `offset`. SSE (`live=sse`, `text/event-stream`): `data` events (JSON arrays of entries), each batch followed by a `control` event `{\"streamNextOffset\",\"streamCursor\",\"upToDate\"}`, keep-alive comments; the gateway closes it after `live_sse_secs` and the client reconnects from its last offset",
            headers(
                ("Stream-Next-Offset" = String, description = "The offset to read from next (catch-up and long-poll)"),
                ("Stream-Up-To-Date" = String, description = "`true`: the response holds every entry there was"),
                ("Stream-Cursor" = String, description = "Echo as `cursor` on the next read"),
            ),
            content(
                (Vec<serde_json::Value> = "application/json"),
                (String = "text/event-stream"),
            )
        ),
        (status = 304, description = "Catch-up with `If-None-Match` naming this read's `ETag`: nothing changed since; no body",
            headers(
                ("Stream-Next-Offset" = String, description = "The offset to read from next"),
                ("ETag" = String, description = "The same ETag"),
            )
        ),
        (status = 204, description = "Long-poll: nothing new within the wait (or the gateway started draining); read again from `Stream-Next-Offset`",
            headers(
                ("Stream-Next-Offset" = String, description = "The offset to read from next"),
                ("Stream-Up-To-Date" = String, description = "`true`"),
                ("Stream-Cursor" = String, description = "Echo as `cursor` on the next read"),
            )
        ),
        (status = 400, description = "`invalid_offset`: an offset this stream did not produce; `invalid_request`: a bad `live` or subpath", body = super::error::ErrorEnvelope),
        (status = 404, description = "Never written, or deleted", body = super::error::ErrorEnvelope),
        (status = 410, description = "`offset_gone`: the offset belongs to an earlier life of the transcript (deleted and written again); read again from -1", body = super::error::ErrorEnvelope),
        (status = 502, description = "Stored data failed its checksum or integrity check", body = super::error::ErrorEnvelope),
        (status = 503, description = "`overloaded` (with `Retry-After`): this instance serves its limit of live readers; `draining`; `backend_unavailable`", body = super::error::ErrorEnvelope),
    )
)]
pub async fn read(
    State(state): State<AppState>,
    Extension(live): Extension<Live>,
    SessionPath(session): SessionPath,
    AppQuery(query): AppQuery<StreamQuery>,
    request_headers: HeaderMap,
) -> Result<Response, Error> {
    // A long-poll's wait counts from here, so its first read cannot push
    // the answer past the request timeout.
    let arrived = Instant::now();
    let subpath = SubpathQuery {
        subpath: query.subpath,
    }
    .subpath()?;
    let key = SessionKey { session, subpath };
    let start = match query.offset.as_deref() {
        None | Some("-1") => StreamStart::Beginning,
        Some("now") => StreamStart::Now,
        Some(offset) => StreamStart::After(StreamOffset::parse(offset)?),
    };
    let mode = match query.live.as_deref() {
        None => Mode::CatchUp,
        Some("long-poll") => Mode::LongPoll,
        Some("sse") => Mode::Sse,
        Some(other) => {
            return Err(Error::invalid(format!(
                "live must be long-poll or sse (or absent for a catch-up read), not {:?}",
                other.chars().take(32).collect::<String>()
            )))
        }
    };
    let echoed = query.cursor.as_deref();
    // The protocol's ETag names the range a read covers; `now` reads none.
    let from = match start {
        StreamStart::Beginning => Some("-1".to_string()),
        StreamStart::Now => None,
        StreamStart::After(offset) => Some(offset.to_string()),
    };
    let engine = &state.engine;
    let reader = match mode {
        Mode::CatchUp => None,
        _ => Some(live.admit()?),
    };
    let first = engine.stream_read(&key, start).await?;
    match mode {
        Mode::CatchUp => {
            let etag = from.as_deref().map(|f| etag(f, first.next));
            let seen = request_headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            match (etag, seen) {
                (Some(etag), Some(seen)) if seen.split(',').any(|t| t.trim() == etag) => {
                    Ok(not_modified(&etag, first.next, engine, echoed))
                }
                _ => Ok(entries_response(first, from, engine, echoed)),
            }
        }
        Mode::LongPoll => {
            if first.entries.is_some() {
                return Ok(entries_response(first, from, engine, echoed));
            }
            let at = first.next;
            let until = arrived + live.limits.long_poll;
            let mut watch = engine.stream_watch(&key);
            let waited = tokio::select! {
                read = engine.stream_wait(&mut watch, at, until) => read?,
                // A draining gateway answers at once; the client's next
                // request goes to another instance.
                _ = state.readiness.drain_started() => None,
            };
            drop(reader);
            match waited {
                Some(read) => Ok(entries_response(read, Some(at.to_string()), engine, echoed)),
                None => Ok(no_content(at, engine, echoed)),
            }
        }
        Mode::Sse => {
            let tail = SseTail {
                engine: engine.clone(),
                watch: engine.stream_watch(&key),
                at: first.next,
                pending: first.entries,
                announce: true,
                echoed: echoed.map(str::to_string),
                until: Instant::now() + live.limits.sse,
                drained: Box::pin(state.readiness.drain_started()),
                _reader: reader,
            };
            let events = stream::unfold(tail, |mut tail| async move {
                let event = tail.next_event().await?;
                Some((event, tail))
            });
            let mut response = Sse::new(events)
                .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
                .into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Proxies such as nginx would otherwise buffer the events.
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            Ok(response)
        }
    }
}

/// An SSE read in progress: the batch being sent, then waits for the next.
struct SseTail {
    engine: Engine,
    watch: StreamWatch,
    /// The offset after everything sent or being sent.
    at: StreamOffset,
    /// Entries still to send as `data` events.
    pending: Option<LoadStream>,
    /// A `control` event is due once `pending` is sent.
    announce: bool,
    echoed: Option<String>,
    /// When the gateway closes the stream.
    until: Instant,
    drained: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// Held while the stream is open.
    _reader: Option<Reader>,
}

impl SseTail {
    /// The next event; `None` ends the stream (time is up, the gateway
    /// drains, the transcript was deleted, or a read failed between
    /// batches: the client reconnects from its last offset and learns
    /// which). A failure inside a batch is an error, which aborts the
    /// connection: ended cleanly, the client would take the batch's first
    /// `data` events without their `control` event and read them again.
    async fn next_event(&mut self) -> Option<Result<Event, Error>> {
        loop {
            if let Some(entries) = self.pending.as_mut() {
                match entries.next().await {
                    Some(Ok(chunk)) => {
                        let items = jsonl_to_array_items(&chunk, true);
                        if items.is_empty() {
                            continue;
                        }
                        let Ok(items) = std::str::from_utf8(&items) else {
                            return Some(Err(Error::internal("a stored entry is not UTF-8")));
                        };
                        let data = Event::default().event("data").data(format!("[{items}]"));
                        return Some(Ok(data));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %crate::error::chain(&e), "stream read failed inside a batch; aborting the stream");
                        return Some(Err(e));
                    }
                    None => self.pending = None,
                }
            }
            if std::mem::take(&mut self.announce) {
                let control = serde_json::json!({
                    "streamNextOffset": self.at.to_string(),
                    "streamCursor": cursor(self.echoed.as_deref(), self.engine.now_ms()),
                    "upToDate": true,
                });
                let control = Event::default().event("control").data(control.to_string());
                return Some(Ok(control));
            }
            let read = tokio::select! {
                read = self.engine.stream_wait(&mut self.watch, self.at, self.until) => read,
                _ = &mut self.drained => return None,
            };
            match read {
                Ok(Some(read)) => {
                    self.at = read.next;
                    self.pending = read.entries;
                    self.announce = true;
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(error = %crate::error::chain(&e), "stream ended");
                    return None;
                }
            }
        }
    }
}

/// 200 with the entries of `read` (after `from`, when known) as a JSON
/// array, streamed.
fn entries_response(
    read: StreamRead,
    from: Option<String>,
    engine: &Engine,
    echoed: Option<&str>,
) -> Response {
    let mut first = true;
    let items = read.entries.map(|entries| {
        entries.map(move |chunk| {
            let chunk = chunk?;
            Ok::<_, Error>(jsonl_to_array_items(&chunk, std::mem::take(&mut first)))
        })
    });
    let open = stream::once(async { Ok(Bytes::from_static(b"[")) });
    let close = stream::once(async { Ok(Bytes::from_static(b"]")) });
    let body = match items {
        Some(items) => Body::from_stream(open.chain(items).chain(close)),
        None => Body::from(Bytes::from_static(b"[]")),
    };
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(etag) = from.and_then(|f| HeaderValue::from_str(&etag(&f, read.next)).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    protocol_headers(&mut response, read.next, engine, echoed);
    response
}

/// The ETag of a read from `from` up to `next`: the range it covers.
fn etag(from: &str, next: StreamOffset) -> String {
    format!("\"{from}:{next}\"")
}

/// 304: the range `etag` names is what the client holds already.
fn not_modified(etag: &str, next: StreamOffset, engine: &Engine, echoed: Option<&str>) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    protocol_headers(&mut response, next, engine, echoed);
    response
}

/// 204: nothing new; the client asks again from `at`.
fn no_content(at: StreamOffset, engine: &Engine, echoed: Option<&str>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    protocol_headers(&mut response, at, engine, echoed);
    response
}

fn protocol_headers(
    response: &mut Response,
    next: StreamOffset,
    engine: &Engine,
    echoed: Option<&str>,
) {
    let headers = response.headers_mut();
    // Offsets and cursors are ASCII digits, letters and `_`.
    if let Ok(v) = HeaderValue::from_str(&next.to_string()) {
        headers.insert(NEXT_OFFSET, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cursor(echoed, engine.now_ms())) {
        headers.insert(CURSOR, v);
    }
    // Every response holds all there was when it was read.
    headers.insert(UP_TO_DATE, HeaderValue::from_static("true"));
    // Transcripts are private: no shared cache keeps them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The protocol's cursor: the number of 20 s intervals since its epoch,
/// and always past the one the client echoed (by 1 s to an hour of jitter),
/// so a cached answer is never served again.
fn cursor(echoed: Option<&str>, now_ms: u64) -> String {
    let current = (now_ms / 1000).saturating_sub(CURSOR_EPOCH_SECS) / CURSOR_INTERVAL_SECS;
    let cursor = match echoed.and_then(|c| c.parse::<u64>().ok()) {
        Some(echoed) if echoed >= current => {
            let jitter_secs = 1 + (ulid::Ulid::new().random() % 3600) as u64;
            echoed.saturating_add(jitter_secs.div_ceil(CURSOR_INTERVAL_SECS))
        }
        _ => current,
    };
    cursor.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_count_intervals_and_always_move_past_the_echoed_one() {
        let now_ms = (CURSOR_EPOCH_SECS + 20 * 1000 + 5) * 1000;
        assert_eq!(cursor(None, now_ms), "1000");
        assert_eq!(cursor(Some("999"), now_ms), "1000");
        assert_eq!(cursor(Some("not a number"), now_ms), "1000");
        for _ in 0..50 {
            let next: u64 = cursor(Some("1000"), now_ms).parse().unwrap();
            assert!((1001..=1180).contains(&next), "{next}");
        }
        assert_eq!(
            cursor(Some(&u64::MAX.to_string()), now_ms),
            u64::MAX.to_string()
        );
    }
}
