//! The acknowledgement: an append's part and its catalog record are written
//! at the same time, the record counting the part ahead of it. These tests
//! pin down what that must never cost: every instance lists an acknowledged
//! append (mtime and summary) at once; a part that fails takes its record
//! back and changes nothing; another instance settles a record counted
//! ahead (adopting its summary, confirming its idempotency record); and a
//! compaction settles it before the part it names is deleted. Each runs on
//! the embedded backend and, when the emulators run, on S3 + DynamoDB.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};
use transcript_gateway::backend::{CatalogPort, Listed, ObjectBody, ObjectPort, Page, PortError};
use transcript_gateway::config::Config;
use transcript_gateway::domain::{AppendReceipt, Seq, SessionKey, SummaryUpdate};
use transcript_gateway::engine::{keys, AppendRequest, CompactOptions, Engine, EngineConfig};
use transcript_gateway::Error;

use crate::common::{
    engine_load, fresh_key, get_json, load, raw_entries, test_stores, Session, TestGateway,
};

/// One append of a single entry `{"e": tag}`, with an idempotency key and a
/// summary `{"title": tag}` folded on `expected_version`.
fn request(
    key: &SessionKey,
    tag: &str,
    idem: Option<&str>,
    expected_version: u64,
) -> AppendRequest {
    AppendRequest {
        key: key.clone(),
        entries: raw_entries(&[json!({ "e": tag })]),
        idempotency_key: idem.map(str::to_string),
        summary: Some(SummaryUpdate {
            data: serde_json::value::RawValue::from_string(json!({ "title": tag }).to_string())
                .unwrap(),
            expected_version,
        }),
        writer_epoch: None,
    }
}

fn engine(objects: Arc<dyn ObjectPort>, catalog: Arc<dyn CatalogPort>) -> Engine {
    Engine::new(
        objects,
        catalog,
        EngineConfig {
            compaction_threshold: 0,
            compaction_grace: Duration::ZERO,
            ..EngineConfig::default()
        },
    )
}

fn applied(receipt: &AppendReceipt) -> (bool, u64) {
    let outcome = receipt.summary.as_ref().expect("a summary outcome");
    (outcome.applied, outcome.version)
}

fn tags(entries: &[Value]) -> Vec<&str> {
    entries.iter().filter_map(|e| e["e"].as_str()).collect()
}

#[tokio::test]
async fn an_acknowledged_append_is_listed_with_its_mtime_and_summary_on_another_instance_at_once() {
    let test =
        "an_acknowledged_append_is_listed_with_its_mtime_and_summary_on_another_instance_at_once";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        // Two instances: nothing shared but the stores.
        let a = TestGateway::over(objects.clone(), catalog.clone(), Config::default()).await;
        let b = TestGateway::over(objects, catalog, Config::default()).await;
        let s = Session::fresh();
        let mut version = 0;
        let mut appended = Vec::new();
        for round in 0..12 {
            // Mostly A writes and B reads; every third round the other way.
            let (writer, reader) = if round % 3 == 2 { (&b, &a) } else { (&a, &b) };
            let what = format!("{backend} round {round}");
            let title = format!("title {round}");
            let resp = writer
                .http
                .post(s.entries(&writer.base_url))
                .header("idempotency-key", format!("k{round}"))
                .json(&json!({
                    "entries": [{"round": round}],
                    "summary": {"data": {"title": title}, "expected_version": version},
                }))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{what}");
            let receipt: Value = resp.json().await.unwrap();
            assert_eq!(
                receipt["data"]["summary"]["applied"], true,
                "{what}: a summary folded on the last acknowledged version applies on any instance: {receipt}"
            );
            version = receipt["data"]["summary"]["version"].as_u64().unwrap();
            let mtime = receipt["data"]["mtime"].as_u64().unwrap();
            appended.push(json!({ "round": round }));

            // At once, on the other instance: listed with this mtime and
            // this summary, and loaded.
            let list_url = format!("{}?summaries=true", s.sessions(&reader.base_url));
            let list = get_json(&reader.http, &list_url).await;
            let listed = &list["data"]["sessions"][0];
            assert_eq!(listed["session_id"], s.session.as_str(), "{what}: {list}");
            assert_eq!(listed["mtime"], mtime, "{what}: the listed mtime: {list}");
            assert_eq!(listed["data"], json!({ "title": title }), "{what}: {list}");
            let summary_url = format!("{}/summary", s.session(&reader.base_url));
            let summary = get_json(&reader.http, &summary_url).await;
            assert_eq!(summary["data"]["version"], version, "{what}: {summary}");
            let (status, loaded) = load(&reader.http, &s.entries(&reader.base_url)).await;
            assert_eq!(status, 200, "{what}");
            assert_eq!(loaded, appended, "{what}: the load");
        }
        a.stop().await;
        b.stop().await;
    }
}

