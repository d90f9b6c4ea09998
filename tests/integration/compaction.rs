//! Compaction: snapshots keep every entry in order, loads restart when
//! parts vanish under them, and a compaction stopped at any step leaves a
//! loadable state that the next compaction completes.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use transcript_gateway::backend::{CatalogPort, ObjectPort};
use transcript_gateway::domain::{ProjectKey, Seq, SessionId, SessionKey, SessionRef, TaskId};
use transcript_gateway::engine::{keys, AppendRequest, CompactOptions, Engine, EngineConfig, Halt};

use crate::common::{embedded_ports, fresh_id, jsonl_lines, ChildGateway, Session};

fn key() -> SessionKey {
    SessionKey::main(SessionRef {
        task_id: TaskId::new(fresh_id("t")).unwrap(),
        project_key: ProjectKey::new("-workspace-t").unwrap(),
        session_id: SessionId::new(fresh_id("s")).unwrap(),
    })
}

fn config(threshold: u64) -> EngineConfig {
    EngineConfig {
        compaction_threshold: threshold,
        compaction_grace: Duration::ZERO,
        ..EngineConfig::default()
    }
}

/// Batch `i` holds `i % 3 + 1` entries, so parts differ in size.
fn batch(i: u64) -> Vec<Value> {
    (0..i % 3 + 1)
        .map(|e| json!({"batch": i, "e": e}))
        .collect()
}

async fn append(engine: &Engine, key: &SessionKey, i: u64) -> Seq {
    let entries = batch(i)
        .iter()
        .map(|v| serde_json::value::RawValue::from_string(v.to_string()).unwrap())
        .collect();
    engine
        .append(AppendRequest {
            key: key.clone(),
            entries,
            idempotency_key: None,
            summary: None,
            writer_epoch: None,
        })
        .await
        .unwrap()
        .seq
}

async fn load(engine: &Engine, key: &SessionKey, after: u64) -> Vec<Value> {
    let Some(loaded) = engine.load(key, Seq(after)).await.unwrap() else {
        return Vec::new();
    };
    let chunks: Vec<_> = loaded.stream.map(|c| c.unwrap()).collect().await;
    jsonl_lines(&chunks)
}

fn expected(from: u64, to: u64) -> Vec<Value> {
    (from..=to).flat_map(batch).collect()
}

/// The objects of the key's first incarnation (these tests never delete).
async fn object_names(objects: &Arc<dyn ObjectPort>, key: &SessionKey) -> Vec<keys::ObjectKind> {
    let dir = keys::incarnation_dir(key, 1);
    let page = objects.list(&dir, None, false).await.unwrap();
    page.items
        .iter()
        .filter_map(|i| keys::parse(&dir, &i.key))
        .collect()
}

#[tokio::test]
async fn compaction_keeps_every_entry_in_order_and_serves_after_seq() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(objects.clone(), catalog.clone(), config(0));
    let key = key();
    for i in 1..=30 {
        append(&engine, &key, i).await;
    }
    let report = engine
        .compact(&key, CompactOptions::FORCED)
        .await
        .unwrap()
        .expect("compacted");
    assert_eq!((report.through, report.parts_folded), (Seq(30), 30));
    for i in 31..=35 {
        append(&engine, &key, i).await;
    }
    // Covered parts are gone (grace 0); the snapshot and the tail remain.
    let names = object_names(&objects, &key).await;
    assert_eq!(names.first(), Some(&keys::ObjectKind::Part(Seq(31))));
    assert_eq!(names.last(), Some(&keys::ObjectKind::Snapshot(Seq(30))));
    assert_eq!(names.len(), 6);
    assert_eq!(load(&engine, &key, 0).await, expected(1, 35));
    for after in [1, 7, 29, 30, 31, 34, 35, 40] {
        assert_eq!(
            load(&engine, &key, after).await,
            expected(after + 1, 35),
            "after_seq={after}"
        );
    }
    // A second compaction folds the tail onto the first snapshot.
    let report = engine
        .compact(&key, CompactOptions::FORCED)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.through, report.parts_folded), (Seq(35), 5));
    assert_eq!(
        object_names(&objects, &key).await,
        vec![keys::ObjectKind::Snapshot(Seq(35))]
    );
    assert_eq!(load(&engine, &key, 0).await, expected(1, 35));
    assert_eq!(load(&engine, &key, 33).await, expected(34, 35));
    let record = catalog.get_session(&key).await.unwrap().unwrap().value;
    assert_eq!(record.compacted_through, Seq(35));
    // Appends continue numbering after the snapshot.
    assert_eq!(append(&engine, &key, 36).await, Seq(36));
    assert_eq!(load(&engine, &key, 0).await, expected(1, 36));
}

