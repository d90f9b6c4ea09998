//! The real binary: acknowledged appends survive SIGKILL, and SIGTERM drains
//! in-flight appends before a clean exit.

use std::time::Duration;

use serde_json::json;

use crate::common::{append, load, ChildGateway, Session};

#[tokio::test]
async fn acknowledged_appends_survive_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = reqwest::Client::new();
    let s = Session::fresh();
    let gw = ChildGateway::start(&data, &[]).await;
    let mut expected = Vec::new();
    for i in 0..20 {
        let batch = json!([{"i": i, "k": 0}, {"i": i, "k": 1}]);
        let (status, _) = append(&http, &s.entries(&gw.base_url), batch.clone()).await;
        assert_eq!(status, 200);
        expected.extend(batch.as_array().unwrap().iter().cloned());
    }
    gw.kill();
    let gw = ChildGateway::start(&data, &[]).await;
    let (status, entries) = load(&http, &s.entries(&gw.base_url)).await;
    assert_eq!(status, 200);
    assert_eq!(
        entries, expected,
        "every acknowledged append survives SIGKILL"
    );
    let (_, body) = append(
        &http,
        &s.entries(&gw.base_url),
        json!([{"after": "restart"}]),
    )
    .await;
    assert_eq!(body["data"]["seq"], 21);
    let exit = gw.terminate();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
}

#[tokio::test]
async fn sigterm_drains_in_flight_appends_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = ChildGateway::start(&data, &[]).await;
    let http = reqwest::Client::new();
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    // Each request sends half its body, then waits: it is surely in flight
    // when SIGTERM arrives, and must still be served to the end.
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for i in 0..4 {
        let first = format!("{{\"entries\":[{{\"w\":{i},");
        let (tx, answer) = half_sent(&http, &format!("{url}?subpath=w{i}"), first).await;
        senders.push(tx);
        writers.push(answer);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let terminated = tokio::task::spawn_blocking(move || gw.terminate());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for tx in senders {
        tx.send(Ok(bytes::Bytes::from_static(b"\"end\":true}]}")))
            .await
            .unwrap();
    }
    for (i, w) in writers.into_iter().enumerate() {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, 200, "in-flight writer {i} must be served: {body}");
    }
    let exit = terminated.await.unwrap();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
    let gw = ChildGateway::start(&data, &[]).await;
    for i in 0..4 {
        let (status, entries) = load(
            &http,
            &format!("{url}?subpath=w{i}", url = s.entries(&gw.base_url)),
        )
        .await;
        assert_eq!((status, entries), (200, vec![json!({"w": i, "end": true})]));
    }
    gw.kill();
}

/// The sending side of a request body still being uploaded.
type BodySender = tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>;