/// An object store that refuses every part while `failing` is set.
struct FailingPuts {
    inner: Arc<dyn ObjectPort>,
    failing: AtomicBool,
}

#[async_trait]
impl ObjectPort for FailingPuts {
    async fn put_if_absent(&self, key: &str, body: Bytes, crc32c: u32) -> Result<(), PortError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(PortError::unavailable(
                "the object store refused the part (test)",
            ));
        }
        self.inner.put_if_absent(key, body, crc32c).await
    }
    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        dir: &str,
        after: Option<&str>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError> {
        self.inner.list(dir, after, recursive).await
    }
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.inner.delete(key).await
    }
    async fn check(&self) -> Result<(), PortError> {
        self.inner.check().await
    }
}

#[tokio::test]
async fn a_part_that_fails_after_its_record_takes_the_record_back_and_its_retry_writes_it_once() {
    let test =
        "a_part_that_fails_after_its_record_takes_the_record_back_and_its_retry_writes_it_once";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let puts = Arc::new(FailingPuts {
            inner: objects.clone(),
            failing: AtomicBool::new(false),
        });
        let writer = engine(puts.clone(), catalog.clone());
        let other = engine(objects, catalog.clone());
        let key = fresh_key();
        let first = writer
            .append(request(&key, "one", Some("k1"), 0))
            .await
            .unwrap();

        puts.failing.store(true, Ordering::SeqCst);
        let err = writer
            .append(request(&key, "two", Some("k2"), 1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::BackendUnavailable(_)),
            "{backend}: the failed part is the answer: {err:?}"
        );
        // The record is as before the failed append, on every instance.
        let record = catalog.get_session(&key).await.unwrap().unwrap().value;
        assert!(record.prior.is_none(), "{backend}: taken back: {record:?}");
        assert_eq!(record.head, Seq(1), "{backend}");
        assert_eq!(record.mtime, first.mtime, "{backend}");
        assert_eq!(record.summary_version, 1, "{backend}");
        assert_eq!(
            record.summary.as_ref().map(|s| s.get()),
            Some(r#"{"title":"one"}"#),
            "{backend}"
        );
        let listed = other
            .list_sessions(key.task_id(), &key.session.project_key, None, 10)
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1, "{backend}");
        assert_eq!(
            listed.items[0].mtime, first.mtime,
            "{backend}: the listed mtime"
        );

        // The retry is written, once, and not answered from the record the
        // failed attempt stored.
        puts.failing.store(false, Ordering::SeqCst);
        let retry = writer
            .append(request(&key, "two", Some("k2"), 1))
            .await
            .unwrap();
        assert_eq!(retry.seq, Seq(2), "{backend}");
        assert_eq!(applied(&retry), (true, 2), "{backend}");
        let loaded = engine_load(&other, &key).await.unwrap().unwrap();
        assert_eq!(tags(&loaded), ["one", "two"], "{backend}");
    }
}

