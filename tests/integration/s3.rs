//! The S3 object backend against SeaweedFS: the object-port conformance
//! suite, an HTTP round trip, a tampered part refused on load, an S3 outage
//! (503 within the bounded timeout, nothing half-written, recovery without a
//! restart) and two gateway processes sharing keys.
//!
//! Tests skip, saying why, without `TG_TEST_S3_ENDPOINT`. Each uses a fresh
//! key prefix, so they run in parallel on one emulator; the outage test
//! starts a private emulator with `scripts/emulators.py` (found through
//! `TG_TEST_EMULATORS_PYTHON` / `TG_TEST_EMULATORS_SCRIPT`), because it stops it.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use transcript_gateway::backend::s3::{self, S3Objects};
use transcript_gateway::backend::ObjectPort;
use transcript_gateway::config::{Config, StorageKind};
use transcript_gateway::domain::{ProjectKey, Seq, SessionId, SessionKey, SessionRef, TaskId};
use transcript_gateway::engine::keys;

use crate::common::{
    append, embedded_ports, emulator_env, free_port, fresh_id, gateway_bin, load, ChildGateway,
    PrivateEmulator, Session, TestGateway,
};

const ENDPOINT: &str = "TG_TEST_S3_ENDPOINT";

/// The shared emulator's endpoint and bucket, or `None` after saying why.
pub(crate) fn s3_target(test: &str) -> Option<(String, String)> {
    let endpoint = emulator_env(ENDPOINT, test)?;
    let bucket = std::env::var("TG_TEST_S3_BUCKET")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "tg-test".into());
    Some((endpoint, bucket))
}

/// A config storing objects in `bucket` at `endpoint` under a fresh prefix.
pub(crate) fn s3_config(endpoint: &str, bucket: &str) -> Config {
    Config {
        storage: StorageKind::S3,
        s3_bucket: Some(bucket.to_string()),
        s3_prefix: fresh_id("it"),
        s3_endpoint_url: Some(endpoint.to_string()),
        s3_force_path_style: true,
        ..Config::default()
    }
}

/// An in-process gateway over S3 objects and an embedded catalog in `dir`.
async fn s3_gateway(config: &Config, dir: &Path) -> TestGateway {
    let objects = s3::connect(&config.s3()).await.expect("connect to S3");
    let (_, catalog) = embedded_ports(dir);
    TestGateway::over(objects, catalog, config.clone()).await
}

fn session_key(s: &Session) -> SessionKey {
    SessionKey::main(SessionRef {
        task_id: TaskId::new(s.task.clone()).unwrap(),
        project_key: ProjectKey::new(s.project.clone()).unwrap(),
        session_id: SessionId::new(s.session.clone()).unwrap(),
    })
}

