//! Tamper evidence beyond the CRC32C: someone with write access to the
//! store replaces, removes or truncates parts (or a snapshot) and recomputes
//! every checksum; the hash chain, anchored by the digest the catalog
//! recorded, refuses to serve the result: 502 `integrity_violation`. Runs on
//! the embedded backend and, when the emulators run, on S3 + DynamoDB.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use transcript_gateway::backend::{CatalogPort, ObjectPort};
use transcript_gateway::config::Config;
use transcript_gateway::domain::{Seq, SessionKey};
use transcript_gateway::engine::part::{self, NewPart};
use transcript_gateway::engine::{keys, CompactOptions, Engine, EngineConfig};
use transcript_gateway::metrics::METRICS;
use transcript_gateway::Error;

use crate::common::{engine_append, engine_load, fresh_key, test_stores, TestGateway};

async fn read(objects: &dyn ObjectPort, key: &str) -> Bytes {
    let mut body = objects.get(key).await.unwrap().expect("object");
    let mut out = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out.into()
}

/// Replaces an object, CRC32C recomputed, as a principal with bucket access could.
async fn overwrite(objects: &dyn ObjectPort, key: &str, body: Bytes) {
    objects.delete(key).await.unwrap();
    let crc = crc32c::crc32c(&body);
    objects.put_if_absent(key, body, crc).await.unwrap();
}

/// Part `seq` rewritten with `entries`, its header made consistent again
/// (same `prev`, count and digest recomputed). Returns the forged digest.
async fn forge_part(objects: &dyn ObjectPort, dir: &str, seq: u64, entries: &[u8]) -> part::Digest {
    let key = keys::part_key(dir, Seq(seq));
    let old = part::decode(Seq(seq), read(objects, &key).await)
        .unwrap()
        .header;
    let prev = part::from_hex(&old.prev).unwrap();
    let count = entries.iter().filter(|&&b| b == b'\n').count() as u64;
    let (body, digest) = NewPart {
        seq: Seq(seq),
        mtime: old.mtime,
        prev,
        entries,
        count,
        idempotency: None,
        seal: false,
        skipped: 0,
    }
    .encode();
    overwrite(objects, &key, body).await;
    digest
}

/// A key with parts 1..=4 of one entry each (`{"n": i}`).
async fn four_parts(engine: &Engine) -> SessionKey {
    let key = fresh_key();
    for i in 1..=4 {
        engine_append(engine, &key, &[json!({"n": i})])
            .await
            .unwrap();
    }
    key
}

async fn assert_refused(engine: &Engine, key: &SessionKey, what: &str) {
    let before = METRICS.integrity_violations.load(Ordering::Relaxed);
    match engine_load(engine, key).await {
        Err(Error::IntegrityViolation { object, .. }) => {
            assert!(!object.is_empty(), "{what}");
        }
        other => panic!("{what}: expected an integrity violation, got {other:?}"),
    }
    assert!(
        METRICS.integrity_violations.load(Ordering::Relaxed) > before,
        "{what}: counted"
    );
}

fn engine(objects: &Arc<dyn ObjectPort>, catalog: &Arc<dyn CatalogPort>) -> Engine {
    let config = EngineConfig {
        compaction_threshold: 0,
        ..EngineConfig::default()
    };
    Engine::new(objects.clone(), catalog.clone(), config)
}

#[tokio::test]
async fn replaced_removed_or_truncated_parts_are_refused_even_with_recomputed_checksums() {
    let test = "replaced_removed_or_truncated_parts_are_refused_even_with_recomputed_checksums";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let engine = engine(&objects, &catalog);
        let o = objects.as_ref();

        let key = four_parts(&engine).await;
        let d = keys::incarnation_dir(&key, 1);
        forge_part(o, &d, 2, b"{\"n\":666}\n").await;
        assert_refused(&engine, &key, &format!("{backend}: a middle part replaced")).await;

        let key = four_parts(&engine).await;
        let d = keys::incarnation_dir(&key, 1);
        forge_part(o, &d, 4, b"{\"n\":666}\n").await;
        assert_refused(
            &engine,
            &key,
            &format!("{backend}: the newest part replaced"),
        )
        .await;

        let key = four_parts(&engine).await;
        let d = keys::incarnation_dir(&key, 1);
        objects.delete(&keys::part_key(&d, Seq(2))).await.unwrap();
        assert_refused(&engine, &key, &format!("{backend}: a middle part removed")).await;

        let key = four_parts(&engine).await;
        let d = keys::incarnation_dir(&key, 1);
        for seq in [3, 4] {
            objects.delete(&keys::part_key(&d, Seq(seq))).await.unwrap();
        }
        assert_refused(
            &engine,
            &key,
            &format!("{backend}: the newest parts removed"),
        )
        .await;

        let key = fresh_key();
        engine_append(&engine, &key, &[json!({"n": 1})])
            .await
            .unwrap();
        engine_append(
            &engine,
            &key,
            &[json!({"n": 2, "e": 1}), json!({"n": 2, "e": 2})],
        )
        .await
        .unwrap();
        engine_append(&engine, &key, &[json!({"n": 3})])
            .await
            .unwrap();
        let d = keys::incarnation_dir(&key, 1);
        forge_part(o, &d, 2, b"{\"n\":2,\"e\":1}\n").await;
        assert_refused(&engine, &key, &format!("{backend}: a part truncated")).await;

        // The whole tail rewritten consistently: only the catalog's digest tells.
        let key = four_parts(&engine).await;
        let d = keys::incarnation_dir(&key, 1);
        let forged3 = forge_part(o, &d, 3, b"{\"n\":30}\n").await;
        let k4 = keys::part_key(&d, Seq(4));
        let old4 = part::decode(Seq(4), read(o, &k4).await).unwrap().header;
        let (body, _) = NewPart {
            seq: Seq(4),
            mtime: old4.mtime,
            prev: forged3,
            entries: b"{\"n\":40}\n",
            count: 1,
            idempotency: None,
            seal: false,
            skipped: 0,
        }
        .encode();
        overwrite(o, &k4, body).await;
        assert_refused(&engine, &key, &format!("{backend}: the tail rewritten")).await;

        // Untouched keys still load.
        let key = four_parts(&engine).await;
        let entries = engine_load(&engine, &key).await.unwrap().unwrap();
        assert_eq!(entries.len(), 4, "{backend}");
    }
}

