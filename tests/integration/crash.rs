//! Exactly once across crashes: a gateway that dies after a part is durable
//! but before the catalog records it leaves the part carrying the append's
//! idempotency key, so the client's retry on another gateway finds it and
//! gets the first answer (same `seq` and `mtime`), and nothing is stored
//! twice. The crash is the `append::after_part` failpoint, which aborts the
//! process right between the two writes (built with `--features
//! failpoints`; `scripts/test` always is). The other way round,
//! `append::after_record` aborts once the record (written at the same time
//! as the part) is stored and before the part is: the retry writes it once.
//! Each test runs on the embedded backend and, when the emulators run, on
//! S3 + DynamoDB.

#[cfg(feature = "failpoints")]
mod armed {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use serde_json::{json, Value};
    use transcript_gateway::backend::embedded::FsObjects;
    use transcript_gateway::backend::ObjectPort;
    use transcript_gateway::domain::{ProjectKey, Seq, SessionId, SessionKey, SessionRef, TaskId};
    use transcript_gateway::engine::{keys, part};

    use crate::common::{AwsBackends, ChildGateway, Session};

    /// The backends to run on: embedded always, S3 + DynamoDB when available.
    fn backends(test: &str) -> Vec<(&'static str, Option<AwsBackends>)> {
        let mut out = vec![("embedded", None)];
        if let Some(aws) = AwsBackends::start(test) {
            out.push(("s3+dynamodb", Some(aws)));
        }
        out
    }

    async fn object_port(data: &Path, aws: &Option<AwsBackends>) -> Arc<dyn ObjectPort> {
        match aws {
            Some(a) => a.ports().await.0,
            None => Arc::new(FsObjects::open(data).expect("objects")),
        }
    }

    fn session_key(s: &Session) -> SessionKey {
        SessionKey::main(SessionRef {
            task_id: TaskId::new(s.task.clone()).unwrap(),
            project_key: ProjectKey::new(s.project.clone()).unwrap(),
            session_id: SessionId::new(s.session.clone()).unwrap(),
        })
    }

    /// The header of part `seq` of the key's first incarnation, read straight
    /// from storage.
    async fn stored_header(
        objects: &dyn ObjectPort,
        key: &SessionKey,
        seq: u64,
    ) -> part::PartHeader {
        let dir = keys::incarnation_dir(key, 1);
        let mut body = objects
            .get(&keys::part_key(&dir, Seq(seq)))
            .await
            .unwrap()
            .expect("the part is durable");
        let mut bytes = Vec::new();
        while let Some(chunk) = body.stream.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        part::decode(Seq(seq), bytes.into()).unwrap().header
    }