#[tokio::test]
async fn compaction_starts_by_itself_at_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(objects.clone(), catalog, config(10));
    let key = key();
    for i in 1..=9 {
        append(&engine, &key, i).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !object_names(&objects, &key)
            .await
            .iter()
            .any(|n| matches!(n, keys::ObjectKind::Snapshot(_))),
        "no snapshot below the threshold"
    );
    for i in 10..=12 {
        append(&engine, &key, i).await;
    }
    let mut snapshot = None;
    for _ in 0..100 {
        snapshot = object_names(&objects, &key)
            .await
            .into_iter()
            .find_map(|n| match n {
                keys::ObjectKind::Snapshot(s) => Some(s),
                _ => None,
            });
        if snapshot.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(snapshot.expect("a background compaction ran") >= Seq(10));
    assert_eq!(load(&engine, &key, 0).await, expected(1, 12));
}

#[tokio::test]
async fn a_compaction_stopped_at_any_step_loads_correctly_and_is_finished_by_the_next() {
    for halt in [
        Halt::AfterSnapshot,
        Halt::AfterRecord,
        Halt::AfterDeleting(0),
        Halt::AfterDeleting(7),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = key();
        {
            let (objects, catalog) = embedded_ports(dir.path());
            let engine = Engine::new(objects, catalog, config(0));
            for i in 1..=20 {
                append(&engine, &key, i).await;
            }
            engine
                .compact(
                    &key,
                    CompactOptions {
                        force: true,
                        halt: Some(halt),
                    },
                )
                .await
                .unwrap();
            // The process "dies" here: engine, caches and tasks are dropped.
        }
        let (objects, catalog): (Arc<dyn ObjectPort>, Arc<dyn CatalogPort>) =
            embedded_ports(dir.path());
        let engine = Engine::new(objects.clone(), catalog.clone(), config(0));
        assert_eq!(
            load(&engine, &key, 0).await,
            expected(1, 20),
            "{halt:?}: load after the crash"
        );
        assert_eq!(
            load(&engine, &key, 12).await,
            expected(13, 20),
            "{halt:?}: after_seq after the crash"
        );
        assert_eq!(append(&engine, &key, 21).await, Seq(21), "{halt:?}");
        engine.compact(&key, CompactOptions::FORCED).await.unwrap();
        assert_eq!(
            load(&engine, &key, 0).await,
            expected(1, 21),
            "{halt:?}: after the next compaction"
        );
        assert_eq!(
            object_names(&objects, &key).await,
            vec![keys::ObjectKind::Snapshot(Seq(21))],
            "{halt:?}: the next compaction removed every covered object"
        );
        let record = catalog.get_session(&key).await.unwrap().unwrap().value;
        assert_eq!(
            (record.head, record.compacted_through),
            (Seq(21), Seq(21)),
            "{halt:?}"
        );
    }
}

#[tokio::test]
async fn a_load_that_meets_vanished_parts_restarts_from_the_newer_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    // Stream lazily, one part in flight, so the load is mid-way when parts vanish.
    let engine = Engine::new(
        objects,
        catalog,
        EngineConfig {
            prefetch_bytes: 0,
            load_concurrency: 1,
            ..config(0)
        },
    );
    let key = key();
    for i in 1..=60 {
        append(&engine, &key, i).await;
    }
    for (round, after) in [(0u64, 0u64), (1, 5)] {
        let head = 60 + round;
        let loaded = engine.load(&key, Seq(after)).await.unwrap().unwrap();
        let mut stream = loaded.stream;
        let mut chunks = vec![stream.next().await.unwrap().unwrap()];
        // Everything after the first part is folded away and deleted now.
        engine.compact(&key, CompactOptions::FORCED).await.unwrap();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk.unwrap());
        }
        assert_eq!(
            jsonl_lines(&chunks),
            expected(after + 1, head),
            "after_seq={after}"
        );
        append(&engine, &key, head + 1).await;
    }
}

