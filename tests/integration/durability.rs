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
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
        let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
        let req = http
            .post(format!("{url}?subpath=w{i}"))
            .header("content-type", "application/json")
            .body(body);
        writers.push(tokio::spawn(async move {
            let resp = req.send().await.expect("request");
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        }));
        tx.send(Ok(bytes::Bytes::from(format!(
            "{{\"entries\":[{{\"w\":{i},"
        ))))
        .await
        .unwrap();
        senders.push(tx);
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

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