    async fn post(
        http: &reqwest::Client,
        url: &str,
        key: &str,
        entries: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let resp = http
            .post(url)
            .header("idempotency-key", key)
            .json(&json!({ "entries": entries }))
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn load(http: &reqwest::Client, url: &str) -> Vec<Value> {
        crate::common::load(http, url).await.1
    }

    #[tokio::test]
    async fn a_retry_after_a_crash_between_part_and_record_gets_the_first_answer_and_one_copy() {
        let test =
            "a_retry_after_a_crash_between_part_and_record_gets_the_first_answer_and_one_copy";
        for (backend, aws) in backends(test) {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let mut env = aws.as_ref().map(|a| a.env()).unwrap_or_default();
            let s = Session::fresh();
            let http = reqwest::Client::new();
            let batches: Vec<Value> = (0..3).map(|i| json!([{"i": i, "b": backend}])).collect();

            // A writes two parts normally and dies between the third part and
            // its catalog record.
            env.push(("FAILPOINTS", "append::after_part=2*off->return"));
            let a = ChildGateway::start(&data, &env).await;
            let url = s.entries(&a.base_url);
            for (i, b) in batches.iter().take(2).enumerate() {
                let (status, body) = post(&http, &url, &format!("k{i}"), b).await.unwrap();
                assert_eq!(status, 200, "{backend}: {body}");
            }
            let lost = post(&http, &url, "k2", &batches[2]).await;
            assert!(
                lost.is_err(),
                "{backend}: the crashed append was never answered: {lost:?}"
            );
            let status = a.wait_exit(Duration::from_secs(20)).expect("A died");
            assert!(!status.success(), "{backend}: A aborted");
            env.pop();

            // The part is durable and carries the key; the catalog never saw it.
            let key = session_key(&s);
            // (The embedded store is opened and closed again before B
            // starts: one process per data directory.)
            let header = {
                let objects = object_port(&data, &aws).await;
                stored_header(objects.as_ref(), &key, 3).await
            };
            assert_eq!(header.idem.as_deref(), Some("k2"), "{backend}");

            // The client retries on B: one copy, the answer A would have given.
            let b = ChildGateway::start(&data, &env).await;
            let url = s.entries(&b.base_url);
            let (status, first) = post(&http, &url, "k2", &batches[2]).await.unwrap();
            assert_eq!(status, 200, "{backend}: {first}");
            assert_eq!(first["data"]["seq"], 3, "{backend}");
            assert_eq!(first["data"]["count"], 1, "{backend}");
            assert_eq!(
                first["data"]["mtime"], header.mtime,
                "{backend}: the first answer's mtime"
            );
            let (status, again) = post(&http, &url, "k2", &batches[2]).await.unwrap();
            assert_eq!(
                (status, &again),
                (200, &first),
                "{backend}: replays the same answer"
            );
            let (status, other) = post(&http, &url, "k2", &json!([{"other": true}]))
                .await
                .unwrap();
            assert_eq!(
                (status, other["error"]["code"].as_str()),
                (409, Some("idempotency_conflict")),
                "{backend}"
            );
            let expected: Vec<Value> = batches
                .iter()
                .flat_map(|b| b.as_array().unwrap().clone())
                .collect();
            assert_eq!(
                load(&http, &url).await,
                expected,
                "{backend}: each batch once"
            );
            let (status, next) = post(&http, &url, "k3", &json!([{"i": 3}])).await.unwrap();
            assert_eq!(
                (status, next["data"]["seq"].as_u64()),
                (200, Some(4)),
                "{backend}"
            );
            b.kill();
        }
    }

    async fn post_with_summary(
        http: &reqwest::Client,
        url: &str,
        key: &str,
        entries: &Value,
        title: &str,
        expected_version: u64,
    ) -> Result<(u16, Value), reqwest::Error> {
        let resp = http
            .post(url)
            .header("idempotency-key", key)
            .json(&json!({
                "entries": entries,
                "summary": {"data": {"title": title}, "expected_version": expected_version},
            }))
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    #[tokio::test]
    async fn an_append_that_dies_after_its_record_and_before_its_part_is_written_once_by_its_retry()
    {
        let test = "an_append_that_dies_after_its_record_and_before_its_part";
        for (backend, aws) in backends(test) {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let mut env = aws.as_ref().map(|a| a.env()).unwrap_or_default();
            let s = Session::fresh();
            let http = reqwest::Client::new();
            let batches: Vec<Value> = (0..3).map(|i| json!([{"i": i, "b": backend}])).collect();

            // A writes two appends and dies after the third one's catalog
            // record, before its part: the record counts a part that is
            // never written, and the idempotency record names it.
            env.push(("FAILPOINTS", "append::after_record=2*off->return"));
            let a = ChildGateway::start(&data, &env).await;
            let url = s.entries(&a.base_url);
            for (i, b) in batches.iter().take(2).enumerate() {
                let title = format!("t{i}");
                let (status, body) =
                    post_with_summary(&http, &url, &format!("k{i}"), b, &title, i as u64)
                        .await
                        .unwrap();
                assert_eq!(status, 200, "{backend}: {body}");
            }
            let lost = post_with_summary(&http, &url, "k2", &batches[2], "t2", 2).await;
            assert!(
                lost.is_err(),
                "{backend}: the crashed append was never answered: {lost:?}"
            );
            let status = a.wait_exit(Duration::from_secs(20)).expect("A died");
            assert!(!status.success(), "{backend}: A aborted");
            env.pop();
            let key = session_key(&s);
            {
                let objects = object_port(&data, &aws).await;
                let part = keys::part_key(&keys::incarnation_dir(&key, 1), Seq(3));
                assert!(
                    objects.get(&part).await.unwrap().is_none(),
                    "{backend}: the third part was never written"
                );
            }

            // B loads what was acknowledged, intact: the record's count of
            // the dead append is no anchor.
            let b = ChildGateway::start(&data, &env).await;
            let url = s.entries(&b.base_url);
            let acknowledged: Vec<Value> = batches[..2]
                .iter()
                .flat_map(|b| b.as_array().unwrap().clone())
                .collect();
            assert_eq!(load(&http, &url).await, acknowledged, "{backend}");

            // The retry is written (not answered from the dead append's
            // idempotency record), once, on the summary acknowledged last.
            let (status, retry) = post_with_summary(&http, &url, "k2", &batches[2], "t2", 2)
                .await
                .unwrap();
            assert_eq!(status, 200, "{backend}: {retry}");
            assert_eq!(retry["data"]["seq"], 3, "{backend}: {retry}");
            assert_eq!(
                retry["data"]["summary"],
                json!({"applied": true, "version": 3}),
                "{backend}: {retry}"
            );
            let (status, again) = post_with_summary(&http, &url, "k2", &batches[2], "t2", 2)
                .await
                .unwrap();
            assert_eq!((status, &again), (200, &retry), "{backend}: replayed");
            let all: Vec<Value> = batches
                .iter()
                .flat_map(|b| b.as_array().unwrap().clone())
                .collect();
            assert_eq!(load(&http, &url).await, all, "{backend}: each batch once");
            let list_url = format!("{}?summaries=true", s.sessions(&b.base_url));
            let list = crate::common::get_json(&http, &list_url).await;
            let listed = &list["data"]["sessions"][0];
            assert_eq!(listed["mtime"], retry["data"]["mtime"], "{backend}: {list}");
            assert_eq!(listed["data"], json!({"title": "t2"}), "{backend}: {list}");
            b.kill();
        }
    }

    /// The chunk objects of the key's first incarnation, by name.
    async fn chunk_names(objects: &dyn ObjectPort, key: &SessionKey) -> Vec<String> {
        let dir = keys::incarnation_dir(key, 1);
        let page = objects.list(&dir, None, false).await.unwrap();
        page.items
            .iter()
            .filter(|i| matches!(keys::parse(&dir, &i.key), Some(keys::ObjectKind::Chunk(_))))
            .map(|i| i.key[dir.len()..].to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_compaction_killed_between_its_chunks_and_its_header_loses_nothing_and_leaves_nothing(
    ) {
        let test = "a_compaction_killed_between_its_chunks_and_its_header";
        for (backend, aws) in backends(test) {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let mut env = aws.as_ref().map(|a| a.env()).unwrap_or_default();
            env.push(("TG_COMPACTION_GRACE_SECS", "0"));
            let s = Session::fresh();
            let key = session_key(&s);
            let http = reqwest::Client::new();
            // Five parts of about 1 MiB: a snapshot large enough for chunks.
            let batches: Vec<Value> = (0..5)
                .map(|i| json!([{"i": i, "pad": "x".repeat(1 << 20)}]))
                .collect();
            env.push(("FAILPOINTS", "compaction::before_snapshot=return"));
            let a = ChildGateway::start(&data, &env).await;
            let url = s.entries(&a.base_url);
            for (i, b) in batches.iter().enumerate() {
                let (status, body) = post(&http, &url, &format!("k{i}"), b).await.unwrap();
                assert_eq!(status, 200, "{backend}: {body}");
            }
            let compact = format!("{}/admin/v1/tasks/{}/compact", a.base_url, s.task);
            let cut = http.post(&compact).send().await;
            assert!(
                cut.is_err(),
                "{backend}: the compaction was never answered: {cut:?}"
            );
            let status = a.wait_exit(Duration::from_secs(20)).expect("A died");
            assert!(!status.success(), "{backend}: A aborted");
            env.pop();

            // Its chunks are written, no header lists them.
            let orphans = {
                let objects = object_port(&data, &aws).await;
                chunk_names(objects.as_ref(), &key).await
            };
            assert!(!orphans.is_empty(), "{backend}: the chunks were written");

            // B serves everything from the parts, then compacts, and the
            // clean-up after it removes the dead run's chunks.
            let b = ChildGateway::start(&data, &env).await;
            let url = s.entries(&b.base_url);
            let expected: Vec<Value> = batches
                .iter()
                .flat_map(|b| b.as_array().unwrap().clone())
                .collect();
            assert!(
                load(&http, &url).await == expected,
                "{backend}: every entry before"
            );
            let compact = format!("{}/admin/v1/tasks/{}/compact", b.base_url, s.task);
            let resp = http.post(&compact).send().await.unwrap();
            assert_eq!(resp.status(), 200, "{backend}");
            assert!(
                load(&http, &url).await == expected,
                "{backend}: every entry after"
            );
            b.kill();
            let left = {
                let objects = object_port(&data, &aws).await;
                chunk_names(objects.as_ref(), &key).await
            };
            assert!(!left.is_empty(), "{backend}: the new snapshot's chunks");
            assert!(
                left.iter().all(|c| !orphans.contains(c)),
                "{backend}: the dead run's chunks are gone: {orphans:?} / {left:?}"
            );
        }
    }

    #[tokio::test]
    async fn writers_retrying_through_five_crashes_store_every_batch_exactly_once() {
        let test = "writers_retrying_through_five_crashes_store_every_batch_exactly_once";
        const WRITERS: usize = 8;
        const BATCHES: usize = 25;
        for (backend, aws) in backends(test) {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let base_env = aws.as_ref().map(|a| a.env()).unwrap_or_default();
            let http = reqwest::Client::new();
            // Two keys, four writers each, so writers also race for numbers.
            let sessions = [Session::fresh(), Session::fresh()];
            let mut sent: Vec<usize> = vec![0; WRITERS];
            let mut crashes = 0;
            let mut unanswered = 0;
            while sent.iter().any(|&n| n < BATCHES) {
                let mut env = base_env.clone();
                if crashes < 5 {
                    env.push(("FAILPOINTS", "append::after_part=4%return"));
                }
                let gw = ChildGateway::start(&data, &env).await;
                // Every writer sends its next batch (a retry reuses key and body)
                // until the gateway dies under it or it is done.
                let mut tasks = Vec::new();
                for (w, &start) in sent.iter().enumerate() {
                    let http = http.clone();
                    let url = sessions[w % 2].entries(&gw.base_url);
                    tasks.push(tokio::spawn(async move {
                        let mut n = start;
                        while n < BATCHES {
                            let batch =
                                json!([{"w": w, "n": n}, {"w": w, "n": n, "pad": "x".repeat(100)}]);
                            match post(&http, &url, &format!("w{w}-n{n}"), &batch).await {
                                Ok((200, _)) => n += 1,
                                Ok((status, body)) => {
                                    panic!("writer {w} batch {n}: {status} {body}")
                                }
                                Err(_) => return (n, true),
                            }
                        }
                        (n, false)
                    }));
                }
                for (w, task) in tasks.into_iter().enumerate() {
                    let (n, cut) = task.await.unwrap();
                    sent[w] = n;
                    unanswered += usize::from(cut);
                }
                if env.len() > base_env.len() && gw.wait_exit(Duration::from_secs(1)).is_some() {
                    crashes += 1;
                }
            }
            assert!(crashes >= 1, "{backend}: the failpoint fired");
            let gw = ChildGateway::start(&data, &base_env).await;
            for (k, s) in sessions.iter().enumerate() {
                let entries = load(&http, &s.entries(&gw.base_url)).await;
                let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
                let mut order: HashMap<u64, Vec<u64>> = HashMap::new();
                for e in entries.iter().filter(|e| e.get("pad").is_none()) {
                    let (w, n) = (e["w"].as_u64().unwrap(), e["n"].as_u64().unwrap());
                    *seen.entry((w, n)).or_default() += 1;
                    order.entry(w).or_default().push(n);
                }
                for w in (0..WRITERS as u64).filter(|w| *w as usize % 2 == k) {
                    for n in 0..BATCHES as u64 {
                        assert_eq!(
                            seen.get(&(w, n)),
                            Some(&1),
                            "{backend}: writer {w} batch {n}"
                        );
                    }
                    assert_eq!(
                        order[&w],
                        (0..BATCHES as u64).collect::<Vec<_>>(),
                        "{backend}: writer {w} in its own order"
                    );
                }
                assert_eq!(
                    entries.len(),
                    4 * BATCHES * 2,
                    "{backend}: nothing else stored"
                );
            }
            eprintln!(
                "{test} [{backend}]: {crashes} crashes, {unanswered} appends retried after one"
            );
            gw.kill();
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[test]
fn crash_tests_need_the_failpoints_feature() {
    eprintln!(
        "SKIP crash tests: built without `--features failpoints` (scripts/test builds with it)"
    );
}
