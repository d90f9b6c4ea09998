//! The admin API's view of the fleet: tasks newest activity first with
//! their totals, one task in detail, fleet totals, and a task's compliance
//! erasure (receipt, digest, nothing left, idempotent, racing appends).

use std::time::Duration;

use serde_json::{json, Value};
use transcript_gateway::domain::TaskId;
use transcript_gateway::engine::{keys_digest, Engine, EngineConfig};

use crate::common::{auth_config, fresh_id, mint, test_stores, TestGateway};

const PROJECT: &str = "-workspace-admin";

fn entries_url(gw: &TestGateway, task: &str, session: &str, subpath: Option<&str>) -> String {
    let mut url = gw.url(&format!(
        "/v1/tasks/{task}/projects/{PROJECT}/sessions/{session}/entries"
    ));
    if let Some(sub) = subpath {
        url.push_str(&format!("?subpath={sub}"));
    }
    url
}

/// Appends `entries`, optionally with an idempotency key; status and body.
async fn put(
    gw: &TestGateway,
    url: &str,
    token: &str,
    entries: Value,
    key: Option<&str>,
) -> (u16, Value) {
    let mut req = gw
        .http
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "entries": entries }));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(gw: &TestGateway, path: &str, token: &str) -> (u16, Value) {
    let resp = gw
        .http
        .get(gw.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls the task listing until `check` holds for it (totals are stored
/// about a second after a change); panics with the last listing after 10 s.
async fn listing_until(gw: &TestGateway, token: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(gw, "/admin/v1/tasks", token).await;
        assert_eq!(status, 200, "{body}");
        if check(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listing never reached the expected state: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn task_ids(listing: &Value) -> Vec<String> {
    listing["data"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn tasks_are_listed_newest_first_with_totals_detail_and_fleet_stats() {
    let test = "tasks_are_listed_newest_first_with_totals_detail_and_fleet_stats";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let config = EngineConfig {
            compaction_threshold: 0,
            ..EngineConfig::default()
        };
        let engine = Engine::new(objects, catalog, config);
        let gw = TestGateway::serve(engine.clone(), auth_config()).await;
        let fleet = mint("*", "admin");
        let (older, newer) = (fresh_id("task"), fresh_id("task"));
        let (s1, s2) = (fresh_id("sess"), fresh_id("sess"));
        let w = mint(&older, "transcripts:write");

        // older: s1 with two batches (3 entries) and a compaction, a subkey
        // with one entry, s2 with one entry; a binding and a lease; a
        // client-reported failure.
        let url = entries_url(&gw, &older, &s1, None);
        assert_eq!(
            put(&gw, &url, &w, json!([{"a": 1}, {"a": 2}]), None)
                .await
                .0,
            200
        );
        assert_eq!(put(&gw, &url, &w, json!([{"a": 3}]), None).await.0, 200);
        engine
            .compact_task(&TaskId::new(older.clone()).unwrap())
            .await
            .unwrap();
        let sub = entries_url(&gw, &older, &s1, Some("subagents/agent-1"));
        assert_eq!(put(&gw, &sub, &w, json!([{"sub": 1}]), None).await.0, 200);
        let s2_url = entries_url(&gw, &older, &s2, None);
        assert_eq!(put(&gw, &s2_url, &w, json!([{"b": 1}]), None).await.0, 200);
        let bind = gw
            .http
            .put(gw.url(&format!("/v1/tasks/{older}/binding")))
            .bearer_auth(&w)
            .json(&json!({"claude_session_id": s1, "project_key": PROJECT, "cwd": "/workspace/admin"}))
            .send()
            .await
            .unwrap();
        assert!(bind.status().is_success(), "{backend}: bind");
        let lease = gw
            .http
            .post(gw.url(&format!("/v1/tasks/{older}/lease")))
            .bearer_auth(&w)
            .send()
            .await
            .unwrap();
        assert!(lease.status().is_success(), "{backend}: lease");
        let report = gw
            .http
            .post(gw.url(&format!("/v1/tasks/{older}/mirror-failures")))
            .bearer_auth(&w)
            .json(&json!({"error": "disk full on the worker"}))
            .send()
            .await
            .unwrap();
        assert!(report.status().is_success(), "{backend}: report");

        // Then newer, once older's totals are in.
        listing_until(&gw, &fleet, |l| task_ids(l) == [older.clone()]).await;
        let wn = mint(&newer, "transcripts:write");
        let newer_url = entries_url(&gw, &newer, &s1, None);
        assert_eq!(
            put(&gw, &newer_url, &wn, json!([{"n": 1}]), None).await.0,
            200
        );

        let listing = listing_until(&gw, &fleet, |l| task_ids(l).len() == 2).await;
        assert_eq!(
            task_ids(&listing),
            [newer.clone(), older.clone()],
            "{backend}: newest first"
        );
        let t = &listing["data"]["tasks"][1];
        assert_eq!(t["sessions"], 2, "{backend}: {t}");
        assert_eq!(t["subkeys"], 1, "{backend}: {t}");
        assert_eq!(t["parts"], 4, "{backend}: {t}");
        assert_eq!(t["entries"], 5, "{backend}: {t}");
        assert!(t["bytes"].as_u64().unwrap() > 0, "{backend}: {t}");
        assert!(t["last_append_ms"].as_u64().unwrap() > 0, "{backend}: {t}");
        assert_eq!(
            t["binding"]["claude_session_id"],
            s1.as_str(),
            "{backend}: {t}"
        );
        assert_eq!(t["epoch"], 1, "{backend}: {t}");
        assert_eq!(t["failures"], 1, "{backend}: {t}");
        assert_eq!(t["drift"], false, "{backend}: {t}");
        assert_eq!(listing["next_token"], Value::Null, "{backend}");

        // Paged one at a time: the same order, then the end.
        let (_, first) = get(&gw, "/admin/v1/tasks?limit=1", &fleet).await;
        assert_eq!(task_ids(&first), [newer.as_str()], "{backend}");
        let token = first["next_token"]
            .as_str()
            .expect("a next page")
            .to_string();
        let (_, second) = get(
            &gw,
            &format!("/admin/v1/tasks?limit=1&next_token={token}"),
            &fleet,
        )
        .await;
        assert_eq!(task_ids(&second), [older.as_str()], "{backend}");
        assert_eq!(second["next_token"], Value::Null, "{backend}");

        // A listing needs a token for every task; a bad token is refused.
        let (status, body) = get(&gw, "/admin/v1/tasks", &mint(&older, "admin")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("task_id '*'"),
            "{body}"
        );
        let (status, body) = get(&gw, "/admin/v1/tasks?next_token=bm9wZQ", &fleet).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("next_token"),
            "{body}"
        );

        // The task in detail, with a task-scoped admin token.
        let (status, detail) = get(
            &gw,
            &format!("/admin/v1/tasks/{older}"),
            &mint(&older, "admin"),
        )
        .await;
        assert_eq!(status, 200, "{backend}: {detail}");
        let d = &detail["data"];
        assert_eq!(d["epoch"], 1, "{backend}");
        assert_eq!(d["binding"]["project_key"], PROJECT, "{backend}");
        let transcripts = d["transcripts"].as_array().unwrap();
        assert_eq!(transcripts.len(), 3, "{backend}: {d}");
        let main = transcripts
            .iter()
            .find(|t| t["session_id"] == s1.as_str() && t.get("subpath").is_none())
            .expect("s1's main transcript");
        assert_eq!(
            (main["parts"].as_u64(), main["entries"].as_u64()),
            (Some(2), Some(3)),
            "{main}"
        );
        assert_eq!(main["compacted_through"], 2, "{backend}: {main}");
        assert!(transcripts
            .iter()
            .any(|t| t["subpath"] == "subagents/agent-1" && t["entries"] == 1));
        assert_eq!(d["failures"].as_array().unwrap().len(), 1, "{backend}: {d}");
        assert_eq!(d["failures"][0]["reason"], "client_reported", "{backend}");
        assert_eq!(d["drift"].as_array().unwrap().len(), 0, "{backend}");
        let (status, body) = get(
            &gw,
            &format!("/admin/v1/tasks/{}", fresh_id("task")),
            &fleet,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not known"),
            "{body}"
        );

        // Fleet totals.
        let (status, stats) = get(&gw, "/admin/v1/stats", &fleet).await;
        assert_eq!(status, 200, "{backend}: {stats}");
        let s = &stats["data"];
        assert_eq!(s["tasks"], 2, "{backend}: {s}");
        assert_eq!(s["sessions"], 3, "{backend}: {s}");
        assert_eq!(s["subkeys"], 1, "{backend}: {s}");
        assert_eq!(s["parts"], 5, "{backend}: {s}");
        assert_eq!(s["entries"], 6, "{backend}: {s}");
        assert_eq!(s["appends_last_hour"], 5, "{backend}: {s}");
        assert_eq!(s["failures_last_hour"], 1, "{backend}: {s}");
        gw.stop().await;
    }
}

/// Every object key under `task`'s directory, as the store names it.
async fn stored_keys(engine: &Engine, task: &str) -> Vec<(String, u64)> {
    use futures::TryStreamExt as _;
    let objects = engine.objects();
    let listed: Vec<_> = objects
        .list_all(&format!("{task}/"), None, true)
        .try_collect()
        .await
        .unwrap();
    listed
        .into_iter()
        .map(|l| (objects.stored_key(&l.key), l.size))
        .collect()
}

#[tokio::test]
async fn an_erasure_removes_every_object_and_row_with_a_receipt_and_is_idempotent() {
    let test = "an_erasure_removes_every_object_and_row_with_a_receipt_and_is_idempotent";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let config = EngineConfig {
            compaction_threshold: 0,
            ..EngineConfig::default()
        };
        let engine = Engine::new(objects, catalog, config);
        let gw = TestGateway::serve(engine.clone(), auth_config()).await;
        let (task, other) = (fresh_id("task"), fresh_id("task"));
        let session = fresh_id("sess");
        let w = mint(&task, "transcripts:write");
        let url = entries_url(&gw, &task, &session, None);
        for i in 0..3 {
            let key = format!("k{i}");
            assert_eq!(
                put(&gw, &url, &w, json!([{"i": i}]), Some(&key)).await.0,
                200
            );
        }
        engine
            .compact_task(&TaskId::new(task.clone()).unwrap())
            .await
            .unwrap();
        let sub = entries_url(&gw, &task, &session, Some("subagents/agent-1"));
        assert_eq!(put(&gw, &sub, &w, json!([{"sub": 1}]), None).await.0, 200);
        let bind = gw
            .http
            .put(gw.url(&format!("/v1/tasks/{task}/binding")))
            .bearer_auth(&w)
            .json(&json!({"claude_session_id": session, "project_key": PROJECT, "cwd": "/w"}))
            .send()
            .await
            .unwrap();
        assert!(bind.status().is_success());
        let wo = mint(&other, "transcripts:write");
        let other_url = entries_url(&gw, &other, &session, None);
        assert_eq!(
            put(&gw, &other_url, &wo, json!([{"other": 1}]), None)
                .await
                .0,
            200
        );

        let existing = stored_keys(&engine, &task).await;
        assert!(
            existing.len() >= 4,
            "{backend}: parts, snapshot and the subkey's part: {existing:?}"
        );
        let mut names: Vec<String> = existing.iter().map(|(k, _)| k.clone()).collect();
        names.sort();
        let bytes: u64 = existing.iter().map(|(_, s)| s).sum();

        let admin = mint(&task, "admin");
        let erase = || async {
            let resp = gw
                .http
                .delete(gw.url(&format!("/admin/v1/tasks/{task}")))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        };
        let (status, receipt) = erase().await;
        assert_eq!(status, 200, "{backend}: {receipt}");
        let r = &receipt["data"];
        assert_eq!(r["task_id"], task.as_str());
        assert_eq!(r["objects_removed"], names.len() as u64, "{backend}: {r}");
        assert_eq!(r["bytes_removed"], bytes, "{backend}: {r}");
        assert_eq!(r["digest"], keys_digest(&names).as_str(), "{backend}: {r}");
        // Two transcript records, three idempotency records, the task's item.
        assert_eq!(r["catalog_rows_removed"], 6, "{backend}: {r}");
        assert!(r["erased_ms"].as_u64().unwrap() > 0);

        // Nothing under the prefix, no row of any kind.
        assert!(stored_keys(&engine, &task).await.is_empty(), "{backend}");
        let t = TaskId::new(task.clone()).unwrap();
        let catalog = engine.catalog();
        assert!(catalog
            .list_task_sessions(&t, None, 10)
            .await
            .unwrap()
            .items
            .is_empty());
        assert!(catalog.get_task(&t).await.unwrap().is_none(), "{backend}");
        assert!(
            catalog.get_idempotency(&t, "k1").await.unwrap().is_none(),
            "{backend}"
        );
        let (status, _) = get(
            &gw,
            &format!("/v1/tasks/{task}/projects/{PROJECT}/sessions/{session}/entries"),
            &mint(&task, "transcripts:read"),
        )
        .await;
        assert_eq!(status, 404, "{backend}: the transcript is gone");
        // Another task is untouched.
        assert_eq!(stored_keys(&engine, &other).await.len(), 1, "{backend}");

        // Idempotent: a second erasure removes nothing.
        let (status, again) = erase().await;
        assert_eq!(status, 200, "{backend}: {again}");
        let a = &again["data"];
        assert_eq!(
            (
                a["objects_removed"].as_u64(),
                a["bytes_removed"].as_u64(),
                a["catalog_rows_removed"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "{a}"
        );
        assert_eq!(a["digest"], keys_digest(&[]).as_str());

        // A re-sent append is a new append, never answered from before.
        let (status, body) = put(&gw, &url, &w, json!([{"i": 1}]), Some("k1")).await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(
            body["data"]["seq"], 1,
            "{backend}: a fresh transcript: {body}"
        );
        gw.stop().await;
    }
}

#[tokio::test]
async fn an_append_through_an_instance_that_cached_the_erased_transcript_fails_and_leaves_nothing()
{
    let test =
        "an_append_through_an_instance_that_cached_the_erased_transcript_fails_and_leaves_nothing";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        // Two instances over the same stores.
        let a = Engine::new(objects.clone(), catalog.clone(), EngineConfig::default());
        let b = Engine::new(objects, catalog, EngineConfig::default());
        let ga = TestGateway::serve(a.clone(), auth_config()).await;
        let gb = TestGateway::serve(b.clone(), auth_config()).await;
        let task = fresh_id("task");
        let session = fresh_id("sess");
        let w = mint(&task, "transcripts:write");
        let url_b = entries_url(&gb, &task, &session, None);
        for i in 0..2 {
            assert_eq!(put(&gb, &url_b, &w, json!([{"i": i}]), None).await.0, 200);
        }
        // A erases; B still holds the transcript's head.
        let resp = ga
            .http
            .delete(ga.url(&format!("/admin/v1/tasks/{task}")))
            .bearer_auth(mint(&task, "admin"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{backend}");
        let (status, body) = put(&gb, &url_b, &w, json!([{"late": 1}]), None).await;
        assert_eq!(status, 409, "{backend}: {body}");
        assert_eq!(body["error"]["code"], "task_erased", "{backend}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("erased while this append was in flight"),
            "{body}"
        );
        assert!(
            stored_keys(&b, &task).await.is_empty(),
            "{backend}: the late part was removed"
        );
        // The next append starts a new transcript.
        let (status, body) = put(&gb, &url_b, &w, json!([{"new": 1}]), None).await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(body["data"]["seq"], 1, "{backend}: {body}");
        ga.stop().await;
        gb.stop().await;
    }
}

#[tokio::test]
async fn appends_racing_an_erasure_land_before_it_or_fail_and_what_stays_is_whole() {
    let test = "appends_racing_an_erasure_land_before_it_or_fail_and_what_stays_is_whole";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let a = Engine::new(objects.clone(), catalog.clone(), EngineConfig::default());
        let b = Engine::new(objects, catalog, EngineConfig::default());
        let ga = TestGateway::serve(a.clone(), auth_config()).await;
        let gb = TestGateway::serve(b.clone(), auth_config()).await;
        let task = fresh_id("task");
        let w = mint(&task, "transcripts:write");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

        // Four writers, two through each instance, each on its own session,
        // appending until the erasure has answered (and at most 400 times).
        let mut writers = Vec::new();
        for i in 0..4 {
            let gw_url = if i % 2 == 0 {
                ga.base_url.clone()
            } else {
                gb.base_url.clone()
            };
            let session = fresh_id("sess");
            let url =
                format!("{gw_url}/v1/tasks/{task}/projects/{PROJECT}/sessions/{session}/entries");
            let (w, stop) = (w.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut acked = Vec::new();
                for n in 0..400u64 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let resp = http
                        .post(&url)
                        .bearer_auth(&w)
                        .json(&json!({"entries": [{"n": n}]}))
                        .send()
                        .await
                        .unwrap();
                    let status = resp.status().as_u16();
                    let body: Value = resp.json().await.unwrap();
                    match status {
                        200 => acked.push(n),
                        // Refused by the erasure's fence or found its
                        // transcript erased under it (task_erased), or
                        // found the part it chains to gone (conflict).
                        409 => assert!(
                            matches!(
                                body["error"]["code"].as_str(),
                                Some("task_erased" | "conflict")
                            ),
                            "{body}"
                        ),
                        other => panic!("an append racing an erasure answered {other}: {body}"),
                    }
                }
                (url, acked)
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let resp = ga
            .http
            .delete(ga.url(&format!("/admin/v1/tasks/{task}")))
            .bearer_auth(mint(&task, "admin"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let receipt: Value = resp.json().await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(status, 200, "{backend}: {receipt}");
        assert!(
            receipt["data"]["objects_removed"].as_u64().unwrap() > 0,
            "{backend}: {receipt}"
        );

        let reader = mint(&task, "transcripts:read");
        for writer in writers {
            let (url, acked) = writer.await.unwrap();
            assert!(
                !acked.is_empty(),
                "{backend}: the writer got going before the erasure"
            );
            let resp = ga.http.get(&url).bearer_auth(&reader).send().await.unwrap();
            match resp.status().as_u16() {
                404 => {}
                200 => {
                    // What stays was appended after the erasure: a run of
                    // acknowledged appends ending with the last one, whole
                    // and in order (nothing chained onto erased parts).
                    let body: Value = resp.json().await.unwrap();
                    let loaded: Vec<u64> = body["data"]["entries"]
                        .as_array()
                        .expect("entries")
                        .iter()
                        .map(|e| e["n"].as_u64().expect("an appended entry"))
                        .collect();
                    let from = acked.iter().position(|n| Some(n) == loaded.first());
                    let from = from.unwrap_or_else(|| {
                        panic!("{backend}: {loaded:?} not acknowledged: {acked:?}")
                    });
                    assert_eq!(
                        loaded,
                        acked[from..],
                        "{backend}: the tail after the erasure, whole"
                    );
                }
                other => panic!(
                    "{backend}: load answered {other}: {}",
                    resp.text().await.unwrap()
                ),
            }
        }
        ga.stop().await;
        gb.stop().await;
    }
}

#[tokio::test]
async fn an_erasure_writes_one_audit_line_with_its_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let gw =
        crate::common::ChildGateway::start(&dir.path().join("data"), &[("TG_LOG", "info")]).await;
    let http = reqwest::Client::new();
    let task = fresh_id("task");
    let url = format!(
        "{}/v1/tasks/{task}/projects/{PROJECT}/sessions/{}/entries",
        gw.base_url,
        fresh_id("sess")
    );
    let resp = http
        .post(&url)
        .json(&json!({"entries": [{"a": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .delete(format!("{}/admin/v1/tasks/{task}", gw.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let receipt: Value = resp.json().await.unwrap();
    let log = gw.log.clone();
    assert!(gw.terminate().success());

    let text = std::fs::read_to_string(log).unwrap();
    let audits: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .collect();
    assert_eq!(audits.len(), 1, "one audit line: {text}");
    let line = &audits[0];
    assert_eq!(line["event"], "task_erased", "{line}");
    let r = &receipt["data"];
    for field in [
        "task_id",
        "digest",
        "objects_removed",
        "bytes_removed",
        "catalog_rows_removed",
    ] {
        assert_eq!(line[field], r[field], "{field} in {line}");
    }
}