#[tokio::test]
async fn a_forged_snapshot_is_refused_with_or_without_parts_after_it() {
    let test = "a_forged_snapshot_is_refused_with_or_without_parts_after_it";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let engine = engine(&objects, &catalog);
        for parts_after in [0, 2] {
            let key = four_parts(&engine).await;
            engine.compact(&key, CompactOptions::FORCED).await.unwrap();
            for i in 0..parts_after {
                engine_append(&engine, &key, &[json!({"after": i})])
                    .await
                    .unwrap();
            }
            // The snapshot rewritten with other entries, its digest recomputed
            // from them, its CRC32C recomputed: internally consistent.
            let d = keys::incarnation_dir(&key, 1);
            let snap = keys::snapshot_key(&d, Seq(4));
            let mut chain = part::Chain::from_genesis();
            let forged_parts: Vec<&[u8]> = vec![
                b"{\"n\":1}\n",
                b"{\"n\":2}\n",
                b"{\"n\":3}\n",
                b"{\"n\":999}\n",
            ];
            for p in &forged_parts {
                chain.lines(p).unwrap();
            }
            let header = transcript_gateway::engine::snapshot::SnapshotHeader {
                v: 2,
                through: Seq(4),
                counts: vec![1, 1, 1, 1],
                digest: chain.digest().map(|d| part::to_hex(&d)),
                chunks: Vec::new(),
            };
            let mut body = header.encode();
            for p in &forged_parts {
                body.extend_from_slice(p);
            }
            overwrite(objects.as_ref(), &snap, body.into()).await;
            assert_refused(
                &engine,
                &key,
                &format!("{backend}: snapshot forged, {parts_after} parts after it"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_broken_chain_is_a_502_integrity_violation_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = crate::common::embedded_ports(dir.path());
    let gw = TestGateway::over(objects.clone(), catalog, Config::default()).await;
    let s = crate::common::Session::fresh();
    for i in 0..3 {
        crate::common::append(&gw.http, &s.entries(&gw.base_url), json!([{"i": i}])).await;
    }
    let key = SessionKey::main(transcript_gateway::domain::SessionRef {
        task_id: transcript_gateway::domain::TaskId::new(s.task.clone()).unwrap(),
        project_key: transcript_gateway::domain::ProjectKey::new(s.project.clone()).unwrap(),
        session_id: transcript_gateway::domain::SessionId::new(s.session.clone()).unwrap(),
    });
    forge_part(
        objects.as_ref(),
        &keys::incarnation_dir(&key, 1),
        2,
        b"{\"i\":\"forged\"}\n",
    )
    .await;
    let resp = gw.http.get(s.entries(&gw.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "integrity_violation");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("integrity check"), "{message}");
    assert!(
        !message.contains(&s.task),
        "no storage detail in the body: {message}"
    );
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tg_integrity_violations_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tg_mirror_failures_total{reason=\"integrity\"}"),
        "{metrics}"
    );
    // Kept as a mirror failure of the key, for operators (in the background).
    let mut kept = Vec::new();
    for _ in 0..100 {
        let page = gw.engine.failures(None, 1000).await.unwrap();
        kept = page
            .items
            .into_iter()
            .filter(|f| f.task_id == s.task)
            .collect();
        if !kept.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(kept.len(), 1, "one failure kept: {kept:?}");
    assert_eq!(kept[0].reason, "integrity");
    assert_eq!(kept[0].session_id.as_deref(), Some(s.session.as_str()));
    assert!(kept[0].detail.contains("part 3"), "{:?}", kept[0]);
    gw.stop().await;
}
