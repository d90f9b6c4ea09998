//! The HTTP contract on the embedded backend: round trips, idempotency,
//! paging, deletion and summaries. Every validation rule is in the hostile
//! corpus (`hostile.rs`).

use serde_json::{json, Value};
use transcript_gateway::config::Config;

use crate::common::{append, embedded_ports, fresh_id, load, Session, TestGateway};

#[tokio::test]
async fn appended_entries_load_back_deep_equal_and_in_order() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let first = json!([
        {"type": "user", "uuid": "u-1", "message": {"content": "héllo \"quoted\" \n newline ☃"}},
        {"type": "assistant", "n": 12345678901234567890u64, "f": 0.1, "neg": -3e-7, "nested": {"a": [1, [2, [3, {}]]], "b": null, "t": true}}
    ]);
    let second = json!([{"type": "summary", "empty": "", "list": []}]);
    let (status, body) = append(&gw.http, &s.entries(&gw.base_url), first.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["seq"], 1);
    assert_eq!(body["data"]["count"], 2);
    let (status, body2) = append(&gw.http, &s.entries(&gw.base_url), second.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body2["data"]["seq"], 2);
    assert!(
        body2["data"]["mtime"].as_u64() > body["data"]["mtime"].as_u64(),
        "mtime must increase"
    );
    let (status, entries) = load(&gw.http, &s.entries(&gw.base_url)).await;
    assert_eq!(status, 200);
    let mut expected = first.as_array().unwrap().clone();
    expected.extend(second.as_array().unwrap().iter().cloned());
    assert_eq!(entries, expected);
    gw.stop().await;
}

#[tokio::test]
async fn pretty_printed_entries_are_stored_one_per_line_and_load_equal() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let raw = "{\"entries\": [\n  {\n    \"a\": \"x y\",\n    \"b\": [1,\n 2]\n  }\n]}";
    let resp = gw
        .http
        .post(s.entries(&gw.base_url))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (_, entries) = load(&gw.http, &s.entries(&gw.base_url)).await;
    assert_eq!(entries, vec![json!({"a": "x y", "b": [1, 2]})]);
    gw.stop().await;
}

#[tokio::test]
async fn mtime_strictly_increases_across_rapid_appends() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let mut last = 0;
    for i in 0..30 {
        let (_, body) = append(&gw.http, &s.entries(&gw.base_url), json!([{"i": i}])).await;
        let mtime = body["data"]["mtime"].as_u64().unwrap();
        assert!(mtime > last, "mtime {mtime} after {last}");
        last = mtime;
    }
    let list: Value = gw
        .http
        .get(s.sessions(&gw.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["sessions"][0]["mtime"].as_u64().unwrap(), last);
    gw.stop().await;
}

async fn post_with_key(gw: &TestGateway, url: &str, key: &str, entries: Value) -> (u16, Value) {
    let resp = gw
        .http
        .post(url)
        .header("idempotency-key", key)
        .json(&json!({ "entries": entries }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn retried_append_with_same_idempotency_key_writes_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Session::fresh();
    let key = fresh_id("idem");
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, Config::default()).await;
    let url = s.entries(&gw.base_url);
    let (st1, first) = post_with_key(&gw, &url, &key, json!([{"a": 1}])).await;
    assert_eq!(st1, 200);
    let (st2, replay) = post_with_key(&gw, &url, &key, json!([{"a": 1}])).await;
    assert_eq!(st2, 200);
    assert_eq!(replay, first, "a replay returns exactly the first answer");
    let (st3, conflict) = post_with_key(&gw, &url, &key, json!([{"a": 2}])).await;
    assert_eq!(st3, 409);
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    gw.stop().await;

    // Across a restart over the same data directory too.
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, Config::default()).await;
    let url = s.entries(&gw.base_url);
    let (st4, again) = post_with_key(&gw, &url, &key, json!([{"a": 1}])).await;
    assert_eq!(st4, 200);
    assert_eq!(again, first);
    let (_, entries) = load(&gw.http, &url).await;
    assert_eq!(entries, vec![json!({"a": 1})], "written exactly once");
    gw.stop().await;
}

