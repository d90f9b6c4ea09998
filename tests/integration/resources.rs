//! Bounded resources: at most `compaction_concurrency` compactions run at
//! once, compactions and loads draw on one memory budget, and shutdown
//! leaves no background task behind (waiting deletions stop; the next
//! compaction does their work).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use transcript_gateway::backend::{CatalogPort, Listed, ObjectBody, ObjectPort, Page, PortError};
use transcript_gateway::domain::{Seq, SessionKey};
use transcript_gateway::engine::{keys, CompactOptions, Engine, EngineConfig};

use crate::common::{embedded_ports, engine_append, engine_load, fresh_key};

/// Objects whose reads take a while, counting how many transcripts (session
/// directories) are being read at the same moment.
struct SlowReads {
    inner: Arc<dyn ObjectPort>,
    reading: Mutex<HashMap<String, usize>>,
    most: Mutex<usize>,
}

impl SlowReads {
    fn new(inner: Arc<dyn ObjectPort>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            reading: Mutex::new(HashMap::new()),
            most: Mutex::new(0),
        })
    }

    fn most_at_once(&self) -> usize {
        *self.most.lock().unwrap()
    }
}

/// The task directory of an object key (`{task}/...`).
fn task_of(key: &str) -> String {
    key.split('/').next().unwrap_or_default().to_string()
}

#[async_trait]
impl ObjectPort for SlowReads {
    async fn put_if_absent(&self, key: &str, body: Bytes, crc32c: u32) -> Result<(), PortError> {
        self.inner.put_if_absent(key, body, crc32c).await
    }
    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError> {
        let task = task_of(key);
        {
            let mut reading = self.reading.lock().unwrap();
            *reading.entry(task.clone()).or_default() += 1;
            let mut most = self.most.lock().unwrap();
            *most = (*most).max(reading.len());
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
        let got = self.inner.get(key).await;
        let mut reading = self.reading.lock().unwrap();
        let left = reading.get_mut(&task).map(|n| {
            *n -= 1;
            *n
        });
        if left == Some(0) {
            reading.remove(&task);
        }
        got
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
        Ok(())
    }
}

fn engine(
    objects: Arc<dyn ObjectPort>,
    catalog: Arc<dyn CatalogPort>,
    config: EngineConfig,
) -> Engine {
    Engine::new(
        objects,
        catalog,
        EngineConfig {
            compaction_threshold: 0,
            ..config
        },
    )
}

/// Compacts `keys` all at once on an engine allowing `slots` compactions;
/// returns how many transcripts were read at the same moment.
async fn compact_at_once(slots: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let slow = SlowReads::new(objects);
    let e = engine(
        slow.clone(),
        catalog,
        EngineConfig {
            compaction_concurrency: slots,
            compaction_grace: Duration::ZERO,
            ..EngineConfig::default()
        },
    );
    let keys: Vec<SessionKey> = (0..6).map(|_| fresh_key()).collect();
    for key in &keys {
        for i in 0..3 {
            engine_append(&e, key, &[json!({"i": i})]).await.unwrap();
        }
    }
    let runs = keys.iter().map(|k| e.compact(k, CompactOptions::FORCED));
    for report in futures::future::join_all(runs).await {
        assert!(report.unwrap().is_some(), "every key compacted");
    }
    for key in &keys {
        let entries = engine_load(&e, key).await.unwrap().unwrap();
        assert_eq!(entries.len(), 3, "compaction kept every entry");
    }
    assert_eq!(e.compactions_running(), 0);
    slow.most_at_once()
}

#[tokio::test]
async fn no_more_compactions_run_at_once_than_allowed() {
    let limited = compact_at_once(2).await;
    assert!(
        limited <= 2,
        "{limited} compactions read at once with 2 slots"
    );
    // The same work with a slot each does run side by side: the count sees it.
    let free = compact_at_once(6).await;
    assert!(free > 2, "with 6 slots only {free} ran at once");
}

#[tokio::test]
async fn compactions_and_loads_share_one_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let e = engine(
        objects,
        catalog,
        EngineConfig {
            memory_budget: 64 * 1024,
            load_memory_budget: 64 * 1024,
            load_concurrency: 4,
            prefetch_bytes: 0,
            compaction_grace: Duration::ZERO,
            ..EngineConfig::default()
        },
    );
    let (reading, compacted) = (fresh_key(), fresh_key());
    let pad = "x".repeat(4000);
    for i in 0..40 {
        engine_append(&e, &reading, &[json!({"i": i, "pad": pad})])
            .await
            .unwrap();
    }
    // About 62 KiB to fold (15 parts of 4.1 KiB): more than the budget has
    // left while the load holds even one of its parts (6 KiB of 64, so 58
    // left), less than all of it.
    for i in 0..15 {
        engine_append(&e, &compacted, &[json!({"i": i, "pad": pad})])
            .await
            .unwrap();
    }
    let idle = e.memory_free();
    // A load whose reader stalls after its first chunk holds parts in flight.
    let mut load = e.load(&reading, Seq::ZERO).await.unwrap().unwrap().stream;
    assert!(load.next().await.unwrap().is_ok());
    // Its reader blocks handing out a part, holding at least that one. Until
    // the channel to the stalled reader is full it still moves on, holding
    // and releasing parts, so wait until what it holds stays put.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut last, mut steady) = (0, 0);
    while steady < 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = idle - e.memory_free();
        steady = if now == last && now >= 6 * 1024 {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    let held = idle - e.memory_free();
    assert!(
        held >= 6 * 1024,
        "the stalled load holds part of the budget: {held}"
    );
    // A compaction needs its share too: it waits until the load lets go.
    let mut compaction = Box::pin(e.compact(&compacted, CompactOptions::FORCED));
    let early = tokio::time::timeout(Duration::from_millis(300), &mut compaction).await;
    assert!(
        early.is_err(),
        "the compaction ran past a budget the load held: {early:?} (held {held}, free {})",
        e.memory_free()
    );
    drop(load);
    let report = tokio::time::timeout(Duration::from_secs(10), compaction)
        .await
        .expect("the compaction ran once the load let go")
        .unwrap();
    assert_eq!(report.map(|r| r.through), Some(Seq(15)));
    assert_eq!(e.memory_free(), idle, "every byte given back");
}

#[tokio::test]
async fn shutdown_leaves_no_background_task_and_the_next_compaction_finishes_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let config = EngineConfig {
        compaction_grace: Duration::from_secs(300),
        ..EngineConfig::default()
    };
    let first = engine(objects.clone(), catalog.clone(), config.clone());
    let key = fresh_key();
    for i in 0..4 {
        engine_append(&first, &key, &[json!({"i": i})])
            .await
            .unwrap();
    }
    first.compact(&key, CompactOptions::FORCED).await.unwrap();
    let dir_key = keys::incarnation_dir(&key, 1);
    let parts = || async {
        let page = objects.list(&dir_key, None, false).await.unwrap();
        page.items
            .iter()
            .filter(|i| {
                matches!(
                    keys::parse(&dir_key, &i.key),
                    Some(keys::ObjectKind::Part(_))
                )
            })
            .count()
    };
    assert_eq!(parts().await, 4, "covered parts wait out the grace period");
    assert!(
        first.background_tasks() > 0,
        "the deletion waits in the background"
    );
    // Shutdown does not wait 300 s for it, and leaves nothing running.
    let left = tokio::time::timeout(
        Duration::from_secs(10),
        first.shutdown(Duration::from_secs(5)),
    )
    .await
    .expect("shutdown returned");
    assert_eq!(left, 0);
    assert_eq!(first.background_tasks(), 0);
    assert_eq!(parts().await, 4, "nothing deleted early");
    // The work is recorded: the next compaction (grace over) deletes them.
    let next = engine(
        objects.clone(),
        catalog,
        EngineConfig {
            compaction_grace: Duration::ZERO,
            ..config
        },
    );
    next.compact(&key, CompactOptions::FORCED).await.unwrap();
    assert_eq!(
        parts().await,
        0,
        "the next compaction deleted the covered parts"
    );
    let entries = engine_load(&next, &key).await.unwrap().unwrap();
    assert_eq!(entries.len(), 4);
}

