//! The port conformance suite and engine guarantees on the embedded backend.

use std::sync::Arc;

use serde_json::value::RawValue;
use transcript_gateway::domain::{ProjectKey, Seq, SessionId, SessionKey, SessionRef, TaskId};
use transcript_gateway::engine::{AppendRequest, Engine, EngineConfig};

use crate::common::{concurrent_engines_append_gap_free, embedded_ports, engine_load, fresh_id};

#[tokio::test]
async fn concurrent_engines_over_one_store_append_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    concurrent_engines_append_gap_free(objects, catalog, &fresh_id("t"), 4, 25).await;
}

fn key() -> SessionKey {
    SessionKey::main(SessionRef {
        task_id: TaskId::new(fresh_id("t")).unwrap(),
        project_key: ProjectKey::new("-workspace-t").unwrap(),
        session_id: SessionId::new(fresh_id("s")).unwrap(),
    })
}

fn batch(writer: usize, i: usize, size: usize) -> Vec<Box<RawValue>> {
    (0..size)
        .map(|p| RawValue::from_string(format!("{{\"w\":{writer},\"i\":{i},\"p\":{p}}}")).unwrap())
        .collect()
}

async fn load_lines(engine: &Engine, key: &SessionKey) -> Vec<serde_json::Value> {
    engine_load(engine, key).await.unwrap().expect("exists")
}

#[tokio::test]
async fn sixteen_appenders_on_one_key_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(objects, catalog, EngineConfig::default());
    let key = key();
    let (writers, appends, size) = (16, 200, 3);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let engine = engine.clone();
            let key = key.clone();
            tokio::spawn(async move {
                for i in 0..appends {
                    engine
                        .append(AppendRequest {
                            key: key.clone(),
                            entries: batch(w, i, size),
                            idempotency_key: None,
                            summary: None,
                            writer_epoch: None,
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let first = load_lines(&engine, &key).await;
    assert_eq!(first.len(), writers * appends * size);
    let mut seen = std::collections::HashSet::new();
    let mut last_i = vec![-1i64; writers];
    for batch in first.chunks(size) {
        let (w, i) = (
            batch[0]["w"].as_u64().unwrap() as usize,
            batch[0]["i"].as_i64().unwrap(),
        );
        for (p, e) in batch.iter().enumerate() {
            assert_eq!(
                (
                    e["w"].as_u64().unwrap() as usize,
                    e["i"].as_i64().unwrap(),
                    e["p"].as_u64().unwrap() as usize
                ),
                (w, i, p),
                "batch not contiguous"
            );
        }
        assert!(seen.insert((w, i)), "batch ({w},{i}) duplicated");
        assert!(i > last_i[w], "writer {w}'s batches out of order");
        last_i[w] = i;
    }
    assert_eq!(seen.len(), writers * appends);
    // Every reader sees the same order.
    let other = Engine::new(
        engine.objects().clone(),
        engine.catalog().clone(),
        EngineConfig::default(),
    );
    assert_eq!(load_lines(&other, &key).await, first);
}

#[tokio::test]
async fn appended_data_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    {
        let (objects, catalog) = embedded_ports(dir.path());
        let engine = Engine::new(objects, catalog, EngineConfig::default());
        for i in 0..5 {
            engine
                .append(AppendRequest {
                    key: key.clone(),
                    entries: batch(0, i, 2),
                    idempotency_key: None,
                    summary: None,
                    writer_epoch: None,
                })
                .await
                .unwrap();
        }
    }
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(objects, Arc::clone(&catalog), EngineConfig::default());
    assert_eq!(load_lines(&engine, &key).await.len(), 10);
    let record = catalog.get_session(&key).await.unwrap().unwrap().value;
    assert_eq!(record.head, Seq(5));
    let receipt = engine
        .append(AppendRequest {
            key: key.clone(),
            entries: batch(0, 5, 1),
            idempotency_key: None,
            summary: None,
            writer_epoch: None,
        })
        .await
        .unwrap();
    assert_eq!(receipt.seq, Seq(6), "numbering continues after a restart");
    assert!(receipt.mtime > record.mtime, "mtime strictly increases");
}