#[tokio::test]
async fn after_seq_returns_only_later_batches() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    for i in 1..=4 {
        append(
            &gw.http,
            &url,
            json!([{"batch": i, "x": 0}, {"batch": i, "x": 1}]),
        )
        .await;
    }
    let (status, entries) = load(&gw.http, &format!("{url}?after_seq=2")).await;
    assert_eq!(status, 200);
    let batches: Vec<_> = entries
        .iter()
        .map(|e| e["batch"].as_u64().unwrap())
        .collect();
    assert_eq!(batches, vec![3, 3, 4, 4]);
    for at_or_past in [4, 5, 1000] {
        let (status, entries) = load(&gw.http, &format!("{url}?after_seq={at_or_past}")).await;
        assert_eq!((status, entries.len()), (200, 0), "after_seq={at_or_past}");
    }
    let resp = gw
        .http
        .get(format!("{url}?after_seq=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-head-seq"], "4");
    let (status, _) = load(
        &gw.http,
        &format!("{}?after_seq=1", Session::fresh().entries(&gw.base_url)),
    )
    .await;
    assert_eq!(
        status, 404,
        "after_seq on a key that never existed is still 404"
    );
    gw.stop().await;
}

#[tokio::test]
async fn unknown_and_deleted_transcripts_are_not_found() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let resp = gw.http.get(s.entries(&gw.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let header_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["request_id"], header_id);
    append(&gw.http, &s.entries(&gw.base_url), json!([{"a": 1}])).await;
    let del = gw
        .http
        .delete(s.session(&gw.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(load(&gw.http, &s.entries(&gw.base_url)).await.0, 404);
    let again = gw
        .http
        .delete(s.session(&gw.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204, "deleting what is absent is 204 too");
    // A deleted key starts again from the beginning.
    let (_, body) = append(&gw.http, &s.entries(&gw.base_url), json!([{"b": 2}])).await;
    assert_eq!(body["data"]["seq"], 1);
    assert_eq!(
        load(&gw.http, &s.entries(&gw.base_url)).await.1,
        vec![json!({"b": 2})]
    );
    gw.stop().await;
}

#[tokio::test]
async fn deleting_a_main_key_cascades_and_a_subkey_delete_is_exact() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let base = s.entries(&gw.base_url);
    append(&gw.http, &base, json!([{"main": 1}])).await;
    for sub in [
        "subagents/agent-1",
        "subagents/agent-2",
        "subagents/agent-1/nested",
    ] {
        let (st, _) = append(
            &gw.http,
            &format!("{base}?subpath={sub}"),
            json!([{"sub": sub}]),
        )
        .await;
        assert_eq!(st, 200);
    }
    let subkeys: Value = gw
        .http
        .get(format!("{}/subkeys", s.session(&gw.base_url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        subkeys["data"]["subkeys"],
        json!([
            "subagents/agent-1",
            "subagents/agent-1/nested",
            "subagents/agent-2"
        ])
    );
    // Deleting one subkey leaves its nested sibling and the main key alone.
    let del = gw
        .http
        .delete(format!(
            "{}?subpath=subagents/agent-1",
            s.session(&gw.base_url)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(
        load(&gw.http, &format!("{base}?subpath=subagents/agent-1"))
            .await
            .0,
        404
    );
    assert_eq!(
        load(
            &gw.http,
            &format!("{base}?subpath=subagents/agent-1/nested")
        )
        .await
        .1
        .len(),
        1
    );
    assert_eq!(load(&gw.http, &base).await.1.len(), 1);
    // Deleting the main key takes every subkey with it.
    gw.http
        .delete(s.session(&gw.base_url))
        .send()
        .await
        .unwrap();
    for sub in [
        "",
        "?subpath=subagents/agent-2",
        "?subpath=subagents/agent-1/nested",
    ] {
        assert_eq!(
            load(&gw.http, &format!("{base}{sub}")).await.0,
            404,
            "{sub}"
        );
    }
    let subkeys: Value = gw
        .http
        .get(format!("{}/subkeys", s.session(&gw.base_url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(subkeys["data"]["subkeys"], json!([]));
    gw.stop().await;
}

#[tokio::test]
async fn session_lists_page_with_next_token_and_hold_main_keys_only() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    for i in 0..5 {
        let sess = Session {
            session: format!("s{i}"),
            ..s.clone()
        };
        append(&gw.http, &sess.entries(&gw.base_url), json!([{"i": i}])).await;
    }
    let only_sub = Session {
        session: "only-sub".into(),
        ..s.clone()
    };
    append(
        &gw.http,
        &format!("{}?subpath=a", only_sub.entries(&gw.base_url)),
        json!([{"x": 1}]),
    )
    .await;
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("{}?limit=2", s.sessions(&gw.base_url));
        if let Some(t) = &token {
            url.push_str(&format!("&next_token={t}"));
        }
        let page: Value = gw.http.get(url).send().await.unwrap().json().await.unwrap();
        for item in page["data"]["sessions"].as_array().unwrap() {
            assert!(item.get("data").is_none(), "no summaries unless asked");
            seen.push(item["session_id"].as_str().unwrap().to_string());
        }
        match page["next_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => {
                assert!(
                    page.as_object().unwrap().contains_key("next_token"),
                    "next_token is null, not absent"
                );
                break;
            }
        }
    }
    assert_eq!(seen, vec!["s0", "s1", "s2", "s3", "s4"]);
    gw.stop().await;
}

#[tokio::test]
async fn summaries_are_compare_and_set_and_never_block_an_append() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    let post = |summary: Value| {
        let http = gw.http.clone();
        let url = url.clone();
        async move {
            let r = http
                .post(&url)
                .json(&json!({"entries": [{"e": 1}], "summary": summary}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, first) = post(json!({"data": {"title": "one"}, "expected_version": 0})).await;
    assert_eq!(st, 200);
    assert_eq!(
        first["data"]["summary"],
        json!({"applied": true, "version": 1})
    );
    let (st, stale) = post(json!({"data": {"title": "stale"}, "expected_version": 0})).await;
    assert_eq!(st, 200, "a stale summary never rejects the entry");
    assert_eq!(
        stale["data"]["summary"],
        json!({"applied": false, "version": 1})
    );
    assert_eq!(load(&gw.http, &url).await.1.len(), 2);
    let summary_url = format!("{}/summary", s.session(&gw.base_url));
    let current: Value = gw
        .http
        .get(&summary_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["data"]["version"], 1);
    assert_eq!(current["data"]["data"], json!({"title": "one"}));
    let put = gw
        .http
        .put(&summary_url)
        .json(&json!({"data": {"title": "two"}, "expected_version": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 409);
    assert_eq!(
        put.json::<Value>().await.unwrap()["error"]["code"],
        "summary_conflict"
    );
    let put = gw
        .http
        .put(&summary_url)
        .json(&json!({"data": {"title": "two"}, "expected_version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let list: Value = gw
        .http
        .get(format!("{}?summaries=true", s.sessions(&gw.base_url)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["sessions"][0]["data"], json!({"title": "two"}));
    assert_eq!(
        list["data"]["sessions"][0]["session_id"],
        s.session.as_str()
    );
    gw.stop().await;
}

#[tokio::test]
async fn framework_errors_use_the_envelope() {
    let gw = TestGateway::embedded().await;
    let s = Session::fresh();
    for (method, path, status, code) in [
        ("GET", "/nope".to_string(), 404, "no_such_route"),
        (
            "PUT",
            format!(
                "/v1/tasks/{}/projects/{}/sessions/{}/entries",
                s.task, s.project, s.session
            ),
            405,
            "method_not_allowed",
        ),
        ("POST", "/healthz".to_string(), 405, "method_not_allowed"),
    ] {
        let resp = gw
            .http
            .request(method.parse().unwrap(), gw.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
        assert_eq!(body["error"]["request_id"], id.as_str());
    }
    gw.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let gw = TestGateway::embedded().await;
    for path in ["/healthz", "/readyz"] {
        let resp = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().contains_key("x-request-id"));
    }
    append(
        &gw.http,
        &Session::fresh().entries(&gw.base_url),
        json!([{"a": 1}]),
    )
    .await;
    let text = gw.metrics().await;
    let appends: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tg_appends_total "))
        .and_then(|v| v.parse().ok())
        .expect("tg_appends_total");
    assert!(appends >= 1);
    gw.stop().await;
}

#[tokio::test]
async fn requests_beyond_the_in_flight_limit_are_refused_with_retry_after() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = Config {
        max_in_flight: 1,
        ..Config::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, config).await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    // One append whose body is still uploading holds the only slot.
    let addr = gw.base_url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"entries":[{"type":"slow"}]}"#;
    let path = url.trim_start_matches(&gw.base_url);
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let refused = gw.http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let envelope: Value = refused.json().await.unwrap();
    assert_eq!(envelope["error"]["code"], "overloaded");
    assert!(envelope["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit of requests"));

    // The held request completes and frees the slot.
    slow.write_all(&body[5..]).await.unwrap();
    let mut answer = Vec::new();
    slow.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let (status, entries) = load(&gw.http, &url).await;
    assert_eq!((status, entries), (200, vec![json!({"type": "slow"})]));
    gw.stop().await;
}
