//! Entry-uuid dedup, as the SDK's contract asks: within one transcript an
//! entry whose string `uuid` was stored before is not stored again (the
//! first stays, in its place); entries without one always are. Holds for
//! overlapping batches, across compaction and a cold start, per subkey, and
//! for two gateway processes appending overlapping batches at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};
use transcript_gateway::domain::{Seq, SessionKey, Subpath};
use transcript_gateway::engine::{keys, CompactOptions, Engine, EngineConfig};
use transcript_gateway::metrics::METRICS;

use crate::common::{
    engine_append, engine_load, fresh_key, test_stores, AwsBackends, ChildGateway, Session,
};

fn e(uuid: &str) -> Value {
    json!({"type": "user", "uuid": uuid, "message": format!("m-{uuid}")})
}

fn plain(tag: &str) -> Value {
    json!({"type": "custom-title", "title": tag})
}

fn engine(
    objects: &std::sync::Arc<dyn transcript_gateway::backend::ObjectPort>,
    catalog: &std::sync::Arc<dyn transcript_gateway::backend::CatalogPort>,
) -> Engine {
    let config = EngineConfig {
        compaction_threshold: 0,
        ..EngineConfig::default()
    };
    Engine::new(objects.clone(), catalog.clone(), config)
}

async fn load(engine: &Engine, key: &SessionKey) -> Vec<Value> {
    engine_load(engine, key).await.unwrap().unwrap_or_default()
}

#[tokio::test]
async fn overlapping_batches_store_each_uuid_once_and_entries_without_one_always() {
    let test = "overlapping_batches_store_each_uuid_once_and_entries_without_one_always";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let engine = engine(&objects, &catalog);
        let key = fresh_key();
        let first = engine_append(&engine, &key, &[e("u1"), e("u2")])
            .await
            .unwrap();
        assert_eq!(
            (first.seq, first.count, first.skipped),
            (Seq(1), 2, 0),
            "{backend}"
        );
        let second = engine_append(&engine, &key, &[e("u2"), plain("t"), e("u3")])
            .await
            .unwrap();
        assert_eq!(
            (second.seq, second.count, second.skipped),
            (Seq(2), 2, 1),
            "{backend}"
        );
        // The same entry without a uuid twice, and a uuid twice in one batch.
        let third = engine_append(&engine, &key, &[plain("t"), e("u4"), e("u4")])
            .await
            .unwrap();
        assert_eq!((third.count, third.skipped), (2, 1), "{backend}");
        assert_eq!(
            load(&engine, &key).await,
            vec![e("u1"), e("u2"), plain("t"), e("u3"), plain("t"), e("u4")],
            "{backend}: the first copy stays, in its place"
        );
        // A batch of nothing but duplicates writes no part.
        let dir_key = keys::incarnation_dir(&key, 1);
        let before = objects
            .list(&dir_key, None, false)
            .await
            .unwrap()
            .items
            .len();
        let counted = METRICS.dedup_skipped.load(Ordering::Relaxed);
        let none = engine_append(&engine, &key, &[e("u3"), e("u1")])
            .await
            .unwrap();
        assert!(
            METRICS.dedup_skipped.load(Ordering::Relaxed) >= counted + 2,
            "skipped entries are counted"
        );
        assert_eq!(
            (none.seq, none.count, none.skipped),
            (Seq(3), 0, 2),
            "{backend}"
        );
        assert_eq!(
            objects
                .list(&dir_key, None, false)
                .await
                .unwrap()
                .items
                .len(),
            before
        );
        // A uuid that is not a string is no idempotency key.
        let odd = json!({"uuid": 7, "n": 1});
        engine_append(&engine, &key, std::slice::from_ref(&odd))
            .await
            .unwrap();
        engine_append(&engine, &key, std::slice::from_ref(&odd))
            .await
            .unwrap();
        assert_eq!(
            load(&engine, &key)
                .await
                .iter()
                .filter(|v| **v == odd)
                .count(),
            2
        );
    }
}

#[tokio::test]
async fn a_subkey_and_its_main_transcript_dedup_independently() {
    let test = "a_subkey_and_its_main_transcript_dedup_independently";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let engine = engine(&objects, &catalog);
        let main = fresh_key();
        let sub = SessionKey {
            subpath: Some(Subpath::new("subagents/agent-1").unwrap()),
            ..main.clone()
        };
        engine_append(&engine, &main, &[e("u1"), e("u2")])
            .await
            .unwrap();
        let receipt = engine_append(&engine, &sub, &[e("u1"), e("u2")])
            .await
            .unwrap();
        assert_eq!(receipt.count, 2, "{backend}: the subkey has its own uuids");
        engine_append(&engine, &sub, &[e("u2"), e("u3")])
            .await
            .unwrap();
        assert_eq!(
            load(&engine, &main).await,
            vec![e("u1"), e("u2")],
            "{backend}"
        );
        assert_eq!(
            load(&engine, &sub).await,
            vec![e("u1"), e("u2"), e("u3")],
            "{backend}"
        );
        // A deleted and re-created key starts with no uuids.
        engine.delete(&main, None).await.unwrap();
        assert_eq!(
            engine_append(&engine, &main, &[e("u1")])
                .await
                .unwrap()
                .count,
            1
        );
    }
}

