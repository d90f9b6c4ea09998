//! One incarnation per load: a delete seals a transcript's incarnation and
//! starts the next, so a load is wholly one incarnation, and an append
//! acknowledged through an instance that still cached the old one lands in
//! the new one (never in a deleted directory nobody reads). Also: the layout
//! from before incarnations is read as it is and migrated by the next write,
//! and a deleted incarnation's objects go once the grace period has passed.
//! Each test runs on the embedded backend and, when the emulators run, on
//! S3 + DynamoDB, with two engines over the same stores standing for two
//! gateway instances (each with its own cached heads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Mutex;
use transcript_gateway::backend::{CatalogPort, ObjectPort, SessionRecord, SessionWrite};
use transcript_gateway::domain::{Seq, SessionKey};
use transcript_gateway::engine::{keys, Engine, EngineConfig};

use crate::common::{engine_append, engine_load, fresh_key, test_stores};

fn engines(
    objects: &Arc<dyn ObjectPort>,
    catalog: &Arc<dyn CatalogPort>,
    grace: Duration,
) -> [Engine; 2] {
    let config = EngineConfig {
        compaction_grace: grace,
        compaction_threshold: 0,
        ..EngineConfig::default()
    };
    [
        Engine::new(objects.clone(), catalog.clone(), config.clone()),
        Engine::new(objects.clone(), catalog.clone(), config),
    ]
}

async fn load(engine: &Engine, key: &SessionKey) -> Vec<Value> {
    engine_load(engine, key)
        .await
        .expect("load")
        .unwrap_or_default()
}

#[tokio::test]
async fn an_append_through_an_instance_that_cached_the_old_incarnation_is_in_every_later_load() {
    let test =
        "an_append_through_an_instance_that_cached_the_old_incarnation_is_in_every_later_load";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let [one, two] = engines(&objects, &catalog, Duration::from_secs(300));
        let key = fresh_key();
        engine_append(&one, &key, &[json!({"old": 1})])
            .await
            .unwrap();
        engine_append(&two, &key, &[json!({"old": 2})])
            .await
            .unwrap();
        // Instance two deletes and re-creates the key; one still caches it.
        two.delete(&key, None).await.unwrap();
        assert_eq!(engine_load(&two, &key).await.unwrap(), None, "{backend}");
        let first = engine_append(&two, &key, &[json!({"new": 1})])
            .await
            .unwrap();
        assert_eq!(
            first.seq,
            Seq(1),
            "{backend}: the new incarnation starts at 1"
        );
        let late = engine_append(&one, &key, &[json!({"new": 2})])
            .await
            .unwrap();
        assert_eq!(
            late.seq,
            Seq(2),
            "{backend}: the stale instance wrote into the new incarnation"
        );
        let expected = vec![json!({"new": 1}), json!({"new": 2})];
        assert_eq!(load(&two, &key).await, expected, "{backend}");
        assert_eq!(load(&one, &key).await, expected, "{backend}");
        // And a delete through the stale instance closes the new one.
        one.delete(&key, None).await.unwrap();
        engine_append(&two, &key, &[json!({"third": 1})])
            .await
            .unwrap();
        assert_eq!(
            load(&one, &key).await,
            vec![json!({"third": 1})],
            "{backend}"
        );
    }
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn appends_deletes_and_loads_through_two_instances_always_match_the_model() {
    let test = "appends_deletes_and_loads_through_two_instances_always_match_the_model";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let engines = engines(&objects, &catalog, Duration::from_secs(300));
        let key = fresh_key();
        let mut model: Vec<Value> = Vec::new();
        let mut rng = Lcg(7);
        let mut counts = [0usize; 3];
        for step in 0..160 {
            let engine = &engines[rng.next(2) as usize];
            match rng.next(10) {
                0 => {
                    engine.delete(&key, None).await.unwrap();
                    model.clear();
                    counts[0] += 1;
                }
                1..=6 => {
                    let entry = json!({"step": step});
                    let receipt = engine_append(engine, &key, std::slice::from_ref(&entry))
                        .await
                        .unwrap();
                    model.push(entry);
                    assert_eq!(
                        receipt.seq,
                        Seq(model.len() as u64),
                        "{backend} step {step}"
                    );
                    counts[1] += 1;
                }
                _ => {
                    let got = engine_load(engine, &key).await.unwrap();
                    let want = (!model.is_empty()).then(|| model.clone());
                    assert_eq!(got, want, "{backend} step {step}");
                    counts[2] += 1;
                }
            }
        }
        assert!(
            counts.iter().all(|&c| c > 5),
            "{backend}: every kind ran: {counts:?}"
        );
    }
}

