//! The port conformance suite: one `pub async fn` per behaviour, each taking
//! a port and a namespace (a fresh key prefix, so runs can share a store),
//! and three entry points that run all of them: [`run_objects`],
//! [`run_catalog`] and [`run_catalog_races`]. The integration tests call the
//! entry points for every adapter (the embedded backend, SeaweedFS for S3,
//! moto for DynamoDB), so a check added here reaches every backend. A check
//! panics with a message naming the broken guarantee.
//!
//! Compiled for tests and with the `conformance` feature (which
//! `scripts/test` builds with), never into a release binary.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::value::RawValue;

use super::{
    BindOutcome, Binding, CatalogPort, IdempotencyRecord, ObjectPort, PortError, SessionRecord,
    SessionWrite, StoredBinding, TaskActivity, TaskCursor, TaskRow, WriterFence,
};
use crate::domain::clock::now_ms;
use crate::domain::{
    AppendReceipt, ProjectKey, Seq, SessionId, SessionKey, SessionRef, Subpath, TaskId,
};

async fn read_all(objects: &dyn ObjectPort, key: &str) -> Option<(Bytes, Option<u32>)> {
    let mut body = objects.get(key).await.expect("get")?;
    let mut buf = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        buf.extend_from_slice(&chunk.expect("read chunk"));
    }
    assert_eq!(
        buf.len() as u64,
        body.size,
        "get: size differs from the bytes read"
    );
    Some((Bytes::from(buf), body.crc32c))
}

/// A put creates the object once; a second put of the same key fails with
/// `AlreadyExists` and leaves the first body in place.
pub async fn put_if_absent_creates_once(objects: &dyn ObjectPort, ns: &str) {
    let key = format!("{ns}/a/part-1.jsonl");
    let first = Bytes::from_static(b"{\"n\":1}\n");
    objects
        .put_if_absent(&key, first.clone(), crc32c::crc32c(&first))
        .await
        .expect("first put");
    let second = Bytes::from_static(b"{\"n\":2}\n");
    match objects
        .put_if_absent(&key, second.clone(), crc32c::crc32c(&second))
        .await
    {
        Err(PortError::AlreadyExists(_)) => {}
        other => panic!("second put_if_absent must fail with AlreadyExists, got {other:?}"),
    }
    let (body, crc) = read_all(objects, &key).await.expect("object exists");
    assert_eq!(body, first, "the first body must survive");
    assert_eq!(
        crc,
        Some(crc32c::crc32c(&first)),
        "the stored CRC32C must come back"
    );
}