#[tokio::test]
async fn shutdown_stops_a_running_compaction_between_parts_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let writer = engine(objects.clone(), catalog.clone(), EngineConfig::default());
    let key = fresh_key();
    for i in 0..40 {
        engine_append(&writer, &key, &[json!({"i": i})])
            .await
            .unwrap();
    }
    // Reads take 60 ms each: 30 ms in, the compaction is still waiting for
    // its first parts when shutdown begins.
    let slow = SlowReads::new(objects.clone());
    let e = engine(slow, catalog.clone(), EngineConfig::default());
    let running = {
        let e = e.clone();
        let key = key.clone();
        tokio::spawn(async move { e.compact(&key, CompactOptions::FORCED).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let left = e.shutdown(Duration::from_secs(10)).await;
    assert_eq!(left, 0, "nothing left running");
    let outcome = running.await.unwrap();
    assert!(
        matches!(outcome, Err(transcript_gateway::Error::Draining)),
        "the compaction stopped for the shutdown: {outcome:?}"
    );
    // Nothing recorded, no snapshot or chunk left; the transcript is whole
    // and the next compaction completes.
    let record = catalog.get_session(&key).await.unwrap().unwrap().value;
    assert_eq!(record.compacted_through, Seq::ZERO);
    let dir_key = keys::incarnation_dir(&key, 1);
    let page = objects.list(&dir_key, None, false).await.unwrap();
    let leftovers: Vec<&str> = page
        .items
        .iter()
        .filter(|i| {
            !matches!(
                keys::parse(&dir_key, &i.key),
                Some(keys::ObjectKind::Part(_))
            )
        })
        .map(|i| i.key.as_str())
        .collect();
    assert!(leftovers.is_empty(), "no snapshot or chunk: {leftovers:?}");
    let fresh = engine(objects, catalog, EngineConfig::default());
    assert_eq!(engine_load(&fresh, &key).await.unwrap().unwrap().len(), 40);
    let report = fresh.compact(&key, CompactOptions::FORCED).await.unwrap();
    assert_eq!(report.expect("compacted").through, Seq(40));
}