#[tokio::test]
async fn interleaved_appends_compactions_and_loads_never_lose_duplicate_or_reorder() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(
        objects,
        catalog,
        EngineConfig {
            prefetch_bytes: 0,
            load_concurrency: 2,
            ..config(0)
        },
    );
    let key = key();
    append(&engine, &key, 1).await;
    let total = 150;
    let writer = {
        let (engine, key) = (engine.clone(), key.clone());
        tokio::spawn(async move {
            for i in 2..=total {
                append(&engine, &key, i).await;
            }
        })
    };
    let compactor = {
        let (engine, key) = (engine.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..40 {
                engine.compact(&key, CompactOptions::FORCED).await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let all = expected(1, total);
    let mut loads = 0;
    while !writer.is_finished() || !compactor.is_finished() {
        let got = load(&engine, &key, 0).await;
        assert!(!got.is_empty());
        assert_eq!(
            got[..],
            all[..got.len()],
            "a load must be a prefix of the transcript, in order"
        );
        let after = (got.len() as u64 / 3).max(1);
        let tail = load(&engine, &key, after).await;
        let from = all
            .iter()
            .position(|v| v["batch"] == after + 1)
            .unwrap_or(all.len());
        assert_eq!(tail[..], all[from..from + tail.len()], "after_seq={after}");
        loads += 1;
    }
    writer.await.unwrap();
    compactor.await.unwrap();
    assert!(loads > 3, "loads ran while compacting ({loads})");
    assert_eq!(load(&engine, &key, 0).await, all);
}

/// Writes five parts of `pad` bytes each, compacts them into one snapshot,
/// changes one byte of the snapshot with `tamper` (given the data directory
/// and the snapshot's key) while no gateway runs, and expects the next load
/// to be refused as a checksum mismatch.
async fn a_tampered_snapshot_is_refused(pad: usize, tamper: impl FnOnce(&std::path::Path, &str)) {
    let gw_dir = tempfile::tempdir().unwrap();
    let data = gw_dir.path().join("data");
    let s = Session::fresh();
    let env = [("TG_COMPACTION_GRACE_SECS", "0")];
    let gw = ChildGateway::start(&data, &env).await;
    let http = reqwest::Client::new();
    let pad = "x".repeat(pad);
    for i in 0..5 {
        crate::common::append(
            &http,
            &s.entries(&gw.base_url),
            json!([{"i": i, "pad": pad}]),
        )
        .await;
    }
    let resp = http
        .post(format!("{}/admin/v1/tasks/{}/compact", gw.base_url, s.task))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["compacted"][0]["through"], 5);
    assert_eq!(body["data"]["compacted"][0]["parts_folded"], 5);
    let (status, entries) = crate::common::load(&http, &s.entries(&gw.base_url)).await;
    assert_eq!((status, entries.len()), (200, 5));
    gw.kill();
    let snapshot = format!(
        "{}/{}/{}/~i0000000001/snapshot-{:020}.jsonl",
        s.task, s.project, s.session, 5
    );
    tamper(&data, &snapshot);
    let gw = ChildGateway::start(&data, &env).await;
    let resp = http.get(s.entries(&gw.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "checksum_mismatch", "{body}");
    gw.kill();
}

/// The last `4` (the last entry's `i`) becomes a `9`.
fn flip_last_four(bytes: &mut [u8]) {
    let pos = bytes.iter().rposition(|&b| b == b'4').unwrap();
    bytes[pos] = b'9';
}

#[tokio::test]
async fn a_tampered_snapshot_file_is_refused_with_checksum_mismatch() {
    // Five parts of 300 KB: a snapshot too large to be a row, so a file.
    a_tampered_snapshot_is_refused(300_000, |data, key| {
        let path = data.join("objects").join(key);
        let mut bytes = std::fs::read(&path).expect("a large snapshot is a file");
        // The file ends with its 8-byte footer; the body before it changes.
        let body = bytes.len() - 8;
        flip_last_four(&mut bytes[..body]);
        std::fs::write(&path, bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_tampered_snapshot_row_is_refused_with_checksum_mismatch() {
    use redb::ReadableTable;
    a_tampered_snapshot_is_refused(10, |data, key| {
        assert!(
            !data.join("objects").join(key).exists(),
            "a small snapshot is a row"
        );
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("objects");
        let db = redb::Database::create(data.join("objects.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let mut value = t
                .get(key)
                .unwrap()
                .expect("the snapshot's row")
                .value()
                .to_vec();
            // The row ends with its 4-byte CRC32C; the body before it changes.
            let body = value.len() - 4;
            flip_last_four(&mut value[..body]);
            t.insert(key, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_compact_command_uses_the_running_gateway_or_the_backends() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Session::fresh();
    let http = reqwest::Client::new();
    let gw = ChildGateway::start(&data, &[]).await;
    for i in 0..4 {
        crate::common::append(&http, &s.entries(&gw.base_url), json!([{"i": i}])).await;
    }
    let listen = gw.base_url.trim_start_matches("http://").to_string();
    let out = std::process::Command::new(crate::common::gateway_bin())
        .args(["compact", "--task", &s.task])
        .env("TG_LISTEN", &listen)
        .env("TG_DATA_DIR", &data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("compacted 1 transcript(s) via the gateway"),
        "{stdout}"
    );
    crate::common::append(&http, &s.entries(&gw.base_url), json!([{"i": 4}])).await;
    gw.terminate();
    // No gateway now: the command opens the backends itself.
    let out = std::process::Command::new(crate::common::gateway_bin())
        .args(["compact", "--task", &s.task, "--data-dir"])
        .arg(&data)
        .env(
            "TG_LISTEN",
            format!("127.0.0.1:{}", crate::common::free_port()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("compacted 1 transcript(s) via the backends directly"),
        "{stdout}"
    );
    assert!(stdout.contains("\"through\":5"), "{stdout}");
    let gw = ChildGateway::start(&data, &[]).await;
    let (status, entries) = crate::common::load(&http, &s.entries(&gw.base_url)).await;
    assert_eq!(status, 200);
    assert_eq!(entries, (0..5).map(|i| json!({"i": i})).collect::<Vec<_>>());
    gw.kill();
}

#[tokio::test]
async fn a_lagging_catalog_never_lets_a_compacted_sequence_number_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let key = key();
    {
        let engine = Engine::new(objects.clone(), catalog.clone(), config(0));
        for i in 1..=4 {
            append(&engine, &key, i).await;
        }
        engine.compact(&key, CompactOptions::FORCED).await.unwrap();
    }
    assert_eq!(
        object_names(&objects, &key).await,
        vec![keys::ObjectKind::Snapshot(Seq(4))]
    );
    // The catalog forgets the last append and the compaction (a failed write).
    let current = catalog.get_session(&key).await.unwrap().unwrap();
    let mut lagging = current.value.clone();
    lagging.head = Seq(3);
    lagging.parts = 3;
    lagging.compacted_through = Seq::ZERO;
    catalog
        .put_session(transcript_gateway::backend::SessionWrite {
            key: &key,
            record: &lagging,
            expected_version: current.version,
            idempotency: Vec::new(),
            independent: false,
        })
        .await
        .unwrap();
    let engine = Engine::new(objects, catalog, config(0));
    assert_eq!(
        append(&engine, &key, 5).await,
        Seq(5),
        "part 4 lives on in the snapshot"
    );
    assert_eq!(load(&engine, &key, 0).await, expected(1, 5));
}

fn lazy(grace: Duration) -> EngineConfig {
    EngineConfig {
        prefetch_bytes: 0,
        load_concurrency: 1,
        compaction_threshold: 0,
        compaction_grace: grace,
        ..EngineConfig::default()
    }
}

#[tokio::test]
async fn an_instance_with_a_stale_head_never_hides_its_append_behind_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    // Two gateway instances over one store. Compacted parts are deleted one
    // grace period after the compaction, and an instance re-reads a cached
    // head older than half of that, so it never appends into their gap.
    let grace = Duration::from_millis(400);
    let a = Engine::new(objects.clone(), catalog.clone(), lazy(grace));
    let b = Engine::new(objects.clone(), catalog.clone(), lazy(grace));
    let key = key();
    assert_eq!(append(&b, &key, 1).await, Seq(1));
    for i in 2..=10 {
        append(&a, &key, i).await;
    }
    a.compact(
        &key,
        CompactOptions {
            force: true,
            halt: Some(Halt::AfterRecord),
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(grace).await;
    // The grace period has passed on A's side: the covered parts go.
    assert_eq!(a.delete_covered(&key, Seq(10), None).await.unwrap(), 10);
    assert_eq!(
        append(&b, &key, 11).await,
        Seq(11),
        "B appends after the snapshot, not into its gap"
    );
    assert_eq!(load(&a, &key, 0).await, expected(1, 11));
    assert_eq!(
        object_names(&objects, &key).await,
        vec![
            keys::ObjectKind::Part(Seq(11)),
            keys::ObjectKind::Snapshot(Seq(10))
        ],
        "no orphan part is left behind the snapshot"
    );
}

#[tokio::test]
async fn a_delete_that_stopped_after_removing_objects_lets_the_key_start_over() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let key = key();
    {
        let engine = Engine::new(objects.clone(), catalog.clone(), config(0));
        for i in 1..=3 {
            append(&engine, &key, i).await;
        }
    }
    // The objects are gone but the catalog still names head 3.
    let kd = keys::incarnation_dir(&key, 1);
    for item in objects.list(&kd, None, false).await.unwrap().items {
        objects.delete(&item.key).await.unwrap();
    }
    let engine = Engine::new(objects, catalog, config(0));
    assert_eq!(
        append(&engine, &key, 7).await,
        Seq(1),
        "the key starts over"
    );
    assert_eq!(load(&engine, &key, 0).await, batch(7));
}

#[tokio::test]
async fn a_load_serves_what_existed_when_it_started_even_after_replanning() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(objects, catalog, lazy(Duration::ZERO));
    let key = key();
    for i in 1..=20 {
        append(&engine, &key, i).await;
    }
    let loaded = engine.load(&key, Seq::ZERO).await.unwrap().unwrap();
    assert_eq!(loaded.head, Seq(20));
    let mut stream = loaded.stream;
    let mut chunks = vec![stream.next().await.unwrap().unwrap()];
    // Parts 1..20 vanish into a snapshot, then 21..25 arrive: the re-planned
    // load must stop at 20.
    engine.compact(&key, CompactOptions::FORCED).await.unwrap();
    for i in 21..=25 {
        append(&engine, &key, i).await;
    }
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk.unwrap());
    }
    assert_eq!(
        jsonl_lines(&chunks),
        expected(1, 20),
        "the load stops at its head"
    );
}

#[tokio::test]
async fn a_load_cut_short_by_a_delete_ends_in_an_error_not_a_short_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let engine = Engine::new(objects.clone(), catalog, lazy(Duration::ZERO));
    let key = key();
    for i in 1..=30 {
        append(&engine, &key, i).await;
    }
    let mut stream = engine.load(&key, Seq::ZERO).await.unwrap().unwrap().stream;
    assert!(stream.next().await.unwrap().is_ok());
    engine.delete(&key, None).await.unwrap();
    // The deleted parts go in the background: wait until they are gone, so
    // the load cannot finish reading them first.
    let dir = keys::incarnation_dir(&key, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !objects
        .list(&dir, None, false)
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the delete removed nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        if chunk.is_err() {
            failed = true;
            break;
        }
    }
    assert!(
        failed,
        "a load whose parts were deleted must not end cleanly"
    );
}

/// Objects that count listing pages and GETs.
struct Counting {
    inner: Arc<dyn ObjectPort>,
    lists: std::sync::atomic::AtomicUsize,
    gets: std::sync::atomic::AtomicUsize,
}

impl Counting {
    fn take(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.lists.swap(0, SeqCst), self.gets.swap(0, SeqCst))
    }
}

#[async_trait::async_trait]
impl ObjectPort for Counting {
    async fn put_if_absent(
        &self,
        key: &str,
        body: bytes::Bytes,
        crc32c: u32,
    ) -> Result<(), transcript_gateway::backend::PortError> {
        self.inner.put_if_absent(key, body, crc32c).await
    }
    async fn get(
        &self,
        key: &str,
    ) -> Result<
        Option<transcript_gateway::backend::ObjectBody>,
        transcript_gateway::backend::PortError,
    > {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn list(
        &self,
        dir: &str,
        after: Option<&str>,
        recursive: bool,
    ) -> Result<
        transcript_gateway::backend::Page<transcript_gateway::backend::Listed>,
        transcript_gateway::backend::PortError,
    > {
        self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.list(dir, after, recursive).await
    }
    async fn delete(&self, key: &str) -> Result<(), transcript_gateway::backend::PortError> {
        self.inner.delete(key).await
    }
    async fn check(&self) -> Result<(), transcript_gateway::backend::PortError> {
        self.inner.check().await
    }
}

#[tokio::test]
async fn a_compacted_load_fetches_the_catalogs_snapshot_while_listing_only_the_parts_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let counting = Arc::new(Counting {
        inner: objects,
        lists: Default::default(),
        gets: Default::default(),
    });
    let engine = Engine::new(counting.clone(), catalog, lazy(Duration::from_secs(300)));
    let key = key();
    for i in 1..=6 {
        append(&engine, &key, i).await;
    }
    engine.compact(&key, CompactOptions::FORCED).await.unwrap();
    for i in 7..=8 {
        append(&engine, &key, i).await;
    }
    counting.take();
    assert_eq!(load(&engine, &key, 0).await, expected(1, 8));
    // One listing (the parts after the snapshot), the snapshot and two parts:
    // no listing to find the snapshot, which the catalog names.
    assert_eq!(counting.take(), (1, 3), "(listing pages, GETs) of one load");

    // A snapshot the catalog names but storage lost: the load lists, finds
    // the parts it covers (still there in the grace period) and serves them.
    let snapshot = keys::snapshot_key(&keys::incarnation_dir(&key, 1), Seq(6));
    counting.inner.delete(&snapshot).await.unwrap();
    counting.take();
    assert_eq!(load(&engine, &key, 0).await, expected(1, 8));
    // The concurrent listing and the snapshot's GET (absent), then the
    // listing for a snapshot and the one for the parts, and the 8 parts.
    assert_eq!(
        counting.take(),
        (3, 9),
        "(listing pages, GETs) of the fallback"
    );
}

/// Snapshots in chunks of about 200 bytes, so a few parts make several.
fn chunked(grace: Duration) -> EngineConfig {
    EngineConfig {
        compaction_threshold: 0,
        compaction_grace: grace,
        snapshot_chunk_bytes: 200,
        ..EngineConfig::default()
    }
}

/// An engine with `chunked(grace)` and a fresh key of 20 parts compacted
/// into snapshot 20; returns both and the compaction's report.
async fn compacted_in_chunks(
    objects: &Arc<dyn ObjectPort>,
    catalog: &Arc<dyn CatalogPort>,
    grace: Duration,
) -> (
    Engine,
    SessionKey,
    transcript_gateway::engine::CompactionReport,
) {
    let engine = Engine::new(objects.clone(), catalog.clone(), chunked(grace));
    let key = key();
    for i in 1..=20 {
        append(&engine, &key, i).await;
    }
    let report = engine
        .compact(&key, CompactOptions::FORCED)
        .await
        .unwrap()
        .unwrap();
    (engine, key, report)
}

/// A snapshot's header line, straight from storage, and the object's size.
async fn stored_header(
    objects: &Arc<dyn ObjectPort>,
    key: &SessionKey,
    through: u64,
) -> (Value, u64) {
    let snapshot = keys::snapshot_key(&keys::incarnation_dir(key, 1), Seq(through));
    let mut body = objects.get(&snapshot).await.unwrap().expect("the snapshot");
    let mut bytes = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap();
    let header: Value = serde_json::from_slice(line).unwrap();
    (header["tg_snapshot"].clone(), bytes.len() as u64)
}

fn chunk_names(header: &Value) -> Vec<String> {
    header["chunks"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_large_snapshot_is_written_in_chunks_and_the_next_lists_them_instead_of_rereading() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in
        crate::common::test_stores("chunked_snapshots", dir.path()).await
    {
        let (engine, key, report) = compacted_in_chunks(&objects, &catalog, Duration::ZERO).await;
        assert_eq!(report.through, Seq(20), "{backend}");
        let (first, stored) = stored_header(&objects, &key, 20).await;
        let first_chunks = chunk_names(&first);
        assert_eq!(first["v"], 3, "{backend}: {first}");
        assert!(first_chunks.len() >= 3, "{backend}: {first}");
        // The snapshot object is its header line alone; the report counts
        // the entries it holds, which are in the chunks.
        assert_eq!(stored, first.to_string().len() as u64 + 17, "{backend}");
        let listed: u64 = first["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["size"].as_u64().unwrap())
            .sum();
        assert_eq!(report.snapshot_bytes, listed, "{backend}");
        assert_eq!(load(&engine, &key, 0).await, expected(1, 20), "{backend}");
        assert_eq!(load(&engine, &key, 7).await, expected(8, 20), "{backend}");

        // The next compaction lists the first one's chunks as they are.
        for i in 21..=25 {
            append(&engine, &key, i).await;
        }
        engine
            .compact(&key, CompactOptions::FORCED)
            .await
            .unwrap()
            .unwrap();
        let (second, _) = stored_header(&objects, &key, 25).await;
        let second_chunks = chunk_names(&second);
        assert_eq!(second["v"], 3, "{backend}");
        assert_eq!(
            second_chunks[..first_chunks.len()],
            first_chunks[..],
            "{backend}"
        );
        assert!(second_chunks.len() > first_chunks.len(), "{backend}");
        // Grace 0: the parts and the first snapshot are gone, every chunk
        // the second lists is kept.
        let names = object_names(&objects, &key).await;
        let chunks = names
            .iter()
            .filter(|n| matches!(n, keys::ObjectKind::Chunk(_)))
            .count();
        assert_eq!(chunks, second_chunks.len(), "{backend}: {names:?}");
        assert_eq!(
            names.last(),
            Some(&keys::ObjectKind::Snapshot(Seq(25))),
            "{backend}"
        );
        assert_eq!(names.len(), chunks + 1, "{backend}: {names:?}");
        assert_eq!(load(&engine, &key, 0).await, expected(1, 25), "{backend}");
        assert_eq!(load(&engine, &key, 22).await, expected(23, 25), "{backend}");
        // A fresh engine (another instance) reads it the same.
        let other = Engine::new(objects.clone(), catalog.clone(), chunked(Duration::ZERO));
        assert_eq!(load(&other, &key, 0).await, expected(1, 25), "{backend}");
    }
}

#[tokio::test]
async fn chunks_no_snapshot_lists_are_cleaned_up_and_those_of_a_newer_run_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in crate::common::test_stores("chunk_cleanup", dir.path()).await
    {
        let (engine, key, _) = compacted_in_chunks(&objects, &catalog, Duration::ZERO).await;
        // A run for snapshot 20 that lost or died, and one for 99 under way.
        let dir = keys::incarnation_dir(&key, 1);
        let lost = format!("{dir}{}", keys::chunk_name(Seq(20), "lost", 0));
        let running = format!("{dir}{}", keys::chunk_name(Seq(99), "running", 0));
        for k in [&lost, &running] {
            let body = bytes::Bytes::from_static(b"{\"x\":1}\n");
            objects
                .put_if_absent(k, body.clone(), crc32c::crc32c(&body))
                .await
                .unwrap();
        }
        for i in 21..=22 {
            append(&engine, &key, i).await;
        }
        engine
            .compact(&key, CompactOptions::FORCED)
            .await
            .unwrap()
            .unwrap();
        assert!(
            objects.get(&lost).await.unwrap().is_none(),
            "{backend}: the unlisted chunk stayed"
        );
        assert!(
            objects.get(&running).await.unwrap().is_some(),
            "{backend}: a newer run's chunk went"
        );
        assert_eq!(load(&engine, &key, 0).await, expected(1, 22), "{backend}");
    }
}

#[tokio::test]
async fn a_chunk_whose_checksum_differs_from_the_snapshots_listing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let (engine, key, _) = compacted_in_chunks(&objects, &catalog, Duration::from_secs(300)).await;
    let (header, _) = stored_header(&objects, &key, 20).await;
    let chunk = format!(
        "{}{}",
        keys::incarnation_dir(&key, 1),
        chunk_names(&header)[1]
    );
    // Replaced by other bytes with their own (correct) checksum: only the
    // snapshot's listing can tell.
    objects.delete(&chunk).await.unwrap();
    let forged = bytes::Bytes::from_static(b"{\"batch\":999,\"e\":0}\n");
    objects
        .put_if_absent(&chunk, forged.clone(), crc32c::crc32c(&forged))
        .await
        .unwrap();
    let err = crate::common::engine_load(&engine, &key).await.unwrap_err();
    assert!(
        matches!(err, transcript_gateway::Error::ChecksumMismatch(_)),
        "{err:?}"
    );
    assert!(
        transcript_gateway::error::chain(&err).contains("the snapshot lists"),
        "{}",
        transcript_gateway::error::chain(&err)
    );
}