/// Starts a POST of a JSON body to `url` whose first bytes are `first`; the
/// rest goes through the returned sender. The task answers the status and
/// body once the gateway responds.
async fn half_sent(
    http: &reqwest::Client,
    url: &str,
    first: String,
) -> (BodySender, tokio::task::JoinHandle<(u16, String)>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = http
        .post(url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(tokio_stream_from(rx)));
    let answer = tokio::spawn(async move {
        let resp = req.send().await.expect("the upload is answered");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    });
    tx.send(Ok(bytes::Bytes::from(first))).await.unwrap();
    (tx, answer)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What one writer saw of its appends.
#[derive(Debug, Default)]
struct Outcomes {
    /// Batches answered 200, in order.
    acked: Vec<serde_json::Value>,
    /// A batch answered 503 `draining`: must not be stored.
    refused: Option<serde_json::Value>,
    /// A batch never answered: wholly stored or wholly absent.
    unanswered: Option<serde_json::Value>,
}

/// Appends batches to `url` until one is not acknowledged.
async fn write_until_refused(http: reqwest::Client, url: String, writer: usize) -> Outcomes {
    let mut out = Outcomes::default();
    for i in 0.. {
        let batch =
            json!([{"writer": writer, "i": i}, {"writer": writer, "i": i, "pad": "x".repeat(200)}]);
        let sent = http
            .post(&url)
            .header("idempotency-key", format!("w{writer}-{i}"))
            .json(&json!({ "entries": batch }))
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(_) => {
                out.unanswered = Some(batch);
                return out;
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().contains_key("retry-after");
        let body: serde_json::Value = match resp.json().await {
            Ok(body) => body,
            Err(_) => {
                out.unanswered = Some(batch);
                return out;
            }
        };
        match status {
            200 => out.acked.push(batch),
            503 => {
                assert_eq!(
                    body["error"]["code"], "draining",
                    "writer {writer}: a 503 after the signal says draining: {body}"
                );
                assert!(
                    retry_after,
                    "writer {writer}: a draining 503 has Retry-After"
                );
                out.refused = Some(batch);
                return out;
            }
            other => panic!("writer {writer}: unexpected {other}: {body}"),
        }
    }
    out
}

#[tokio::test]
async fn sigterm_under_load_finishes_what_started_refuses_the_rest_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = ChildGateway::start(&data, &[]).await;
    let http = reqwest::Client::new();
    let s = Session::fresh();
    let base = s.entries(&gw.base_url);
    let writer_url = |w: usize| format!("{base}?subpath=writer-{w}");

    // 64 writers appending as fast as they can, and four slow uploads that
    // are half sent when the signal comes.
    let writers: Vec<_> = (0..64)
        .map(|w| tokio::spawn(write_until_refused(http.clone(), writer_url(w), w)))
        .collect();
    let mut senders = Vec::new();
    let mut slow = Vec::new();
    for i in 0..4 {
        let first = format!("{{\"entries\":[{{\"slow\":{i},");
        let (tx, answer) = half_sent(&http, &format!("{base}?subpath=slow-{i}"), first).await;
        senders.push(tx);
        slow.push(answer);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    gw.signal("TERM");
    let signalled = std::time::Instant::now();
    // Readiness falls at once.
    let probe = reqwest::Client::new();
    let ready_url = format!("{}/readyz", gw.base_url);
    let mut fell = None;
    while signalled.elapsed() < Duration::from_secs(5) {
        match probe.get(&ready_url).send().await {
            Ok(r) if r.status().as_u16() == 503 => {
                fell = Some(signalled.elapsed());
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            // The listener closed: readiness fell with it.
            Err(_) => {
                fell = Some(signalled.elapsed());
                break;
            }
        }
    }
    let fell = fell.expect("/readyz never answered 503 after SIGTERM");
    assert!(fell < Duration::from_secs(1), "/readyz fell after {fell:?}");

    // The slow uploads started before the signal: finished and acknowledged.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for tx in senders {
        tx.send(Ok(bytes::Bytes::from_static(b"\"end\":true}]}")))
            .await
            .unwrap();
    }
    for (i, w) in slow.into_iter().enumerate() {
        let (status, body) = w.await.unwrap();
        assert_eq!(
            status, 200,
            "slow upload {i} started before the signal: {body}"
        );
    }
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(w.await.unwrap());
    }
    let exit = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(40)))
        .await
        .unwrap()
        .expect("exited within the drain timeout");
    assert_eq!(exit.code(), Some(0), "a complete drain exits 0");
    let acked: usize = outcomes.iter().map(|o| o.acked.len()).sum();
    assert!(
        acked >= 64,
        "the writers were writing when the signal came: {acked}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.refused.is_some() || o.unanswered.is_some()),
        "every writer ended refused or unanswered"
    );

    // Every acknowledged batch exactly once and in order; the refused ones
    // absent; an unanswered one wholly there or wholly not.
    let gw = ChildGateway::start(&data, &[]).await;
    let base = s.entries(&gw.base_url);
    for (w, o) in outcomes.iter().enumerate() {
        let (status, entries) = load(&http, &format!("{base}?subpath=writer-{w}")).await;
        let acked: Vec<serde_json::Value> = o
            .acked
            .iter()
            .flat_map(|b| b.as_array().unwrap().clone())
            .collect();
        if acked.is_empty() && o.unanswered.is_none() {
            assert_eq!(status, 404, "writer {w}: nothing stored");
            continue;
        }
        assert_eq!(status, 200, "writer {w}");
        match (&o.unanswered, entries.len() == acked.len()) {
            (_, true) => assert_eq!(entries, acked, "writer {w}: the acknowledged batches"),
            (Some(batch), false) => {
                let mut with = acked.clone();
                with.extend(batch.as_array().unwrap().iter().cloned());
                assert_eq!(entries, with, "writer {w}: the unanswered batch wholly stored");
            }
            (None, false) => panic!(
                "writer {w}: {} entries stored, {} acknowledged, none unanswered (a refused batch was stored?)",
                entries.len(),
                acked.len()
            ),
        }
    }
    for i in 0..4 {
        let (status, entries) = load(&http, &format!("{base}?subpath=slow-{i}")).await;
        assert_eq!(
            (status, entries),
            (200, vec![json!({"slow": i, "end": true})])
        );
    }
    gw.kill();
}