/// A batch of two entries, tagged so a load can be checked batch by batch.
fn batch(tag: &str, i: usize) -> Value {
    json!([{"tag": tag, "i": i, "p": 0}, {"tag": tag, "i": i, "p": 1, "pad": "x".repeat(64)}])
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// Loads and returns the status, the error code (if any) and the entries.
async fn load_full(http: &reqwest::Client, url: &str) -> (u16, String, Vec<Value>) {
    let resp = http.get(url).send().await.expect("load request");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let entries = body["data"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (status, error_code(&body).to_string(), entries)
}

#[tokio::test]
async fn concurrent_engines_over_s3_append_gap_free() {
    let Some((endpoint, bucket)) = s3_target("concurrent_engines_over_s3_append_gap_free") else {
        return;
    };
    let config = s3_config(&endpoint, &bucket);
    let objects = s3::connect(&config.s3()).await.expect("connect");
    let dir = tempfile::tempdir().unwrap();
    let (_, catalog) = embedded_ports(dir.path());
    let started = Instant::now();
    crate::common::concurrent_engines_append_gap_free(objects, catalog, &fresh_id("t"), 3, 10)
        .await;
    eprintln!("3 engines x 10 appends on S3: {:?}", started.elapsed());
}

#[tokio::test]
async fn appends_and_loads_round_trip_over_http_on_s3() {
    let Some((endpoint, bucket)) = s3_target("appends_and_loads_round_trip_over_http_on_s3") else {
        return;
    };
    let config = s3_config(&endpoint, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let gw = s3_gateway(&config, dir.path()).await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    let sub_url = format!("{url}?subpath=subagents/agent-1");

    let (status, _, _) = load_full(&gw.http, &url).await;
    assert_eq!(status, 404, "a key never written is absent");

    let mut expected = Vec::new();
    for i in 0..12 {
        let b = batch("main", i);
        let (status, body) = append(&gw.http, &url, b.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["seq"], i + 1);
        expected.extend(b.as_array().unwrap().iter().cloned());
    }
    let (status, body) = append(&gw.http, &sub_url, batch("sub", 0)).await;
    assert_eq!(status, 200, "{body}");

    let (status, entries) = load(&gw.http, &url).await;
    assert_eq!(status, 200);
    assert_eq!(entries, expected, "a load returns every entry in order");
    let (status, entries) = load(&gw.http, &sub_url).await;
    assert_eq!(status, 200);
    assert_eq!(entries, batch("sub", 0).as_array().unwrap().clone());
    let (status, entries) = load(&gw.http, &format!("{url}?after_seq=10")).await;
    assert_eq!(status, 200);
    assert_eq!(entries, expected[20..].to_vec(), "after_seq tails the key");

    // The parts sit under the configured prefix, each with its CRC32C.
    let store = S3Objects::open(&config.s3()).await.unwrap();
    let dir_key = keys::incarnation_dir(&session_key(&s), 1);
    let page = store.list(&dir_key, None, false).await.unwrap();
    assert_eq!(page.items.len(), 12, "{:?}", page.items);
    let head = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key(store.object_key(&keys::part_key(&dir_key, Seq(1))))
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .expect("the part is at {prefix}/{task}/{project}/{session}/part-...");
    assert!(head.checksum_crc32_c().is_some(), "parts carry a CRC32C");

    let resp = gw
        .http
        .delete(s.session(&gw.base_url))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "delete: {}", resp.status());
    let (status, _, _) = load_full(&gw.http, &url).await;
    assert_eq!(status, 404, "a deleted session is absent");
    let (status, _, _) = load_full(&gw.http, &sub_url).await;
    assert_eq!(status, 404, "deleting a session cascades to its subkeys");
    gw.stop().await;
}

#[tokio::test]
async fn a_part_overwritten_behind_the_gateways_back_is_refused_on_load() {
    let Some((endpoint, bucket)) =
        s3_target("a_part_overwritten_behind_the_gateways_back_is_refused_on_load")
    else {
        return;
    };
    let config = s3_config(&endpoint, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let gw = s3_gateway(&config, dir.path()).await;
    let store = S3Objects::open(&config.s3()).await.unwrap();

    // Three ways to tamper with part 2 of a fresh key: a plain overwrite (no
    // checksum stored at all), new bytes with a CRC32 (not CRC32C) checksum,
    // and new bytes with the old part's CRC32C header copied over (S3
    // refuses that one, so the original must still load).
    for tamper in ["plain", "crc32", "stale-crc32c"] {
        let s = Session::fresh();
        let url = s.entries(&gw.base_url);
        let mut expected = Vec::new();
        for i in 0..3 {
            let b = batch(tamper, i);
            let (status, body) = append(&gw.http, &url, b.clone()).await;
            assert_eq!(status, 200, "{body}");
            expected.extend(b.as_array().unwrap().iter().cloned());
        }
        let object_key = store.object_key(&keys::part_key(
            &keys::incarnation_dir(&session_key(&s), 1),
            Seq(2),
        ));
        let forged = aws_sdk_s3::primitives::ByteStream::from_static(b"{\"forged\":true}\n");
        let put = store
            .client()
            .put_object()
            .bucket(store.bucket())
            .key(&object_key)
            .body(forged);
        let result = match tamper {
            "plain" => put.send().await.map(|_| ()),
            "crc32" => put
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
                .send()
                .await
                .map(|_| ()),
            _ => {
                let original = store
                    .client()
                    .head_object()
                    .bucket(store.bucket())
                    .key(&object_key)
                    .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                    .send()
                    .await
                    .expect("head the original part");
                let stored = original.checksum_crc32_c().expect("a stored CRC32C");
                put.checksum_crc32_c(stored).send().await.map(|_| ())
            }
        };
        let (status, code, entries) = load_full(&gw.http, &url).await;
        if tamper == "stale-crc32c" {
            assert!(
                result.is_err(),
                "S3 must refuse a body that fails its CRC32C"
            );
            assert_eq!(status, 200, "the refused overwrite changed nothing");
            assert_eq!(entries, expected);
            continue;
        }
        result.expect("overwrite behind the gateway's back");
        assert_eq!(
            (status, code.as_str()),
            (502, "checksum_mismatch"),
            "a tampered part ({tamper}) must never be served"
        );
        assert!(entries.is_empty());
    }
    gw.stop().await;
}

/// POSTs a batch with an `Idempotency-Key`; returns the status and body.
async fn append_once(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    entries: &Value,
) -> (u16, Value) {
    match http
        .post(url)
        .header("idempotency-key", key)
        .json(&json!({ "entries": entries }))
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({ "transport_error": e.to_string() })),
    }
}

#[tokio::test]
async fn an_s3_outage_answers_503_in_bounded_time_and_recovers_without_restart() {
    let test = "an_s3_outage_answers_503_in_bounded_time_and_recovers_without_restart";
    if s3_target(test).is_none() {
        return;
    }
    let Some(emu) = PrivateEmulator::start(test) else {
        return;
    };
    let config = Config {
        aws_max_attempts: 3,
        aws_attempt_timeout_ms: 2_000,
        aws_operation_timeout_ms: 6_000,
        ..s3_config(&emu.endpoint, &emu.bucket)
    };
    // Generous: the operation timeout, plus a LIST before the PUT, plus slack.
    let bound = Duration::from_secs(20);
    let dir = tempfile::tempdir().unwrap();
    let gw = s3_gateway(&config, dir.path()).await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);

    let mut expected = Vec::new();
    for i in 0..5 {
        let b = batch("before", i);
        let (status, body) = append(&gw.http, &url, b.clone()).await;
        assert_eq!(status, 200, "{body}");
        expected.extend(b.as_array().unwrap().iter().cloned());
    }

    emu.run("stop-s3", &[]);
    for i in 0..3 {
        let started = Instant::now();
        let (status, body) = append(&gw.http, &url, batch("during", i)).await;
        let took = started.elapsed();
        assert_eq!(
            (status, error_code(&body)),
            (503, "backend_unavailable"),
            "{body}"
        );
        // The client learns what to do, not the bucket, endpoint or SDK text.
        let message = body["error"]["message"].as_str().unwrap_or("");
        let host = emu.endpoint.trim_start_matches("http://");
        for secret in [emu.bucket.as_str(), host, "dispatch", "Error", "{"] {
            assert!(!message.contains(secret), "{secret:?} in {message:?}");
        }
        assert!(message.contains("retry shortly"), "{message}");
        assert!(took < bound, "an append during the outage took {took:?}");
        eprintln!("append during the outage: 503 in {took:?}");
    }
    let started = Instant::now();
    let (status, code, _) = load_full(&gw.http, &url).await;
    assert_eq!((status, code.as_str()), (503, "backend_unavailable"));
    assert!(
        started.elapsed() < bound,
        "load took {:?}",
        started.elapsed()
    );
    let ready = gw.http.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready while S3 is down");

    emu.run("start-s3", &[]);
    // The same gateway, not restarted: the first append may still meet a dead
    // pooled connection, so retry it (with an idempotency key) for a while.
    let recovered = batch("after", 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = append_once(&gw.http, &url, "recovery-0", &recovered).await;
        if status == 200 {
            assert_eq!(body["data"]["seq"], 6, "the outage left no part: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery within 60 s: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    expected.extend(recovered.as_array().unwrap().iter().cloned());
    for i in 1..3 {
        let b = batch("after", i);
        let (status, body) = append(&gw.http, &url, b.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["seq"], 6 + i);
        expected.extend(b.as_array().unwrap().iter().cloned());
    }
    let (status, entries) = load(&gw.http, &url).await;
    assert_eq!(status, 200);
    assert_eq!(
        entries, expected,
        "acknowledged batches only, each once, in order; nothing half-written"
    );
    gw.stop().await;
    drop(emu);
}

#[tokio::test]
async fn two_gateway_processes_share_keys_without_loss_duplication_or_disorder() {
    let test = "two_gateway_processes_share_keys_without_loss_duplication_or_disorder";
    let Some((endpoint, bucket)) = s3_target(test) else {
        return;
    };
    let prefix = fresh_id("it");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TG_STORAGE", "s3"),
        ("TG_CATALOG", "embedded"),
        ("TG_S3_BUCKET", bucket.as_str()),
        ("TG_S3_PREFIX", prefix.as_str()),
        ("TG_S3_ENDPOINT_URL", endpoint.as_str()),
        ("TG_S3_FORCE_PATH_STYLE", "true"),
        // Race losers wait 1-4 s for SeaweedFS's 412: give attempts room.
        ("TG_AWS_ATTEMPT_TIMEOUT_MS", "8000"),
        ("TG_AWS_OPERATION_TIMEOUT_MS", "20000"),
        ("TG_COMPACTION_THRESHOLD", "0"),
    ];
    let gateways = [
        ChildGateway::start(&dir.path().join("a"), &env).await,
        ChildGateway::start(&dir.path().join("b"), &env).await,
    ];
    let task = fresh_id("task");
    let sessions: Vec<Session> = (0..2)
        .map(|_| Session {
            task: task.clone(),
            ..Session::fresh()
        })
        .collect();
    let (writers, appends) = (8, 25);
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for (g, gw) in gateways.iter().enumerate() {
        for w in 0..writers {
            let http = http.clone();
            let url = sessions[w % 2].entries(&gw.base_url);
            tasks.push(tokio::spawn(async move {
                for i in 0..appends {
                    let entries = json!([
                        {"g": g, "w": w, "i": i, "p": 0},
                        {"g": g, "w": w, "i": i, "p": 1}
                    ]);
                    let (status, body) =
                        append_once(&http, &url, &format!("g{g}-w{w}-i{i}"), &entries).await;
                    assert_eq!(status, 200, "gateway {g} writer {w} append {i}: {body}");
                }
            }));
        }
    }
    let all = futures::future::join_all(tasks);
    let results = tokio::time::timeout(Duration::from_secs(240), all)
        .await
        .expect("2 x 8 x 25 appends finish within 240 s");
    for r in results {
        r.expect("writer task");
    }
    let mut conflicts = Vec::new();
    for gw in &gateways {
        let text = http
            .get(format!("{}/metrics", gw.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        conflicts.push(metric(&text, "tg_part_conflicts_total"));
    }
    eprintln!(
        "2 gateways x {writers} writers x {appends} appends: {:?}, lost races per gateway {conflicts:?}",
        started.elapsed()
    );

    for s in &sessions {
        let mut views = Vec::new();
        for gw in &gateways {
            let (status, entries) = load(&http, &s.entries(&gw.base_url)).await;
            assert_eq!(status, 200);
            views.push(entries);
        }
        assert_eq!(
            views[0], views[1],
            "both instances load one identical order"
        );
        let entries = &views[0];
        assert_eq!(
            entries.len(),
            2 * 2 * (writers / 2) * appends,
            "every batch once"
        );
        let mut seen = std::collections::HashSet::new();
        let mut last_i = std::collections::HashMap::new();
        for pair in entries.chunks(2) {
            assert_eq!((&pair[0]["p"], &pair[1]["p"]), (&json!(0), &json!(1)));
            let id = (pair[0]["g"].clone(), pair[0]["w"].clone());
            assert_eq!(
                id,
                (pair[1]["g"].clone(), pair[1]["w"].clone()),
                "batches stay contiguous"
            );
            let i = pair[0]["i"].as_u64().unwrap();
            assert_eq!(pair[1]["i"], i);
            assert!(seen.insert((id.clone(), i)), "duplicate batch {id:?} {i}");
            // One writer's appends are sequential: they load in its order.
            let prev = last_i.insert(id.clone(), i);
            assert!(
                prev.is_none_or(|p| p < i),
                "writer {id:?} out of order at {i}"
            );
        }
    }
    for gw in gateways {
        let log = gw.log.clone();
        let exit = gw.terminate();
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            exit.success(),
            "SIGTERM exits 0, got {exit:?}; stderr:\n{stderr}"
        );
    }
}

/// A counter's value in Prometheus text, 0 when absent.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_missing_bucket_is_named_at_connect() {
    let Some((endpoint, _)) = s3_target("a_missing_bucket_is_named_at_connect") else {
        return;
    };
    let bucket = fresh_id("no-such-bucket");
    let config = s3_config(&endpoint, &bucket);
    let err = match s3::connect(&config.s3()).await {
        Ok(_) => panic!("connect to a missing bucket must fail"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&bucket) && err.contains("does not exist") && err.contains(&endpoint),
        "{err}"
    );
    let unreachable = Config {
        s3_endpoint_url: Some(format!("http://127.0.0.1:{}", free_port())),
        aws_operation_timeout_ms: 3_000,
        ..config
    };
    let started = Instant::now();
    let err = match s3::connect(&unreachable.s3()).await {
        Ok(_) => panic!("connect to a dead endpoint must fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot reach"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A TCP proxy to `upstream` (`host:port`) that passes its first connection's
/// request on but swallows the answer and closes the connection, as a
/// network failure after S3 committed a write would.
async fn answer_losing_proxy(upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let lose_answer = std::mem::take(&mut first);
            tokio::spawn(async move {
                if lose_answer {
                    use tokio::io::AsyncReadExt;
                    let (mut client_read, client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    let forward = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    });
                    let mut byte = [0u8; 1];
                    let _ = server_read.read(&mut byte).await;
                    forward.abort();
                    drop(client_write);
                } else {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_put_whose_answer_was_lost_is_not_mistaken_for_a_lost_race() {
    let Some((endpoint, bucket)) =
        s3_target("a_put_whose_answer_was_lost_is_not_mistaken_for_a_lost_race")
    else {
        return;
    };
    let upstream = endpoint.trim_start_matches("http://").to_string();
    let proxied = answer_losing_proxy(upstream).await;
    let config = s3_config(&proxied, &bucket);
    // No request before the put: the put's first attempt is the one whose
    // answer the proxy swallows; the SDK retries and meets 412.
    let store = S3Objects::open(&config.s3()).await.expect("open");
    let key = format!("{}/part-00000000000000000001.jsonl", fresh_id("lost"));
    let body = bytes::Bytes::from_static(b"{\"mine\":true}\n");
    store
        .put_if_absent(&key, body.clone(), crc32c::crc32c(&body))
        .await
        .expect("the retried put recognises its own object");
    let other = bytes::Bytes::from_static(b"{\"theirs\":true}\n");
    match store
        .put_if_absent(&key, other.clone(), crc32c::crc32c(&other))
        .await
    {
        Err(transcript_gateway::backend::PortError::AlreadyExists(_)) => {}
        got => panic!("another body on a taken key must be AlreadyExists, got {got:?}"),
    }
}

/// Runs `transcript-gateway serve` on S3 expecting it to refuse to start;
/// returns its stderr.
async fn refused_start(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(gateway_bin());
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path())
        .env("TG_LOG", "warn")
        .env("TG_LOG_FORMAT", "text")
        .env("TG_INSECURE_NO_AUTH", "true")
        .env("TG_STORAGE", "s3")
        .env("TG_CATALOG", "embedded")
        .env("TG_S3_FORCE_PATH_STYLE", "true")
        .env("TG_AWS_OPERATION_TIMEOUT_MS", "5000")
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the gateway gives up within 30 s")
        .expect("run the gateway");
    assert!(!out.status.success(), "the gateway must not start");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_gateway_without_a_usable_bucket_refuses_to_start_and_says_why() {
    let Some((endpoint, bucket)) =
        s3_target("a_gateway_without_a_usable_bucket_refuses_to_start_and_says_why")
    else {
        return;
    };
    let missing = fresh_id("no-such-bucket");
    let err = refused_start(&[
        ("TG_S3_BUCKET", missing.as_str()),
        ("TG_S3_ENDPOINT_URL", endpoint.as_str()),
    ])
    .await;
    assert!(
        err.contains(&missing) && err.contains("does not exist"),
        "{err}"
    );
    let err = refused_start(&[
        ("TG_S3_BUCKET", bucket.as_str()),
        ("TG_S3_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
    ])
    .await;
    assert!(err.contains(&bucket) && err.contains("denied"), "{err}");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let err = refused_start(&[
        ("TG_S3_BUCKET", bucket.as_str()),
        ("TG_S3_ENDPOINT_URL", dead.as_str()),
    ])
    .await;
    assert!(err.contains("cannot reach") && err.contains(&dead), "{err}");
}

#[tokio::test]
async fn a_tampered_part_late_in_a_streamed_load_breaks_the_transfer() {
    let Some((endpoint, bucket)) =
        s3_target("a_tampered_part_late_in_a_streamed_load_breaks_the_transfer")
    else {
        return;
    };
    let config = s3_config(&endpoint, &bucket);
    let dir = tempfile::tempdir().unwrap();
    let gw = s3_gateway(&config, dir.path()).await;
    let store = S3Objects::open(&config.s3()).await.unwrap();
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    // About 12 MiB in 1 MiB parts: too big to verify before answering, so
    // the load streams and meets the bad part after the headers are sent.
    let parts = 12;
    for i in 0..parts {
        let entries: Vec<Value> = (0..16)
            .map(|k| json!({"i": i, "k": k, "pad": "y".repeat(64 * 1024)}))
            .collect();
        let (status, body) = append(&gw.http, &url, Value::Array(entries)).await;
        assert_eq!(status, 200, "{body}");
    }
    let last = keys::part_key(&keys::incarnation_dir(&session_key(&s), 1), Seq(parts));
    store
        .client()
        .put_object()
        .bucket(store.bucket())
        .key(store.object_key(&last))
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"{\"forged\":1}\n",
        ))
        .send()
        .await
        .expect("overwrite the last part");
    let resp = gw.http.get(&url).send().await.expect("load request");
    let status = resp.status().as_u16();
    match resp.bytes().await {
        Ok(body) if status == 200 => {
            let parsed: Result<Value, _> = serde_json::from_slice(&body);
            panic!(
                "a load with a tampered part ended cleanly ({} bytes, valid JSON: {})",
                body.len(),
                parsed.is_ok()
            );
        }
        Ok(body) => {
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert_eq!((status, error_code(&body)), (502, "checksum_mismatch"));
        }
        Err(e) => {
            assert_eq!(status, 200);
            eprintln!("the streamed load broke off as it should: {e}");
        }
    }
    gw.stop().await;
}
