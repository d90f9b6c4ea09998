//! The task export: every transcript of one task (main sessions and their
//! subkeys, compacted or not) as one gzip JSON Lines download, one line per
//! entry, each key's entries in order and in one block; admin scope only.

use std::io::Read as _;

use serde_json::{json, Value};
use transcript_gateway::engine::{Engine, EngineConfig};

use crate::common::{auth_config, fresh_id, mint, test_stores, TestGateway};

/// Appends `entries` to `url` with `token`.
async fn put(http: &reqwest::Client, url: &str, token: &str, entries: Value) {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "entries": entries }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// GETs the export of `task` with `token`: status, headers, body.
async fn export(
    gw: &TestGateway,
    task: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, bytes::Bytes) {
    let resp = gw
        .http
        .get(gw.url(&format!("/admin/v1/tasks/{task}/export")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap())
}

#[tokio::test]
async fn a_task_exports_every_transcript_as_gzip_json_lines_one_line_per_entry() {
    let test = "a_task_exports_every_transcript_as_gzip_json_lines_one_line_per_entry";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let config = EngineConfig {
            compaction_threshold: 0,
            ..EngineConfig::default()
        };
        let engine = Engine::new(objects, catalog, config);
        let gw = TestGateway::serve(engine.clone(), auth_config()).await;
        let (task, other) = (fresh_id("task"), fresh_id("task"));
        let writer = mint(&task, "transcripts:write");
        let base = |task: &str, session: &str| {
            gw.url(&format!(
                "/v1/tasks/{task}/projects/-workspace-x/sessions/{session}/entries"
            ))
        };
        let (s1, s2) = (fresh_id("sess"), fresh_id("sess"));

        // s1: three batches compacted into a snapshot, then two more parts;
        // a subkey of s1; s2 with one entry; another task's entry.
        for i in 0..3 {
            put(&gw.http, &base(&task, &s1), &writer, json!([{"s1": i}])).await;
        }
        engine
            .compact_task(&transcript_gateway::domain::TaskId::new(task.clone()).unwrap())
            .await
            .unwrap();
        for i in 3..5 {
            put(
                &gw.http,
                &base(&task, &s1),
                &writer,
                json!([{"s1": i}, {"s1": i, "b": 1}]),
            )
            .await;
        }
        let sub = format!("{}?subpath=subagents/agent-1", base(&task, &s1));
        put(&gw.http, &sub, &writer, json!([{"sub": 0}, {"sub": 1}])).await;
        put(&gw.http, &base(&task, &s2), &writer, json!([{"s2": 0}])).await;
        let other_writer = mint(&other, "transcripts:write");
        put(
            &gw.http,
            &base(&other, &s1),
            &other_writer,
            json!([{"other": 0}]),
        )
        .await;

        let (status, headers, body) = export(&gw, &task, &mint(&task, "admin")).await;
        assert_eq!(status, 200, "{backend}: {}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/gzip", "{backend}");
        assert_eq!(
            headers["content-disposition"],
            format!("attachment; filename={task}.jsonl.gz").as_str(),
            "{backend}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("a whole gzip stream");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();

        // Blocks of consecutive lines with the same key, in order.
        let mut blocks: Vec<(Value, Vec<Value>)> = Vec::new();
        for line in &lines {
            let key = line["key"].clone();
            match blocks.last_mut() {
                Some((k, entries)) if *k == key => entries.push(line["entry"].clone()),
                _ => blocks.push((key, vec![line["entry"].clone()])),
            }
        }
        let key = |session: &str, subpath: Option<&str>| {
            let mut k = json!({"project_key": "-workspace-x", "session_id": session});
            if let Some(sub) = subpath {
                k["subpath"] = json!(sub);
            }
            k
        };
        let s1_entries: Vec<Value> = (0..3)
            .map(|i| json!({"s1": i}))
            .chain((3..5).flat_map(|i| [json!({"s1": i}), json!({"s1": i, "b": 1})]))
            .collect();
        let mut expected = vec![
            (key(&s1, None), s1_entries),
            (
                key(&s1, Some("subagents/agent-1")),
                vec![json!({"sub": 0}), json!({"sub": 1})],
            ),
            (key(&s2, None), vec![json!({"s2": 0})]),
        ];
        expected.sort_by_key(|(k, _)| k.to_string());
        blocks.sort_by_key(|(k, _)| k.to_string());
        assert_eq!(
            blocks, expected,
            "{backend}: one block per key, every entry once and in order, nothing of another task"
        );
        assert_eq!(lines.len(), 10, "{backend}: one line per entry");

        // Each block is exactly what a load of its transcript answers.
        let reader = mint(&task, "transcripts:read");
        for (key, entries) in &blocks {
            let session = key["session_id"].as_str().unwrap();
            let mut url = base(&task, session);
            if let Some(sub) = key["subpath"].as_str() {
                url.push_str(&format!("?subpath={sub}"));
            }
            let resp = gw.http.get(&url).bearer_auth(&reader).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{backend}: load {key}");
            let loaded: Value = resp.json().await.unwrap();
            assert_eq!(
                &loaded["data"]["entries"],
                &Value::Array(entries.clone()),
                "{backend}: the export of {key} equals its load"
            );
        }

        // Admin scope only; a task with nothing to export is a 404.
        let (status, _, body) = export(&gw, &task, &writer).await;
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{backend}"
        );
        let empty = fresh_id("task");
        let (status, _, body) = export(&gw, &empty, &mint(&empty, "admin")).await;
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{backend}"
        );
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("holds no transcript"),
            "{backend}: {error}"
        );
        gw.stop().await;
    }
}