#[tokio::test]
async fn after_compaction_and_a_cold_start_old_uuids_store_nothing() {
    let test = "after_compaction_and_a_cold_start_old_uuids_store_nothing";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let key = fresh_key();
        let all: Vec<Value> = (0..30).map(|i| e(&format!("u{i}"))).collect();
        {
            let warm = engine(&objects, &catalog);
            for chunk in all[..20].chunks(4) {
                engine_append(&warm, &key, chunk).await.unwrap();
            }
            warm.compact(&key, CompactOptions::FORCED)
                .await
                .unwrap()
                .expect("compacted");
            for chunk in all[20..].chunks(5) {
                engine_append(&warm, &key, chunk).await.unwrap();
            }
        }
        // A new instance, nothing cached: the index comes from the snapshot and the parts.
        let cold = engine(&objects, &catalog);
        for chunk in all.chunks(7) {
            let receipt = engine_append(&cold, &key, chunk).await.unwrap();
            assert_eq!(
                (receipt.count, receipt.skipped),
                (0, chunk.len() as u64),
                "{backend}"
            );
        }
        let mixed = engine_append(&cold, &key, &[e("u3"), e("new")])
            .await
            .unwrap();
        assert_eq!((mixed.count, mixed.skipped), (1, 1), "{backend}");
        let mut expected = all.clone();
        expected.push(e("new"));
        assert_eq!(load(&cold, &key).await, expected, "{backend}");
        // Compacting again keeps one copy of each.
        cold.compact(&key, CompactOptions::FORCED).await.unwrap();
        assert_eq!(load(&cold, &key).await, expected, "{backend}");
    }
}

#[tokio::test]
async fn two_instances_appending_overlapping_batches_at_once_store_each_uuid_once() {
    let test = "two_instances_appending_overlapping_batches_at_once_store_each_uuid_once";
    const UUIDS: usize = 120;
    const WINDOW: usize = 10;
    // Embedded: two engines in this process; S3 + DynamoDB: two processes.
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = crate::common::embedded_ports(dir.path());
    let engines = [engine(&objects, &catalog), engine(&objects, &catalog)];
    let key = fresh_key();
    let mut tasks = Vec::new();
    for (w, engine) in engines.iter().enumerate() {
        let (engine, key) = (engine.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            // Windows over the uuids, each starting half a window after the last.
            let mut start = w * 3;
            while start < UUIDS {
                let batch: Vec<Value> = (start..(start + WINDOW).min(UUIDS))
                    .map(|i| e(&format!("u{i}")))
                    .collect();
                engine_append(&engine, &key, &batch).await.unwrap();
                start += WINDOW / 2;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    check_once(&load(&engines[0], &key).await, UUIDS, "embedded");
    assert_eq!(load(&engines[0], &key).await, load(&engines[1], &key).await);

    let Some(aws) = AwsBackends::start_serialized(test) else {
        return;
    };
    let gw_dir = tempfile::tempdir().unwrap();
    let env = aws.env();
    let gateways = [
        ChildGateway::start(&gw_dir.path().join("a"), &env).await,
        ChildGateway::start(&gw_dir.path().join("b"), &env).await,
    ];
    let s = Session::fresh();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for (w, gw) in gateways.iter().enumerate() {
        let (http, url) = (http.clone(), s.entries(&gw.base_url));
        tasks.push(tokio::spawn(async move {
            let mut start = w * 3;
            while start < UUIDS {
                let batch: Vec<Value> = (start..(start + WINDOW).min(UUIDS))
                    .map(|i| e(&format!("u{i}")))
                    .collect();
                let (status, body) = crate::common::append(&http, &url, json!(batch)).await;
                assert_eq!(status, 200, "{body}");
                start += WINDOW / 2;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let a = crate::common::load(&http, &s.entries(&gateways[0].base_url))
        .await
        .1;
    let b = crate::common::load(&http, &s.entries(&gateways[1].base_url))
        .await
        .1;
    check_once(&a, UUIDS, "s3+dynamodb");
    assert_eq!(a, b, "both instances load one order");
}

fn check_once(entries: &[Value], n: usize, backend: &str) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        *seen.entry(entry["uuid"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(seen.len(), n, "{backend}: every uuid is there");
    assert!(
        seen.values().all(|&c| c == 1),
        "{backend}: each once: {seen:?}"
    );
}
