//! The live tail: a transcript read as a Durable Streams stream
//! (`GET .../stream`): catch-up, resume from an offset, `offset=now`,
//! long-poll and SSE, malformed and stale offsets, the live reader limit,
//! auth, drain, and appends through another instance reaching a reader
//! (two gateways over S3 + DynamoDB on the emulators).

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use transcript_gateway::config::Config;
use transcript_gateway::engine::{Engine, EngineConfig};

use crate::common::{append, auth_config, embedded_ports, mint, AwsBackends, Session, TestGateway};

/// `.../stream` of `s`, with `query`.
fn stream_url(base: &str, s: &Session, query: &str) -> String {
    format!("{}/stream?{query}", s.session(base))
}

/// One batch of `n` entries tagged `tag`.
fn batch(tag: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"type": "user", "tag": tag, "i": i}))
            .collect(),
    )
}

/// A catch-up or long-poll read: status, `Stream-Next-Offset`, the body as
/// JSON (Null when empty) and the response headers.
async fn read(
    http: &reqwest::Client,
    url: &str,
) -> (StatusCode, String, Value, reqwest::header::HeaderMap) {
    let resp = tokio::time::timeout(Duration::from_secs(30), http.get(url).send())
        .await
        .expect("a read answers within 30 s")
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let next = headers
        .get("stream-next-offset")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, next, body, headers)
}

fn tags(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}{}", e["tag"].as_str().unwrap(), e["i"]))
        .collect()
}

async fn gateway_with(config: Config) -> (TestGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    (TestGateway::over(objects, catalog, config).await, dir)
}

#[tokio::test]
async fn catch_up_from_minus_one_returns_every_entry_and_the_next_offset() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 2)).await;
    append(&gw.http, &s.entries(&gw.base_url), batch("b", 3)).await;

    let (status, next, body, headers) =
        read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    assert_eq!(status, 200);
    assert_eq!(tags(&body), ["a0", "a1", "b0", "b1", "b2"]);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["stream-up-to-date"], "true");
    assert!(headers.contains_key("stream-cursor"));
    // The offset after the second part of the first incarnation.
    assert_eq!(next, "0000000000000001_0000000000000002");
    assert_eq!(headers["etag"], format!("\"-1:{next}\"").as_str());
    // Entries are exactly what a load returns.
    let loaded = crate::common::load(&gw.http, &s.entries(&gw.base_url))
        .await
        .1;
    assert_eq!(body.as_array().unwrap(), &loaded);
    // No offset at all is the same as -1.
    let (_, next_default, body_default, _) =
        read(&gw.http, &stream_url(&gw.base_url, &s, "")).await;
    assert_eq!((next_default, body_default), (next, body));
    gw.stop().await;
}