#[tokio::test]
async fn another_instance_settles_an_append_counted_ahead_and_confirms_its_idempotency_record() {
    let test =
        "another_instance_settles_an_append_counted_ahead_and_confirms_its_idempotency_record";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let a = engine(objects.clone(), catalog.clone());
        let b = engine(objects, catalog.clone());
        let key = fresh_key();
        let task = key.task_id();
        let part_dir = |idem: &str| {
            let catalog = catalog.clone();
            let idem = idem.to_string();
            async move {
                let record = catalog.get_idempotency(task, &idem).await.unwrap();
                record.expect("stored").part_dir
            }
        };

        a.append(request(&key, "a1", Some("a1"), 0)).await.unwrap();
        let stored = catalog.get_session(&key).await.unwrap().unwrap().value;
        assert_eq!(
            stored.prior.as_ref().map(|p| p.head),
            Some(Seq::ZERO),
            "{backend}: the record counts the part ahead of it"
        );
        assert_eq!(
            part_dir("a1").await,
            Some(keys::incarnation_dir(&key, 1)),
            "{backend}: stored with its part, unconfirmed"
        );
        let a2 = a.append(request(&key, "a2", Some("a2"), 1)).await.unwrap();
        assert_eq!(
            part_dir("a1").await,
            None,
            "{backend}: confirmed by the next write"
        );
        assert!(part_dir("a2").await.is_some(), "{backend}");

        // B has never seen the key: it reads the record A counted ahead,
        // finds the part, and takes its summary version.
        let b1 = b.append(request(&key, "b1", Some("b1"), 2)).await.unwrap();
        assert_eq!(
            applied(&b1),
            (true, 3),
            "{backend}: folded on A's last summary"
        );
        assert_eq!(
            part_dir("a2").await,
            None,
            "{backend}: B confirmed A's last key"
        );
        let replay = b.append(request(&key, "a2", Some("a2"), 1)).await.unwrap();
        assert_eq!((replay.seq, replay.mtime), (a2.seq, a2.mtime), "{backend}");
        let loaded = engine_load(&b, &key).await.unwrap().unwrap();
        assert_eq!(tags(&loaded), ["a1", "a2", "b1"], "{backend}");
    }
}

#[tokio::test]
async fn a_compaction_settles_an_append_counted_ahead_before_its_part_is_deleted() {
    let test = "a_compaction_settles_an_append_counted_ahead_before_its_part_is_deleted";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let a = engine(objects.clone(), catalog.clone());
        let key = fresh_key();
        // No idempotency keys: only the record counted ahead asks for a
        // settlement.
        for (i, tag) in ["x", "y", "z"].into_iter().enumerate() {
            a.append(request(&key, tag, None, i as u64)).await.unwrap();
        }
        let stored = catalog.get_session(&key).await.unwrap().unwrap().value;
        assert!(stored.prior.is_some(), "{backend}: counted ahead");
        a.compact(&key, CompactOptions::FORCED)
            .await
            .unwrap()
            .expect("compacted");
        // The grace period is zero: the parts go right after.
        let part_dir = keys::incarnation_dir(&key, 1);
        let mut parts_left = usize::MAX;
        for _ in 0..200 {
            let page = objects.list(&part_dir, None, false).await.unwrap();
            parts_left = page
                .items
                .iter()
                .filter(|i| {
                    matches!(
                        keys::parse(&part_dir, &i.key),
                        Some(keys::ObjectKind::Part(_))
                    )
                })
                .count();
            if parts_left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(parts_left, 0, "{backend}: the compacted parts were deleted");
        let stored = catalog.get_session(&key).await.unwrap().unwrap().value;
        assert!(stored.prior.is_none(), "{backend}: settled: {stored:?}");
        assert_eq!(stored.summary_version, 3, "{backend}");

        // A new instance appends on the summary the last append stored.
        let b = engine(objects, catalog.clone());
        let next = b.append(request(&key, "w", None, 3)).await.unwrap();
        assert_eq!(
            applied(&next),
            (true, 4),
            "{backend}: the last summary stood"
        );
        let loaded = engine_load(&b, &key).await.unwrap().unwrap();
        assert_eq!(tags(&loaded), ["x", "y", "z", "w"], "{backend}");
    }
}
