//! Behaviours the README promises, each pinned by a test: fencing on every
//! write of a task, the real head in `x-head-seq`, summaries (their mtime,
//! on subkeys, when absent) and what an `Idempotency-Key` covers.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{embedded_ports, fresh_id, load, storage_fingerprint, Session, TestGateway};
use transcript_gateway::config::Config;

/// One request with optional `X-Writer-Epoch`; status and body.
async fn send(
    gw: &TestGateway,
    method: Method,
    url: &str,
    epoch: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = gw.http.request(method, url);
    if let Some(e) = epoch {
        req = req.header("x-writer-epoch", e);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Every mutating route of one task, as (what, method, url, body).
fn writes(gw: &TestGateway, s: &Session) -> Vec<(&'static str, Method, String, Option<Value>)> {
    let session = s.session(&gw.base_url);
    vec![
        (
            "append",
            Method::POST,
            s.entries(&gw.base_url),
            Some(json!({"entries": [{"type": "late"}]})),
        ),
        (
            "subkey append",
            Method::POST,
            format!("{}?subpath=subagents/a", s.entries(&gw.base_url)),
            Some(json!({"entries": [{"type": "late"}]})),
        ),
        (
            "summary",
            Method::PUT,
            format!("{session}/summary"),
            Some(json!({"data": {"t": "late"}, "expected_version": 1})),
        ),
        ("delete", Method::DELETE, session.clone(), None),
        (
            "subkey delete",
            Method::DELETE,
            format!("{session}?subpath=subagents/a"),
            None,
        ),
        (
            "binding",
            Method::PUT,
            gw.url(&format!("/v1/tasks/{}/binding", s.task)),
            Some(json!({"claude_session_id": "late", "project_key": s.project, "cwd": "/w"})),
        ),
    ]
}

#[tokio::test]
async fn every_write_of_a_leased_task_needs_the_current_epoch_and_others_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, Config::default()).await;
    let s = Session::fresh();
    let lease = gw.url(&format!("/v1/tasks/{}/lease", s.task));
    // Before any lease, writes need no epoch (and epoch 0 is the current one).
    let (status, _) = send(
        &gw,
        Method::POST,
        &format!("{}?subpath=subagents/a", s.entries(&gw.base_url)),
        None,
        Some(json!({"entries": [{"n": 1}]})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &gw,
        Method::POST,
        &s.entries(&gw.base_url),
        Some("0"),
        Some(json!({"entries": [{"n": 1}], "summary": {"data": {"t": 1}, "expected_version": 0}})),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        send(&gw, Method::POST, &lease, None, None).await;
    }
    // The task's epoch is 2 now.
    let before = storage_fingerprint(dir.path());
    for (epoch, code, message) in [
        (
            Some("1"),
            "stale_writer",
            "older than the task's current epoch 2",
        ),
        (Some("99"), "unknown_epoch", "was never issued"),
        (None, "epoch_required", "send X-Writer-Epoch"),
    ] {
        for (what, method, url, body) in writes(&gw, &s) {
            let (status, got) = send(&gw, method, &url, epoch, body).await;
            assert_eq!(
                (status.as_u16(), got["error"]["code"].as_str()),
                (409, Some(code)),
                "{what} with epoch {epoch:?}: {got}"
            );
            assert!(
                got["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(message),
                "{what}: {got}"
            );
        }
    }
    assert_eq!(
        storage_fingerprint(dir.path()),
        before,
        "a fenced write changed stored data"
    );
    // The current epoch writes; a lease itself is never fenced.
    for (what, method, url, body) in writes(&gw, &s) {
        let (status, got) = send(&gw, method, &url, Some("2"), body).await;
        assert!(status.is_success(), "{what} with the current epoch: {got}");
    }
    let (status, got) = send(&gw, Method::POST, &lease, None, None).await;
    assert_eq!(
        (status.as_u16(), got["data"]["epoch"].as_u64()),
        (200, Some(3))
    );
    gw.stop().await;
}

#[tokio::test]
async fn x_head_seq_is_the_transcripts_head_whatever_after_seq_says() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    for i in 0..2 {
        send(
            &gw,
            Method::POST,
            &url,
            None,
            Some(json!({"entries": [{"i": i}]})),
        )
        .await;
    }
    for (after, head, entries) in [
        (None, "2", 2),
        (Some(1), "2", 1),
        (Some(2), "2", 0),
        (Some(5), "2", 0),
    ] {
        let target = match after {
            Some(a) => format!("{url}?after_seq={a}"),
            None => url.clone(),
        };
        let resp = gw.http.get(&target).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-head-seq"], head, "after_seq={after:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["data"]["entries"].as_array().unwrap().len(), entries);
    }
    gw.stop().await;
}

#[tokio::test]
async fn summaries_have_a_storage_write_time_are_dropped_on_subkeys_and_are_404_when_absent() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    let summary_url = format!("{}/summary", s.session(&gw.base_url));
    // Absent: no session at all, then a session without a summary.
    for step in ["no session", "no summary"] {
        let (status, got) = send(&gw, Method::GET, &summary_url, None, None).await;
        assert_eq!(
            (status.as_u16(), got["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{step}: {got}"
        );
        send(
            &gw,
            Method::POST,
            &url,
            None,
            Some(json!({"entries": [{"n": 0}]})),
        )
        .await;
    }
    // A summary sent with a subkey append is dropped; the entries are stored.
    let (status, got) = send(
        &gw,
        Method::POST,
        &format!("{url}?subpath=subagents/a"),
        None,
        Some(json!({"entries": [{"sub": 1}], "summary": {"data": {"t": "x"}, "expected_version": 0}})),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["data"]["count"], 1);
    assert_eq!(got["data"]["summary"]["applied"], false);
    assert!(got["data"]["summary"]["note"]
        .as_str()
        .unwrap()
        .contains("a subkey has no summary"));
    assert_eq!(
        load(&gw.http, &format!("{url}?subpath=subagents/a"))
            .await
            .1,
        vec![json!({"sub": 1})]
    );
    assert_eq!(
        send(&gw, Method::GET, &summary_url, None, None).await.0,
        404
    );

    // Stored with an append: the append's mtime. Stored by PUT: when stored.
    let (_, appended) = send(
        &gw,
        Method::POST,
        &url,
        None,
        Some(json!({"entries": [{"n": 1}], "summary": {"data": {"t": 1}, "expected_version": 0}})),
    )
    .await;
    let append_mtime = appended["data"]["mtime"].as_u64().unwrap();
    let (_, got) = send(&gw, Method::GET, &summary_url, None, None).await;
    assert_eq!(got["data"]["mtime"].as_u64(), Some(append_mtime));
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let wall_before = transcript_gateway::domain::clock::now_ms();
    let (status, put) = send(
        &gw,
        Method::PUT,
        &summary_url,
        None,
        Some(json!({"data": {"t": 2}, "expected_version": 1})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), put["data"]["version"].as_u64()),
        (200, Some(2))
    );
    let (_, got) = send(&gw, Method::GET, &summary_url, None, None).await;
    let put_mtime = got["data"]["mtime"].as_u64().unwrap();
    assert!(
        put_mtime >= wall_before && put_mtime > append_mtime,
        "a PUT summary's mtime is when it was stored: {put_mtime} vs append {append_mtime}, wall {wall_before}"
    );
    let list: Value = gw
        .http
        .get(format!("{}?summaries=true", s.sessions(&gw.base_url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"]["sessions"][0]["mtime"].as_u64(),
        Some(put_mtime)
    );

    // After a delete the summary is absent again, and version 0 addresses it.
    assert_eq!(
        send(&gw, Method::DELETE, &s.session(&gw.base_url), None, None)
            .await
            .0,
        204
    );
    assert_eq!(
        send(&gw, Method::GET, &summary_url, None, None).await.0,
        404
    );
    let (status, got) = send(
        &gw,
        Method::PUT,
        &summary_url,
        None,
        Some(json!({"data": {"t": "stale"}, "expected_version": 2})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), got["error"]["code"].as_str()),
        (409, Some("summary_conflict")),
        "an old version never matches after a delete"
    );
    let (status, _) = send(
        &gw,
        Method::PUT,
        &summary_url,
        None,
        Some(json!({"data": {"t": "fresh"}, "expected_version": 0})),
    )
    .await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_covers_the_task_the_summary_and_the_meaning_not_the_whitespace() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    let post = |url: String, key: &'static str, body: &'static str| {
        let http = gw.http.clone();
        async move {
            let resp = http
                .post(url)
                .header("idempotency-key", key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = post(url.clone(), "k1", r#"{"entries":[{"a":1,"b":[1,2]}]}"#).await;
    assert_eq!(status, 200);
    // The same meaning with other whitespace replays the first answer.
    let (status, again) = post(
        url.clone(),
        "k1",
        "{ \"entries\" : [ {\"a\" : 1, \"b\": [1, 2]} ] }",
    )
    .await;
    assert_eq!((status, &again), (200, &first));
    // Another body, another session of the task, or another summary: 409.
    let other = Session {
        session: fresh_id("sess"),
        ..s.clone()
    };
    for (what, target, body) in [
        (
            "other entries",
            url.clone(),
            r#"{"entries":[{"a":2,"b":[1,2]}]}"#,
        ),
        (
            "another session",
            other.entries(&gw.base_url),
            r#"{"entries":[{"a":1,"b":[1,2]}]}"#,
        ),
    ] {
        let (status, got) = post(target, "k1", body).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (409, Some("idempotency_conflict")),
            "{what}: {got}"
        );
        assert!(got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("in this task"));
    }
    let with_summary = r#"{"entries":[{"x":1}],"summary":{"data":{"t":1},"expected_version":0}}"#;
    let (status, _) = post(url.clone(), "k2", with_summary).await;
    assert_eq!(status, 200);
    let (status, got) = post(
        url.clone(),
        "k2",
        r#"{"entries":[{"x":1}],"summary":{"data":{"t":2},"expected_version":0}}"#,
    )
    .await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (409, Some("idempotency_conflict")),
        "a different summary is a different request"
    );
    let (status, _) = post(url.clone(), "k2", with_summary).await;
    assert_eq!(status, 200);
    assert_eq!(
        load(&gw.http, &url).await.1,
        vec![json!({"a": 1, "b": [1, 2]}), json!({"x": 1})],
        "each request written once"
    );
    assert_eq!(load(&gw.http, &other.entries(&gw.base_url)).await.0, 404);
    gw.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_replayed_for_its_retention_then_forgotten_on_every_catalog() {
    use std::sync::Arc;
    use transcript_gateway::domain::clock::ManualClock;
    use transcript_gateway::engine::{AppendRequest, EngineConfig, IDEMPOTENCY_RETENTION};

    let test = "an_idempotency_key_is_replayed_for_its_retention_then_forgotten_on_every_catalog";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in crate::common::test_stores(test, dir.path()).await {
        let clock = Arc::new(ManualClock::new(transcript_gateway::domain::clock::now_ms()));
        let engine = transcript_gateway::engine::Engine::new(
            objects,
            catalog,
            EngineConfig {
                clock: clock.clone(),
                ..EngineConfig::default()
            },
        );
        let key = crate::common::fresh_key();
        let append = |n: u64| AppendRequest {
            key: key.clone(),
            entries: crate::common::raw_entries(&[json!({"n": n})]),
            idempotency_key: Some("retried".into()),
            summary: None,
            writer_epoch: None,
        };
        let first = engine.append(append(1)).await.unwrap();
        // Just before the retention ends: the first answer, even for another body.
        clock.advance(IDEMPOTENCY_RETENTION - Duration::from_millis(1));
        let replayed = engine.append(append(1)).await.unwrap();
        assert_eq!(replayed, first, "{backend}: replayed within the retention");
        let conflict = engine.append(append(2)).await.unwrap_err();
        assert_eq!(
            conflict.code().as_str(),
            "idempotency_conflict",
            "{backend}: {conflict}"
        );
        // At the end of the retention the key is forgotten: a new append.
        clock.advance(Duration::from_millis(1));
        let fresh = engine.append(append(2)).await.unwrap();
        assert_eq!(fresh.seq.0, first.seq.0 + 1, "{backend}: stored anew");
        // And remembered again, from now on.
        let again = engine.append(append(3)).await.unwrap_err();
        assert_eq!(again.code().as_str(), "idempotency_conflict", "{backend}");
        let entries = crate::common::engine_load(&engine, &key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(entries, vec![json!({"n": 1}), json!({"n": 2})], "{backend}");
    }
}