#[tokio::test]
async fn a_catch_up_read_whose_etag_the_client_holds_answers_304_until_the_stream_grows() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 2)).await;
    let url = stream_url(&gw.base_url, &s, "offset=-1");
    let (status, next, _, headers) = read(&gw.http, &url).await;
    assert_eq!(status, 200);
    let etag = headers["etag"].to_str().unwrap().to_string();

    let again = |tag: String| {
        let (http, url) = (gw.http.clone(), url.clone());
        async move {
            let resp = http
                .get(&url)
                .header("if-none-match", tag)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let headers = resp.headers().clone();
            (status, headers, resp.bytes().await.unwrap())
        }
    };
    let (status, headers, body) = again(etag.clone()).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(headers["stream-next-offset"], next.as_str());
    // Another ETag in the list is no match; a list holding it is.
    let (status, _, _) = again("\"-1:other\"".into()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = again(format!("\"x\", {etag}")).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // Once the stream grows the same ETag gets the whole range again.
    append(&gw.http, &s.entries(&gw.base_url), batch("b", 1)).await;
    let (status, headers, body) = again(etag.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(headers["etag"], etag.as_str());
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(tags(&body), ["a0", "a1", "b0"]);
    gw.stop().await;
}

#[tokio::test]
async fn resuming_from_a_saved_offset_repeats_nothing_and_misses_nothing() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 2)).await;
    let (_, saved, first, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    assert_eq!(tags(&first), ["a0", "a1"]);

    // Nothing new: an empty array and the same offset.
    let (status, same, empty, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("offset={saved}")),
    )
    .await;
    assert_eq!((status.as_u16(), &same, &empty), (200, &saved, &json!([])));

    append(&gw.http, &s.entries(&gw.base_url), batch("b", 1)).await;
    append(&gw.http, &s.entries(&gw.base_url), batch("c", 2)).await;
    let (_, next, rest, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("offset={saved}")),
    )
    .await;
    assert_eq!(tags(&rest), ["b0", "c0", "c1"]);
    assert!(
        next > saved,
        "offsets sort in stream order: {next} > {saved}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_long_poll_gets_an_entry_appended_while_it_waits() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let (_, saved, _, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;

    let url = stream_url(&gw.base_url, &s, &format!("offset={saved}&live=long-poll"));
    let http = gw.http.clone();
    let waiting = tokio::spawn(async move { read(&http, &url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the long-poll waits for new entries"
    );
    let appended = Instant::now();
    append(&gw.http, &s.entries(&gw.base_url), batch("b", 2)).await;
    let (status, next, body, headers) = waiting.await.unwrap();
    let took = appended.elapsed();
    assert_eq!(status, 200);
    assert_eq!(tags(&body), ["b0", "b1"]);
    assert_eq!(next, "0000000000000001_0000000000000002");
    assert_eq!(headers["stream-up-to-date"], "true");
    assert!(took < Duration::from_secs(1), "delivered in {took:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_long_poll_with_nothing_new_answers_204_with_the_same_offset_within_its_wait() {
    let (gw, _dir) = gateway_with(Config {
        live_long_poll_secs: 1,
        ..Config::default()
    })
    .await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let (_, saved, _, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    let started = Instant::now();
    let (status, next, body, headers) = read(
        &gw.http,
        &stream_url(
            &gw.base_url,
            &s,
            &format!("offset={saved}&live=long-poll&cursor=5"),
        ),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    assert_eq!(next, saved);
    assert_eq!(headers["stream-up-to-date"], "true");
    let cursor: u64 = headers["stream-cursor"].to_str().unwrap().parse().unwrap();
    assert!(cursor > 5, "a fresh cursor: {cursor}");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "waited {waited:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_long_poll_is_never_cut_by_the_request_timeout() {
    // The configured wait (20 s) is longer than the request timeout (2 s):
    // the long-poll answers 204 before the timeout would answer 504.
    let (gw, _dir) = gateway_with(Config {
        request_timeout_secs: 2,
        ..Config::default()
    })
    .await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let (status, _, _, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, "offset=now&live=long-poll"),
    )
    .await;
    assert_eq!(status, 204);
    gw.stop().await;
}

#[tokio::test]
async fn offset_now_skips_history() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("old", 3)).await;
    // Catch-up at `now`: nothing, and the tail's offset.
    let (status, tail, body, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=now")).await;
    assert_eq!((status.as_u16(), &body), (200, &json!([])));
    assert_eq!(tail, "0000000000000001_0000000000000001");

    // A long-poll at `now` waits and gets only what comes after.
    let url = stream_url(&gw.base_url, &s, "offset=now&live=long-poll");
    let http = gw.http.clone();
    let waiting = tokio::spawn(async move { read(&http, &url).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(&gw.http, &s.entries(&gw.base_url), batch("new", 1)).await;
    let (status, _, body, _) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(tags(&body), ["new0"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_malformed_offset_is_400_invalid_offset_and_a_bad_live_mode_400_invalid_request() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    for offset in [
        "abc",
        "-2",
        "0000000000000001",
        "0000000000000001_00000000000000zz",
        "1_1",
    ] {
        let (status, _, body, _) = read(
            &gw.http,
            &stream_url(&gw.base_url, &s, &format!("offset={offset}&live=long-poll")),
        )
        .await;
        assert_eq!(status, 400, "{offset}");
        assert_eq!(body["error"]["code"], "invalid_offset", "{offset}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("-1") && message.contains("Stream-Next-Offset"),
            "{message}"
        );
    }
    let (status, _, body, _) =
        read(&gw.http, &stream_url(&gw.base_url, &s, "live=websocket")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_request");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("long-poll or sse"));
    gw.stop().await;
}

#[tokio::test]
async fn a_never_written_transcript_is_404_and_an_offset_from_before_a_delete_is_410() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let (status, _, body, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (404, &json!("not_found"))
    );

    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let (_, saved, _, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    let deleted = gw
        .http
        .delete(s.session(&gw.base_url))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    let (status, _, body, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("offset={saved}")),
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (404, &json!("not_found"))
    );

    append(&gw.http, &s.entries(&gw.base_url), batch("again", 2)).await;
    let (status, _, body, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("offset={saved}")),
    )
    .await;
    assert_eq!(status, 410);
    assert_eq!(body["error"]["code"], "offset_gone");
    assert!(body["error"]["message"].as_str().unwrap().contains("-1"));
    let (_, next, body, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    assert_eq!(tags(&body), ["again0", "again1"]);
    assert_eq!(next, "0000000000000002_0000000000000001");
    gw.stop().await;
}

#[tokio::test]
async fn beyond_the_live_reader_limit_a_live_read_is_503_overloaded_with_retry_after() {
    let (gw, _dir) = gateway_with(Config {
        max_live_readers: 1,
        ..Config::default()
    })
    .await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    // One SSE reader holds the only place while its stream is open.
    let sse = gw
        .http
        .get(stream_url(&gw.base_url, &s, "offset=-1&live=sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert!(
        gw.metrics().await.contains("tg_stream_readers"),
        "the live readers are reported"
    );
    for live in ["long-poll", "sse"] {
        let (status, _, body, headers) = read(
            &gw.http,
            &stream_url(&gw.base_url, &s, &format!("offset=now&live={live}")),
        )
        .await;
        assert_eq!(status, 503, "{live}");
        assert_eq!(body["error"]["code"], "overloaded");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("live readers"));
        assert_eq!(headers["retry-after"], "1");
    }
    // A catch-up read is not live: still served.
    let (status, _, body, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    assert_eq!(
        (status.as_u16(), tags(&body)),
        (200, vec!["a0".to_string()])
    );
    // Once the reader leaves, its place is free again.
    drop(sse);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _, _) = read(
            &gw.http,
            &stream_url(&gw.base_url, &s, "offset=-1&live=long-poll"),
        )
        .await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place was never freed ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_stream_needs_the_same_token_scope_as_a_load() {
    let (gw, _dir) = gateway_with(auth_config()).await;
    let s = Session::fresh();
    let writer = mint(&s.task, "transcripts:write");
    let resp = gw
        .http
        .post(s.entries(&gw.base_url))
        .bearer_auth(&writer)
        .json(&json!({"entries": batch("a", 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let other = mint("task-other", "transcripts:read");
    let reader = mint(&s.task, "transcripts:read");
    for query in [
        "offset=-1",
        "offset=now&live=long-poll",
        "offset=-1&live=sse",
    ] {
        let url = stream_url(&gw.base_url, &s, query);
        for (token, status, code) in [
            (None, 401, "unauthorized"),
            (Some(&other), 403, "forbidden"),
        ] {
            let mut req = gw.http.get(&url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), status, "{query}");
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{query}");
            // The load answers the same.
            let mut load = gw.http.get(s.entries(&gw.base_url));
            if let Some(t) = token {
                load = load.bearer_auth(t);
            }
            assert_eq!(load.send().await.unwrap().status(), status);
        }
    }
    let resp = gw
        .http
        .get(stream_url(&gw.base_url, &s, "offset=-1"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(tags(&body), ["a0"]);
    gw.stop().await;
}

/// An SSE reader: the events as (event, data) pairs.
struct SseReader {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl SseReader {
    async fn open(http: &reqwest::Client, url: &str) -> Self {
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            body: resp.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event with a name (comments skipped); `None` at the end of
    /// the stream. Panics after `limit`.
    async fn next(&mut self, limit: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(at) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..at + 2).collect();
                let mut event = None;
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = Some(e.trim().to_string());
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                    }
                }
                if let Some(event) = event {
                    return Some((event, serde_json::from_str(&data.join("\n")).unwrap()));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an SSE event in time")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }
}

#[tokio::test]
async fn sse_sends_data_then_control_events_for_history_and_new_entries_then_closes() {
    let (gw, _dir) = gateway_with(Config {
        live_sse_secs: 3,
        ..Config::default()
    })
    .await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 2)).await;
    let opened = Instant::now();
    let mut sse = SseReader::open(
        &gw.http,
        &stream_url(&gw.base_url, &s, "offset=-1&live=sse"),
    )
    .await;
    let (event, data) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (event.as_str(), tags(&data)),
        ("data", vec!["a0".into(), "a1".into()])
    );
    let (event, control) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event, "control");
    assert_eq!(
        control["streamNextOffset"],
        "0000000000000001_0000000000000001"
    );
    assert_eq!(control["upToDate"], true);
    assert!(control["streamCursor"].as_str().is_some());

    append(&gw.http, &s.entries(&gw.base_url), batch("b", 1)).await;
    let (event, data) = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!((event.as_str(), tags(&data)), ("data", vec!["b0".into()]));
    let (_, control) = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        control["streamNextOffset"],
        "0000000000000001_0000000000000002"
    );

    // The gateway closes the stream after live_sse_secs.
    assert!(sse.next(Duration::from_secs(6)).await.is_none());
    let open_for = opened.elapsed();
    assert!(
        open_for >= Duration::from_secs(3) && open_for < Duration::from_secs(6),
        "{open_for:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn sse_at_now_starts_with_a_control_event_at_the_tail() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("old", 2)).await;
    let mut sse = SseReader::open(
        &gw.http,
        &stream_url(&gw.base_url, &s, "offset=now&live=sse"),
    )
    .await;
    let (event, control) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event, "control");
    assert_eq!(
        control["streamNextOffset"],
        "0000000000000001_0000000000000001"
    );
    assert_eq!(control["upToDate"], true);
    append(&gw.http, &s.entries(&gw.base_url), batch("new", 1)).await;
    let (event, data) = sse.next(Duration::from_secs(2)).await.unwrap();
    assert_eq!((event.as_str(), tags(&data)), ("data", vec!["new0".into()]));
    gw.stop().await;
}

#[tokio::test]
async fn draining_ends_live_readers_promptly() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let mut sse = SseReader::open(
        &gw.http,
        &stream_url(&gw.base_url, &s, "offset=-1&live=sse"),
    )
    .await;
    sse.next(Duration::from_secs(5)).await.unwrap();
    sse.next(Duration::from_secs(5)).await.unwrap();
    let url = stream_url(&gw.base_url, &s, "offset=now&live=long-poll");
    let http = gw.http.clone();
    let polling = tokio::spawn(async move { read(&http, &url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    gw.stop().await;
    let stopped = started.elapsed();
    assert!(
        stopped < Duration::from_secs(3),
        "live readers held the drain for {stopped:?}"
    );
    assert!(
        sse.next(Duration::from_secs(2)).await.is_none(),
        "the SSE stream ended"
    );
    let (status, _, _, _) = polling.await.unwrap();
    assert_eq!(status, 204, "the long-poll answered at once");
}

#[tokio::test]
async fn one_poller_per_key_serves_every_reader_and_stops_when_they_leave() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(
            SseReader::open(
                &gw.http,
                &stream_url(&gw.base_url, &s, "offset=now&live=sse"),
            )
            .await,
        );
    }
    for r in &mut readers {
        r.next(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(gw.engine.tailed_keys(), 1);
    append(&gw.http, &s.entries(&gw.base_url), batch("b", 1)).await;
    for r in &mut readers {
        let (_, data) = r.next(Duration::from_secs(2)).await.unwrap();
        assert_eq!(tags(&data), ["b0"]);
    }
    drop(readers);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.engine.tailed_keys() > 0 {
        assert!(Instant::now() < deadline, "the poller outlived its readers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// Two gateway instances over the same S3 bucket and DynamoDB tables, each
/// with its own engine (no memory shared): entries appended through B reach
/// a long-poll reader and an SSE reader on A within a second.
#[tokio::test]
async fn an_entry_appended_through_another_instance_reaches_readers_within_a_second_on_s3_and_dynamodb(
) {
    let Some(aws) = AwsBackends::start(
        "an_entry_appended_through_another_instance_reaches_readers_within_a_second_on_s3_and_dynamodb",
    ) else {
        return;
    };
    let instance = |ports: (_, _)| {
        let (objects, catalog) = ports;
        let config = aws.config.clone();
        async move {
            let engine = Engine::new(objects, catalog, EngineConfig::default());
            TestGateway::serve(engine, config).await
        }
    };
    let a = instance(aws.ports().await).await;
    let b = instance(aws.ports().await).await;
    let s = Session::fresh();
    let (status, _) = append(&b.http, &s.entries(&b.base_url), batch("first", 2)).await;
    assert_eq!(status, 200);
    let (status, saved, body, _) = read(&a.http, &stream_url(&a.base_url, &s, "offset=-1")).await;
    assert_eq!(status, 200);
    assert_eq!(tags(&body), ["first0", "first1"]);

    let mut sse = SseReader::open(
        &a.http,
        &stream_url(&a.base_url, &s, &format!("offset={saved}&live=sse")),
    )
    .await;
    let (event, _) = sse.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event, "control");

    let mut latencies = Vec::new();
    let mut offset = saved;
    for round in 0..3 {
        let url = stream_url(&a.base_url, &s, &format!("offset={offset}&live=long-poll"));
        let http = a.http.clone();
        let polling = tokio::spawn(async move { read(&http, &url).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tag = format!("r{round}-");
        let appended = Instant::now();
        let (status, _) = append(&b.http, &s.entries(&b.base_url), batch(&tag, 1)).await;
        assert_eq!(status, 200);
        let acknowledged = appended.elapsed();
        let (status, next, body, _) = polling.await.unwrap();
        let by_long_poll = appended.elapsed();
        assert_eq!(status, 200);
        assert_eq!(tags(&body), [format!("{tag}0")]);
        let (event, data) = sse.next(Duration::from_secs(5)).await.unwrap();
        let by_sse = appended.elapsed();
        assert_eq!(
            (event.as_str(), tags(&data)),
            ("data", vec![format!("{tag}0")])
        );
        let (_, control) = sse.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(control["streamNextOffset"], next.as_str());
        eprintln!(
            "round {round}: append acknowledged in {acknowledged:?}, long-poll on the other \
             instance had it after {by_long_poll:?}, SSE after {by_sse:?}"
        );
        latencies.push(by_long_poll.max(by_sse) - acknowledged);
        offset = next;
    }
    for latency in &latencies {
        assert!(
            *latency < Duration::from_secs(1),
            "delivered later than a second after the acknowledgement: {latencies:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn resuming_from_an_offset_inside_a_compacted_range_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(
        objects,
        catalog,
        EngineConfig {
            compaction_grace: Duration::ZERO,
            ..EngineConfig::default()
        },
    );
    let gw = TestGateway::serve(engine, Config::default()).await;
    let s = Session::fresh();
    let mut offsets = Vec::new();
    for i in 0..5 {
        append(
            &gw.http,
            &s.entries(&gw.base_url),
            batch(&format!("p{i}-"), 2),
        )
        .await;
        let (_, next, _, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=now")).await;
        offsets.push(next);
    }
    let resp = gw
        .http
        .post(format!("{}/admin/v1/tasks/{}/compact", gw.base_url, s.task))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["compacted"][0]["through"], 5);
    // Parts 1..=5 are in the snapshot now (and deleted after a zero grace).
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&gw.http, &s.entries(&gw.base_url), batch("p5-", 1)).await;
    // From after part 2 (inside the snapshot): parts 3, 4, 5 and 6 once each.
    let (status, next, body, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("offset={}", offsets[1])),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        tags(&body),
        ["p2-0", "p2-1", "p3-0", "p3-1", "p4-0", "p4-1", "p5-0"]
    );
    assert_eq!(next, "0000000000000001_0000000000000006");
    // From after part 5 (the snapshot's last): part 6 only.
    let (_, _, body, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("offset={}", offsets[4])),
    )
    .await;
    assert_eq!(tags(&body), ["p5-0"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_subkey_is_its_own_stream() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let sub = "subagents/agent-1";
    append(&gw.http, &s.entries(&gw.base_url), batch("main", 1)).await;
    append(
        &gw.http,
        &format!("{}?subpath={sub}", s.entries(&gw.base_url)),
        batch("sub", 2),
    )
    .await;
    let (status, next, body, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, &format!("subpath={sub}&offset=-1")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(tags(&body), ["sub0", "sub1"]);
    assert_eq!(next, "0000000000000001_0000000000000001");
    let (_, _, body, _) = read(&gw.http, &stream_url(&gw.base_url, &s, "offset=-1")).await;
    assert_eq!(tags(&body), ["main0"]);
    let (status, _, body, _) = read(
        &gw.http,
        &stream_url(&gw.base_url, &s, "subpath=../x&offset=-1"),
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (400, &json!("invalid_request"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_quiet_sse_stream_carries_keep_alive_comments() {
    let (gw, _dir) = gateway_with(Config {
        live_sse_secs: 30,
        ..Config::default()
    })
    .await;
    let s = Session::fresh();
    append(&gw.http, &s.entries(&gw.base_url), batch("a", 1)).await;
    let resp = gw
        .http
        .get(stream_url(&gw.base_url, &s, "offset=now&live=sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // After the first control event, nothing happens: within the 15 s
    // keep-alive interval a comment line (`:`) arrives.
    while !seen.lines().any(|l| l.starts_with(':')) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("a keep-alive comment within 20 s")
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.starts_with("event: control\n"), "{seen}");
    gw.stop().await;
}