/// Of many concurrent puts to one key exactly one wins.
pub async fn concurrent_puts_have_one_winner(
    objects: Arc<dyn ObjectPort>,
    ns: &str,
    writers: usize,
) {
    let key = format!("{ns}/race/part-1.jsonl");
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let objects = objects.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let body = Bytes::from(format!("{{\"writer\":{i}}}\n"));
                let crc = crc32c::crc32c(&body);
                (i, objects.put_if_absent(&key, body, crc).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.expect("join");
        match result {
            Ok(()) => winners.push(i),
            Err(PortError::AlreadyExists(_)) => {}
            Err(e) => panic!("writer {i}: unexpected error {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one writer must win, got {winners:?}"
    );
    let (body, _) = read_all(objects.as_ref(), &key)
        .await
        .expect("object exists");
    assert_eq!(
        body,
        Bytes::from(format!("{{\"writer\":{}}}\n", winners[0]))
    );
}

/// Reading an absent key is `None`; deleting it succeeds; a deleted key is gone.
pub async fn absent_keys_read_as_none_and_delete_is_idempotent(objects: &dyn ObjectPort, ns: &str) {
    let key = format!("{ns}/gone/part-1.jsonl");
    assert!(objects.get(&key).await.expect("get absent").is_none());
    objects.delete(&key).await.expect("delete absent");
    let body = Bytes::from_static(b"{}\n");
    objects
        .put_if_absent(&key, body.clone(), crc32c::crc32c(&body))
        .await
        .expect("put");
    objects.delete(&key).await.expect("delete");
    assert!(objects.get(&key).await.expect("get deleted").is_none());
    objects
        .put_if_absent(&key, body.clone(), crc32c::crc32c(&body))
        .await
        .expect("a deleted key can be created again");
}

/// Listings are sorted, honour `start_after`, separate direct children from
/// deeper objects, and report sizes.
pub async fn listings_are_sorted_and_scoped(objects: &dyn ObjectPort, ns: &str) {
    let dir = format!("{ns}/list/");
    let names = ["b", "a", "c", "sub/x", "sub/deeper/y"];
    for name in names {
        let body = Bytes::from(format!("{{\"name\":\"{name}\"}}\n"));
        objects
            .put_if_absent(&format!("{dir}{name}"), body.clone(), crc32c::crc32c(&body))
            .await
            .expect("put");
    }
    let direct = objects.list(&dir, None, false).await.expect("list");
    let keys: Vec<_> = direct.items.iter().map(|l| l.key.clone()).collect();
    assert_eq!(
        keys,
        vec![format!("{dir}a"), format!("{dir}b"), format!("{dir}c")]
    );
    assert_eq!(direct.items[0].size, "{\"name\":\"a\"}\n".len() as u64);
    let after = objects
        .list(&dir, Some(&format!("{dir}a")), false)
        .await
        .expect("list");
    let keys: Vec<_> = after.items.iter().map(|l| l.key.clone()).collect();
    assert_eq!(keys, vec![format!("{dir}b"), format!("{dir}c")]);
    let all = objects
        .list(&dir, None, true)
        .await
        .expect("list recursive");
    let mut keys: Vec<_> = all.items.iter().map(|l| l.key.clone()).collect();
    assert_eq!(keys.len(), 5, "recursive listing: {keys:?}");
    let sorted = {
        let mut k = keys.clone();
        k.sort();
        k
    };
    assert_eq!(keys, sorted, "recursive listing must be sorted");
    keys.retain(|k| k.contains("deeper"));
    assert_eq!(keys, vec![format!("{dir}sub/deeper/y")]);
    let empty = objects
        .list(&format!("{ns}/nothing/"), None, false)
        .await
        .expect("list empty");
    assert!(empty.items.is_empty() && !empty.more);
}

/// A listing of more keys than one page says so and continues with `start_after`.
pub async fn long_listings_page(objects: &dyn ObjectPort, ns: &str, count: usize) {
    let dir = format!("{ns}/many/");
    let dir_ref = dir.as_str();
    let puts = futures::stream::iter(0..count)
        .map(|i| async move {
            let dir = dir_ref;
            let body = Bytes::from(format!("{{\"i\":{i}}}\n"));
            objects
                .put_if_absent(
                    &format!("{dir}k{i:06}"),
                    body.clone(),
                    crc32c::crc32c(&body),
                )
                .await
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(puts.iter().all(|r| r.is_ok()), "puts failed");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = objects
            .list(&dir, after.as_deref(), false)
            .await
            .expect("list");
        seen.extend(page.items.iter().map(|l| l.key.clone()));
        match (page.more, page.items.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => break,
        }
    }
    let expected: Vec<_> = (0..count).map(|i| format!("{dir}k{i:06}")).collect();
    assert_eq!(
        seen, expected,
        "paged listing must return every key once, in order"
    );
    // The same as one stream, from the start and from a cursor.
    let streamed: Vec<String> = objects
        .list_all(&dir, None, false)
        .map(|l| l.expect("list_all").key)
        .collect()
        .await;
    assert_eq!(streamed, expected, "list_all must stream every page");
    let from = count / 2;
    let rest: Vec<String> = objects
        .list_all(&dir, Some(expected[from].clone()), false)
        .map(|l| l.expect("list_all").key)
        .collect()
        .await;
    assert_eq!(
        rest,
        expected[from + 1..],
        "list_all continues after its cursor"
    );
}

fn key(task: &str, session: &str, subpath: Option<&str>) -> SessionKey {
    SessionKey {
        session: SessionRef {
            task_id: TaskId::new(task).expect("task id"),
            project_key: ProjectKey::new("-workspace-conformance").expect("project key"),
            session_id: SessionId::new(session).expect("session id"),
        },
        subpath: subpath.map(|s| Subpath::new(s).expect("subpath")),
    }
}

fn record(head: u64, mtime: u64) -> SessionRecord {
    SessionRecord {
        head: Seq(head),
        parts: head,
        bytes: head * 10,
        mtime,
        ..SessionRecord::default()
    }
}

/// Session records are compare-and-set: version 0 creates, the current
/// version updates, anything else fails and writes nothing.
pub async fn session_records_are_compare_and_set(catalog: &dyn CatalogPort, task: &str) {
    let k = key(task, "s1", None);
    assert!(catalog.get_session(&k).await.expect("get").is_none());
    let write = |rec: &SessionRecord, expected| {
        let rec = rec.clone();
        let k = k.clone();
        async move {
            catalog
                .put_session(SessionWrite {
                    key: &k,
                    record: &rec,
                    expected_version: expected,
                    idempotency: Vec::new(),
                    independent: false,
                })
                .await
        }
    };
    let v1 = write(&record(1, 100), 0).await.expect("create");
    assert!(v1 > 0);
    match write(&record(9, 900), 0).await {
        Err(PortError::PreconditionFailed(_)) => {}
        other => panic!("create over an existing record must fail, got {other:?}"),
    }
    let v2 = write(&record(2, 200), v1)
        .await
        .expect("update at current version");
    assert_ne!(v1, v2);
    match write(&record(9, 900), v1).await {
        Err(PortError::PreconditionFailed(_)) => {}
        other => panic!("update at a stale version must fail, got {other:?}"),
    }
    let got = catalog.get_session(&k).await.expect("get").expect("exists");
    assert_eq!(got.version, v2);
    assert_eq!(got.value, record(2, 200), "a failed CAS must not write");
    catalog.delete_session(&k).await.expect("delete");
    assert!(catalog.get_session(&k).await.expect("get").is_none());
    catalog.delete_session(&k).await.expect("delete absent");
}

/// Idempotency records written with a session record are stored with it
/// (one or several, replacing what their keys held), and not stored when the
/// compare-and-set fails; a record with a `prior` reads back whole.
pub async fn idempotency_records_commit_with_the_session(catalog: &dyn CatalogPort, task: &str) {
    let k = key(task, "s1", None);
    let receipt = AppendReceipt {
        seq: Seq(1),
        count: 2,
        skipped: 0,
        mtime: 123,
        summary: None,
    };
    let idem = IdempotencyRecord {
        fingerprint: "f1".into(),
        receipt: receipt.clone(),
        created_ms: 1,
        expires_ms: u64::MAX,
        part_dir: Some("t/p/s1/~i1/".into()),
    };
    // A record stored ahead of its part, with the record before it.
    let mut rec = record(1, 123);
    rec.summary = Some(RawValue::from_string(r#"{"title": "ahead"}"#.into()).expect("raw"));
    rec.prior = Some(Box::new(SessionRecord {
        summary: Some(
            RawValue::from_string(r#"{"title":"before","n":[1,2]}"#.into()).expect("raw"),
        ),
        ..record(0, 100)
    }));
    catalog
        .put_session(SessionWrite {
            key: &k,
            record: &rec,
            expected_version: 0,
            idempotency: vec![("key-1", &idem)],
            independent: false,
        })
        .await
        .expect("put with idempotency");
    let stored = catalog.get_session(&k).await.expect("get").expect("stored");
    assert_eq!(
        stored.value, rec,
        "a record stored ahead of its part must read back with its prior, summaries verbatim"
    );
    let found = catalog
        .get_idempotency(k.task_id(), "key-1")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(found, idem);
    let lost = catalog
        .put_session(SessionWrite {
            key: &k,
            record: &rec,
            expected_version: 0,
            idempotency: vec![("key-2", &idem)],
            independent: false,
        })
        .await;
    assert!(
        matches!(lost, Err(PortError::PreconditionFailed(_))),
        "got {lost:?}"
    );
    assert!(
        catalog
            .get_idempotency(k.task_id(), "key-2")
            .await
            .expect("get")
            .is_none(),
        "a failed write must not store its idempotency record"
    );
    // Two at once (an append's own and one it confirms), one replacing the
    // record stored under its key.
    let confirmed = IdempotencyRecord {
        part_dir: None,
        ..idem.clone()
    };
    let third = IdempotencyRecord {
        fingerprint: "f3".into(),
        ..confirmed.clone()
    };
    catalog
        .put_session(SessionWrite {
            key: &k,
            record: &record(2, 124),
            expected_version: 1,
            idempotency: vec![("key-1", &confirmed), ("key-3", &third)],
            independent: false,
        })
        .await
        .expect("put with two idempotency records");
    for (idem_key, expected) in [("key-1", &confirmed), ("key-3", &third)] {
        let got = catalog.get_idempotency(k.task_id(), idem_key).await;
        assert_eq!(got.expect("get").as_ref(), Some(expected), "{idem_key}");
    }
    // Records that stand on their own may be stored apart from the session
    // record; the compare-and-set still decides the session record.
    let ahead = IdempotencyRecord {
        fingerprint: "f4".into(),
        ..idem.clone()
    };
    let version = catalog
        .put_session(SessionWrite {
            key: &k,
            record: &record(3, 125),
            expected_version: 2,
            idempotency: vec![("key-4", &ahead)],
            independent: true,
        })
        .await
        .expect("put with an independent idempotency record");
    assert_eq!(version, 3);
    let got = catalog.get_idempotency(k.task_id(), "key-4").await;
    assert_eq!(got.expect("get").as_ref(), Some(&ahead));
    let lost = catalog
        .put_session(SessionWrite {
            key: &k,
            record: &record(9, 999),
            expected_version: 2,
            idempotency: vec![("key-5", &ahead)],
            independent: true,
        })
        .await;
    assert!(
        matches!(lost, Err(PortError::PreconditionFailed(_))),
        "got {lost:?}"
    );
    let current = catalog.get_session(&k).await.expect("get").expect("stored");
    assert_eq!((current.version, current.value.head), (3, Seq(3)));
}

/// Session listings hold main transcripts only, ascending, paged; subkey
/// listings hold the subpaths of one session.
pub async fn listings_separate_sessions_and_subkeys(catalog: &dyn CatalogPort, task: &str) {
    let keys = [
        key(task, "s-b", None),
        key(task, "s-a", None),
        key(task, "s-a", Some("subagents/agent-2")),
        key(task, "s-a", Some("subagents/agent-1")),
        key(task, "s-c", None),
        key(task, "s-ab", Some("x")),
    ];
    for (i, k) in keys.iter().enumerate() {
        catalog
            .put_session(SessionWrite {
                key: k,
                record: &record(1, i as u64 + 1),
                expected_version: 0,
                idempotency: Vec::new(),
                independent: false,
            })
            .await
            .expect("put");
    }
    let t = TaskId::new(task).expect("task");
    let p = ProjectKey::new("-workspace-conformance").expect("project");
    let page = catalog.list_sessions(&t, &p, None, 2).await.expect("list");
    let ids: Vec<_> = page.items.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(ids, vec!["s-a", "s-b"]);
    assert!(page.more, "a full page must say more may follow");
    let after = SessionId::new("s-b").expect("id");
    let page = catalog
        .list_sessions(&t, &p, Some(&after), 2)
        .await
        .expect("list");
    let ids: Vec<_> = page.items.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(
        ids,
        vec!["s-c"],
        "s-ab has only a subkey, so it is no main transcript"
    );
    assert!(!page.more);
    let session = keys[1].session.clone();
    let subs = catalog
        .list_subkeys(&session, None, 10)
        .await
        .expect("subkeys");
    let subs: Vec<_> = subs.items.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(subs, vec!["subagents/agent-1", "subagents/agent-2"]);
    let first = Subpath::new("subagents/agent-1").expect("subpath");
    let rest = catalog
        .list_subkeys(&session, Some(&first), 10)
        .await
        .expect("subkeys");
    assert_eq!(rest.items.len(), 1);
}

/// A task's records list across projects and subkeys in key order; tasks
/// list newest activity first from a cursor; an erasure removes every row
/// of its task and no other's; appends count per minute.
pub async fn tasks_list_by_activity_and_erase_whole(catalog: &dyn CatalogPort, ns: &str) {
    let (old, new) = (format!("{ns}-old"), format!("{ns}-new"));
    let keys = [
        key(&old, "s-b", None),
        key(&old, "s-a", Some("subagents/agent-1")),
        key(&old, "s-a", None),
    ];
    for k in &keys {
        catalog
            .put_session(SessionWrite {
                key: k,
                record: &record(1, 1),
                expected_version: 0,
                idempotency: Vec::new(),
                independent: false,
            })
            .await
            .expect("put");
    }
    let (t_old, t_new) = (
        TaskId::new(&old).expect("task"),
        TaskId::new(&new).expect("task"),
    );
    let first = catalog
        .list_task_sessions(&t_old, None, 2)
        .await
        .expect("list");
    let rest = catalog
        .list_task_sessions(&t_old, first.items.last().map(|(k, _)| k), 2)
        .await
        .expect("list");
    assert!(first.more && !rest.more);
    let listed: Vec<String> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|(k, _)| k.to_string())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let mut sorted = listed.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "each record once: {listed:?}");

    // Totals put and replaced; `None` for an unknown task creates nothing.
    let totals = |active_ms: u64, sessions: u64| TaskActivity {
        active_ms,
        sessions,
        ..TaskActivity::default()
    };
    catalog
        .put_task_activity(&t_old, Some(&totals(1_000, 1)))
        .await
        .expect("put");
    catalog
        .put_task_activity(&t_old, Some(&totals(2_000, 2)))
        .await
        .expect("replace");
    catalog
        .put_task_activity(&t_new, Some(&totals(3_000, 1)))
        .await
        .expect("put");
    let ghost = TaskId::new(format!("{ns}-ghost")).expect("task");
    catalog.put_task_activity(&ghost, None).await.expect("none");
    assert!(catalog.get_task(&ghost).await.expect("get").is_none());
    let mine = |rows: &[TaskRow]| -> Vec<String> {
        rows.iter()
            .map(|r| r.task_id.to_string())
            .filter(|t| t.starts_with(ns))
            .collect()
    };
    let all = catalog.list_tasks(None, 1000).await.expect("list");
    assert_eq!(
        mine(&all.items),
        vec![new.clone(), old.clone()],
        "newest first, once each"
    );
    let at = all
        .items
        .iter()
        .position(|r| r.task_id == t_new)
        .expect("listed");
    let cursor = TaskCursor {
        active_ms: 3_000,
        task_id: t_new.clone(),
    };
    let after = catalog.list_tasks(Some(&cursor), 1000).await.expect("list");
    assert_eq!(
        after.items.len(),
        all.items.len() - at - 1,
        "strictly after the cursor"
    );
    let row = catalog.get_task(&t_old).await.expect("get").expect("row");
    assert_eq!(row.activity, Some(totals(2_000, 2)));

    // Erasure: the item becomes a marker the fence reports (out of the
    // listing), then three records go; the other task stays.
    assert!(
        catalog.begin_erasure(&t_old, 7).await.expect("begin"),
        "it had an item"
    );
    let fence = catalog.writer_fence(&t_old).await.expect("fence");
    assert_eq!(fence.erasing_ms, Some(7));
    let all = catalog.list_tasks(None, 1000).await.expect("list");
    assert_eq!(mine(&all.items), vec![new.clone()]);
    assert_eq!(catalog.erase_task(&t_old).await.expect("erase"), 3);
    assert!(catalog
        .list_task_sessions(&t_old, None, 10)
        .await
        .expect("list")
        .items
        .is_empty());
    catalog
        .end_erasure(&t_old, 6)
        .await
        .expect("another erasure's end");
    assert_eq!(
        catalog
            .writer_fence(&t_old)
            .await
            .expect("fence")
            .erasing_ms,
        Some(7)
    );
    catalog.end_erasure(&t_old, 7).await.expect("end");
    assert!(catalog.get_task(&t_old).await.expect("get").is_none());
    assert_eq!(
        catalog.writer_fence(&t_old).await.expect("fence"),
        WriterFence::default()
    );
    // Again: nothing was there.
    assert!(!catalog.begin_erasure(&t_old, 8).await.expect("begin"));
    assert_eq!(catalog.erase_task(&t_old).await.expect("again"), 0);
    catalog.end_erasure(&t_old, 8).await.expect("end");
    assert!(catalog.get_task(&t_old).await.expect("get").is_none());

    // Appends per minute, summed over a range of minutes.
    let minute = 60_000 * (1_000_000 + (ns.len() as u64));
    let before = catalog
        .appends_between(minute, minute + 60_000)
        .await
        .expect("read");
    catalog.count_appends(minute + 5, 2).await.expect("count");
    catalog
        .count_appends(minute + 59_999, 3)
        .await
        .expect("count");
    catalog
        .count_appends(minute + 60_000, 4)
        .await
        .expect("count");
    let read = |from, to| catalog.appends_between(from, to);
    assert_eq!(
        read(minute, minute + 60_000).await.expect("read") - before,
        9
    );
    assert_eq!(
        read(minute + 60_000, minute + 60_000).await.expect("read") - before,
        4
    );
}

/// The first binding wins; later creates see it, equal or not.
pub async fn bindings_are_first_writer_wins(catalog: &dyn CatalogPort, task: &str) {
    let t = TaskId::new(task).expect("task");
    assert!(catalog.get_binding(&t).await.expect("get").is_none());
    let first = StoredBinding {
        binding: Binding {
            claude_session_id: "sess-1".into(),
            project_key: "-workspace-t".into(),
            cwd: "/workspace/t".into(),
        },
        created_ms: 1,
    };
    let mut second = first.clone();
    second.binding.claude_session_id = "sess-2".into();
    assert_eq!(
        catalog.create_binding(&t, &first).await.expect("create"),
        BindOutcome::Created(first.clone())
    );
    assert_eq!(
        catalog
            .create_binding(&t, &second)
            .await
            .expect("create again"),
        BindOutcome::Existing(first.clone())
    );
    assert_eq!(catalog.get_binding(&t).await.expect("get"), Some(first));
}

/// An idempotency record stored on its own keeps the first one while it
/// lives, and gives way to a new one once it has expired.
pub async fn a_lone_idempotency_record_keeps_the_first(catalog: &dyn CatalogPort, task: &str) {
    let t = TaskId::new(task).expect("task");
    let now = now_ms();
    let record = |seq: u64, print: &str, created_ms: u64| IdempotencyRecord {
        fingerprint: print.into(),
        receipt: AppendReceipt {
            seq: Seq(seq),
            count: 1,
            skipped: 0,
            mtime: 10 + seq,
            summary: None,
        },
        created_ms,
        expires_ms: created_ms + 60_000,
        part_dir: None,
    };
    let get = || async {
        let got = catalog.get_idempotency(&t, "k").await.expect("get");
        got.map(|r| (r.fingerprint, r.receipt.seq, r.expires_ms))
    };
    catalog
        .put_idempotency(&t, "k", &record(3, "first", now))
        .await
        .expect("put");
    catalog
        .put_idempotency(&t, "k", &record(4, "second", now + 59_999))
        .await
        .expect("put again");
    assert_eq!(
        get().await,
        Some(("first".into(), Seq(3), now + 60_000)),
        "the first stays while it lives"
    );
    catalog
        .put_idempotency(&t, "k", &record(5, "third", now + 60_000))
        .await
        .expect("put after expiry");
    assert_eq!(
        get().await,
        Some(("third".into(), Seq(5), now + 120_000)),
        "an expired record gives way"
    );
}

/// An expired idempotency record is still returned as stored: whether it
/// counts is the engine's decision, the same on every catalog.
pub async fn expired_idempotency_records_are_returned_as_stored(
    catalog: &dyn CatalogPort,
    task: &str,
) {
    let k = key(task, "s1", None);
    let old = IdempotencyRecord {
        fingerprint: "f-old".into(),
        receipt: AppendReceipt {
            seq: Seq(1),
            count: 1,
            skipped: 0,
            mtime: 5,
            summary: None,
        },
        created_ms: 1_000,
        expires_ms: 2_000,
        part_dir: None,
    };
    catalog
        .put_session(SessionWrite {
            key: &k,
            record: &record(1, 5),
            expected_version: 0,
            idempotency: vec![("old-key", &old)],
            independent: false,
        })
        .await
        .expect("put");
    let got = catalog
        .get_idempotency(k.task_id(), "old-key")
        .await
        .expect("get");
    assert_eq!(got, Some(old.clone()));
    assert!(got.is_some_and(|r| r.expired(now_ms())));
}

/// Mirror failures are listed newest first and page with a cursor.
pub async fn failures_list_newest_first_and_page(catalog: &dyn CatalogPort, task: &str) {
    use crate::domain::{FailureOrigin, MirrorFailure};
    // Far in the future, so no other test's failure sorts before ours.
    let base = now_ms() + 400 * 24 * 3600 * 1000;
    let failures: Vec<MirrorFailure> = (0..5u64)
        .map(|i| MirrorFailure {
            id: format!("{task}-{i}"),
            at_ms: base + i,
            task_id: task.into(),
            project_key: Some("-workspace-t".into()),
            session_id: Some("s1".into()),
            subpath: (i == 2).then(|| "subagents/a".to_string()),
            reason: if i % 2 == 0 {
                "client_reported"
            } else {
                "backend_unavailable"
            }
            .into(),
            origin: if i % 2 == 0 {
                FailureOrigin::Client
            } else {
                FailureOrigin::Gateway
            },
            detail: format!("failure {i}"),
            request_id: (i % 2 == 1).then(|| format!("req-{i}")),
        })
        .collect();
    for f in &failures {
        catalog.record_failure(f).await.expect("record");
    }
    let first = catalog.list_failures(None, 3).await.expect("list");
    assert!(first.more);
    let newest: Vec<_> = failures.iter().rev().take(3).cloned().collect();
    assert_eq!(first.items, newest);
    let cursor = first.items.last().expect("last").sort_key();
    let second = catalog.list_failures(Some(&cursor), 2).await.expect("list");
    let next: Vec<_> = failures.iter().rev().skip(3).take(2).cloned().collect();
    assert_eq!(second.items, next);
}

/// Writer epochs start at 0 and every bump returns a new, higher value, also
/// under concurrency.
pub async fn epochs_increase_atomically(catalog: Arc<dyn CatalogPort>, task: &str, bumps: usize) {
    let t = TaskId::new(task).expect("task");
    assert_eq!(catalog.writer_fence(&t).await.expect("epoch").epoch, 0);
    let tasks: Vec<_> = (0..bumps)
        .map(|_| {
            let c = catalog.clone();
            let t = t.clone();
            tokio::spawn(async move { c.bump_epoch(&t).await.expect("bump") })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.expect("join"));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (1..=bumps as u64).collect::<Vec<_>>(),
        "each bump must hand out a distinct epoch"
    );
    assert_eq!(
        catalog.writer_fence(&t).await.expect("epoch").epoch,
        bumps as u64
    );
}

/// Runs every object-port check under `ns`, with `racers` concurrent
/// creates of one key and a listing of `long_listing` objects; returns the
/// names of the checks run.
pub async fn run_objects(
    objects: Arc<dyn ObjectPort>,
    ns: &str,
    racers: usize,
    long_listing: usize,
) -> Vec<&'static str> {
    let o = objects.as_ref();
    put_if_absent_creates_once(o, &format!("{ns}-create")).await;
    concurrent_puts_have_one_winner(objects.clone(), &format!("{ns}-race"), racers).await;
    absent_keys_read_as_none_and_delete_is_idempotent(o, &format!("{ns}-absent")).await;
    listings_are_sorted_and_scoped(o, &format!("{ns}-list")).await;
    long_listings_page(o, &format!("{ns}-long"), long_listing).await;
    vec![
        "put_if_absent_creates_once",
        "concurrent_puts_have_one_winner",
        "absent_keys_read_as_none_and_delete_is_idempotent",
        "listings_are_sorted_and_scoped",
        "long_listings_page",
    ]
}

/// Runs every sequential catalog-port check, each on a fresh task under
/// `ns`; returns the names of the checks run.
pub async fn run_catalog(catalog: &dyn CatalogPort, ns: &str) -> Vec<&'static str> {
    session_records_are_compare_and_set(catalog, &format!("{ns}-cas")).await;
    idempotency_records_commit_with_the_session(catalog, &format!("{ns}-idem")).await;
    listings_separate_sessions_and_subkeys(catalog, &format!("{ns}-list")).await;
    bindings_are_first_writer_wins(catalog, &format!("{ns}-bind")).await;
    a_lone_idempotency_record_keeps_the_first(catalog, &format!("{ns}-lone")).await;
    expired_idempotency_records_are_returned_as_stored(catalog, &format!("{ns}-exp")).await;
    failures_list_newest_first_and_page(catalog, &format!("{ns}-fail")).await;
    tasks_list_by_activity_and_erase_whole(catalog, &format!("{ns}-tasks")).await;
    vec![
        "session_records_are_compare_and_set",
        "idempotency_records_commit_with_the_session",
        "listings_separate_sessions_and_subkeys",
        "bindings_are_first_writer_wins",
        "a_lone_idempotency_record_keeps_the_first",
        "expired_idempotency_records_are_returned_as_stored",
        "failures_list_newest_first_and_page",
        "tasks_list_by_activity_and_erase_whole",
    ]
}

/// Runs the catalog's concurrency checks (`bumps` racing epoch bumps);
/// returns the names of the checks run.
pub async fn run_catalog_races(
    catalog: Arc<dyn CatalogPort>,
    ns: &str,
    bumps: usize,
) -> Vec<&'static str> {
    epochs_increase_atomically(catalog, &format!("{ns}-epochs"), bumps).await;
    vec!["epochs_increase_atomically"]
}