/// Starts an upload that sends half its body and then stalls (until the
/// returned sender is dropped).
async fn stalled_upload(url: &str) -> BodySender {
    let first = "{\"entries\":[{\"stalled\":".to_string();
    let (tx, _answer) = half_sent(&reqwest::Client::new(), url, first).await;
    // Let the request reach the handler.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx
}

#[tokio::test]
async fn a_stalled_upload_cannot_hold_the_drain_past_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = ChildGateway::start(&data, &[("TG_DRAIN_TIMEOUT_SECS", "2")]).await;
    let s = Session::fresh();
    let _stalled = stalled_upload(&s.entries(&gw.base_url)).await;
    let log = gw.log.clone();
    gw.signal("TERM");
    let signalled = std::time::Instant::now();
    let exit = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("the drain timeout ends the process");
    let took = signalled.elapsed();
    assert_eq!(exit.code(), Some(1), "a drain that ran out exits 1");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "waited the drain timeout, no more: {took:?}"
    );
    let stderr = std::fs::read_to_string(log).unwrap();
    assert!(
        stderr.contains(
            "the drain timeout (2 s) ran out with 1 request(s) still in flight: POST /v1/tasks/"
        ),
        "says what was in flight: {stderr}"
    );
}

#[tokio::test]
async fn a_second_signal_exits_at_once_with_status_130() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = ChildGateway::start(&data, &[("TG_DRAIN_TIMEOUT_SECS", "20")]).await;
    let s = Session::fresh();
    let _stalled = stalled_upload(&s.entries(&gw.base_url)).await;
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.signal("INT");
    let exit = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("a second signal ends the process at once");
    assert_eq!(exit.code(), Some(130));
}

#[tokio::test]
async fn the_prestop_wait_refuses_new_requests_then_closes_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [
        ("TG_DRAIN_PRESTOP_SECS", "2"),
        ("TG_DRAIN_TIMEOUT_SECS", "10"),
    ];
    let gw = ChildGateway::start(&data, &env).await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new connection during the pre-stop wait: answered, and refused.
    let fresh = reqwest::Client::new();
    let resp = fresh
        .post(&url)
        .json(&json!({"entries": [{"after": "signal"}]}))
        .send()
        .await
        .expect("the listener is still open");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "draining", "{body}");
    let ready = fresh
        .get(format!("{}/readyz", gw.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let alive = fresh
        .get(format!("{}/healthz", gw.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        alive.status().as_u16(),
        200,
        "the process is alive while it drains"
    );

    // Then the listener closes and the process exits 0.
    let base_url = gw.base_url.clone();
    let exit = tokio::task::spawn_blocking(move || gw.wait_exit(Duration::from_secs(20)))
        .await
        .unwrap()
        .expect("exits after the pre-stop wait");
    assert_eq!(exit.code(), Some(0));
    assert!(
        reqwest::Client::new()
            .get(format!("{base_url}/healthz"))
            .send()
            .await
            .is_err(),
        "nothing listens any more"
    );
    // The refused append wrote nothing.
    let gw = ChildGateway::start(&data, &[]).await;
    let (status, _) = load(&reqwest::Client::new(), &s.entries(&gw.base_url)).await;
    assert_eq!(
        status, 404,
        "the append refused while draining stored nothing"
    );
    gw.kill();
}