#[tokio::test]
async fn loads_racing_deletes_and_recreates_are_each_wholly_one_incarnation() {
    let test = "loads_racing_deletes_and_recreates_are_each_wholly_one_incarnation";
    const GENERATIONS: u64 = 12;
    const BATCHES: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let engines = Arc::new(engines(&objects, &catalog, Duration::from_secs(300)));
        let key = fresh_key();
        // What the writer has sent, per generation, before each append.
        let sent: Arc<Mutex<Vec<Vec<Value>>>> = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut loaders = Vec::new();
        for l in 0..2usize {
            let (engines, key, sent, done) =
                (engines.clone(), key.clone(), sent.clone(), done.clone());
            loaders.push(tokio::spawn(async move {
                let mut checked = 0usize;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let got = match engine_load(&engines[l], &key).await {
                        Ok(Some(entries)) => entries,
                        Ok(None) => continue,
                        // A load whose incarnation is deleted under it may
                        // fail cleanly; it must never mix.
                        Err(transcript_gateway::Error::Conflict(_)) => continue,
                        Err(e) => panic!("loader {l}: {e}"),
                    };
                    let Some(generation) = got.first().map(|e| e["gen"].as_u64().unwrap()) else {
                        continue;
                    };
                    assert!(
                        got.iter().all(|e| e["gen"] == generation),
                        "loader {l}: one load mixed incarnations: {got:?}"
                    );
                    let sent = sent.lock().await;
                    let written = &sent[generation as usize];
                    assert_eq!(
                        got.as_slice(),
                        &written[..got.len()],
                        "loader {l}: a prefix of generation {generation}, in order"
                    );
                    checked += 1;
                }
                checked
            }));
        }
        let mut rng = Lcg(11);
        for generation in 0..GENERATIONS {
            if generation > 0 {
                engines[rng.next(2) as usize]
                    .delete(&key, None)
                    .await
                    .unwrap();
            }
            sent.lock().await.push(Vec::new());
            for b in 0..BATCHES {
                let entry = json!({"gen": generation, "b": b});
                sent.lock().await[generation as usize].push(entry.clone());
                let receipt = engine_append(&engines[rng.next(2) as usize], &key, &[entry])
                    .await
                    .unwrap();
                assert_eq!(
                    receipt.seq,
                    Seq(b + 1),
                    "{backend}: generation {generation}"
                );
            }
            // Every acknowledged append of this generation is loadable through both.
            for engine in engines.iter() {
                assert_eq!(
                    load(engine, &key).await,
                    sent.lock().await[generation as usize],
                    "{backend}: generation {generation}"
                );
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut checked = 0;
        for loader in loaders {
            checked += loader.await.unwrap();
        }
        assert!(checked > 0, "{backend}: the loaders checked loads");
        eprintln!("{test} [{backend}]: {checked} concurrent loads checked");
    }
}

/// Puts `body` at `key` with its CRC32C, as the layout before incarnations stored it.
async fn put(objects: &dyn ObjectPort, key: &str, body: &[u8]) {
    objects
        .put_if_absent(
            key,
            bytes::Bytes::copy_from_slice(body),
            crc32c::crc32c(body),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn the_layout_before_incarnations_loads_as_it_is_and_is_migrated_by_the_next_write() {
    let test = "the_layout_before_incarnations_loads_as_it_is_and_is_migrated_by_the_next_write";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let [one, two] = engines(&objects, &catalog, Duration::ZERO);
        for with_snapshot in [false, true] {
            let key = fresh_key();
            let legacy = keys::transcript_dir(&key);
            // Three parts as the gateway wrote them before incarnations: no
            // header, no chain; optionally the first two in a version-1 snapshot.
            let parts = [
                "{\"p\":1}\n",
                "{\"p\":2,\"a\":1}\n{\"p\":2,\"a\":2}\n",
                "{\"p\":3}\n",
            ];
            if with_snapshot {
                let snapshot = format!(
                    "{{\"tg_snapshot\":{{\"v\":1,\"through\":2,\"counts\":[1,2]}}}}\n{}{}",
                    parts[0], parts[1]
                );
                put(
                    objects.as_ref(),
                    &keys::snapshot_key(&legacy, Seq(2)),
                    snapshot.as_bytes(),
                )
                .await;
                put(
                    objects.as_ref(),
                    &keys::part_key(&legacy, Seq(3)),
                    parts[2].as_bytes(),
                )
                .await;
            } else {
                for (i, p) in parts.iter().enumerate() {
                    put(
                        objects.as_ref(),
                        &keys::part_key(&legacy, Seq(i as u64 + 1)),
                        p.as_bytes(),
                    )
                    .await;
                }
            }
            // ... and a catalog record from then (no incarnation field).
            let old: SessionRecord = serde_json::from_value(json!({
                "head": 3, "parts": 3, "bytes": 40, "mtime": 1000,
                "summary": {"title": "kept"}, "summary_version": 2, "summary_mtime": 1000
            }))
            .unwrap();
            catalog
                .put_session(SessionWrite {
                    key: &key,
                    record: &old,
                    expected_version: 0,
                    idempotency: Vec::new(),
                    independent: false,
                })
                .await
                .unwrap();
            let before: Vec<Value> = vec![
                json!({"p": 1}),
                json!({"p": 2, "a": 1}),
                json!({"p": 2, "a": 2}),
                json!({"p": 3}),
            ];
            assert_eq!(
                load(&one, &key).await,
                before,
                "{backend} snapshot={with_snapshot}"
            );

            // The next write migrates: numbering goes on, nothing is lost.
            let receipt = engine_append(&two, &key, &[json!({"p": 4})]).await.unwrap();
            assert_eq!(receipt.seq, Seq(4), "{backend}");
            let mut after = before.clone();
            after.push(json!({"p": 4}));
            assert_eq!(load(&one, &key).await, after, "{backend}");
            assert_eq!(load(&two, &key).await, after, "{backend}");
            let record = catalog.get_session(&key).await.unwrap().unwrap().value;
            assert_eq!((record.incarnation, record.head), (1, Seq(4)), "{backend}");
            assert_eq!(
                record.summary.as_ref().map(|s| s.get()),
                Some("{\"title\":\"kept\"}")
            );
            let migrated = keys::incarnation_dir(&key, 1);
            let names: Vec<_> = objects
                .list(&migrated, None, false)
                .await
                .unwrap()
                .items
                .iter()
                .filter_map(|i| keys::parse(&migrated, &i.key))
                .collect();
            assert_eq!(
                names,
                vec![
                    keys::ObjectKind::Part(Seq(4)),
                    keys::ObjectKind::Snapshot(Seq(3))
                ],
                "{backend}"
            );
            // With no grace period the old layout is deleted in the background.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let left = objects.list(&legacy, None, false).await.unwrap().items;
                let left: Vec<_> = left
                    .iter()
                    .filter(|i| keys::parse(&legacy, &i.key).is_some())
                    .collect();
                if left.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{backend}: old layout left: {left:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(load(&two, &key).await, after, "{backend}");
        }
    }
}

#[tokio::test]
async fn a_deleted_transcript_is_gone_at_once_and_its_objects_after_the_grace_period() {
    let test = "a_deleted_transcript_is_gone_at_once_and_its_objects_after_the_grace_period";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in test_stores(test, dir.path()).await {
        let [one, two] = engines(&objects, &catalog, Duration::from_millis(1500));
        let key = fresh_key();
        let sub = SessionKey {
            subpath: Some(transcript_gateway::domain::Subpath::new("subagents/a").unwrap()),
            ..key.clone()
        };
        for i in 0..3 {
            engine_append(&one, &key, &[json!({"i": i})]).await.unwrap();
            engine_append(&one, &sub, &[json!({"s": i})]).await.unwrap();
        }
        two.delete(&key, None).await.unwrap();
        assert_eq!(
            engine_load(&one, &key).await.unwrap(),
            None,
            "{backend}: gone at once"
        );
        assert_eq!(
            engine_load(&one, &sub).await.unwrap(),
            None,
            "{backend}: subkeys too"
        );
        let stored = |k: SessionKey| {
            let objects = objects.clone();
            async move {
                let dir = keys::incarnation_dir(&k, 1);
                let page = objects.list(&dir, None, false).await.unwrap();
                // (SeaweedFS may list an empty directory marker: not an object of ours.)
                page.items
                    .iter()
                    .filter(|i| keys::parse(&dir, &i.key).is_some())
                    .count()
            }
        };
        assert!(
            stored(key.clone()).await > 0,
            "{backend}: kept for loads already reading"
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        // Objects first, then the record forgets the incarnation.
        loop {
            let left = (stored(key.clone()).await, stored(sub.clone()).await);
            let forgotten = catalog
                .get_session(&key)
                .await
                .unwrap()
                .is_some_and(|r| r.value.retired.is_empty());
            if left == (0, 0) && forgotten {
                break;
            }
            if Instant::now() > deadline {
                let records = (
                    catalog.get_session(&key).await.unwrap().map(|r| r.value),
                    catalog.get_session(&sub).await.unwrap().map(|r| r.value),
                );
                panic!("{backend}: objects still there (main, sub): {left:?}; records {records:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let record = catalog.get_session(&key).await.unwrap().unwrap().value;
        assert_eq!(record.incarnation, 2, "{backend}");
        assert!(
            record.retired.is_empty(),
            "{backend}: forgotten once deleted"
        );
        // The key starts over, in its next incarnation.
        assert_eq!(
            engine_append(&one, &key, &[json!({"again": 1})])
                .await
                .unwrap()
                .seq,
            Seq(1)
        );
        assert_eq!(
            load(&two, &key).await,
            vec![json!({"again": 1})],
            "{backend}"
        );
    }
}
