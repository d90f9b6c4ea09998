//! Faults under load, each checked against the writers' own record of every
//! acknowledged batch: an instance killed mid-burst (its writers retry
//! through the survivor with the same idempotency keys), the S3 emulator
//! killed mid-burst and restarted, the DynamoDB emulator unresponsive
//! mid-burst. Loopback only; every wait is bounded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use transcript_gateway::config::{CatalogKind, Config};

use crate::common::{
    fresh_id, get_json, load, run_binary, AwsBackends, ChildGateway, PrivateEmulator, Session,
    TestGateway,
};
use crate::s3::{s3_config, s3_target};

/// One batch of a writer, tagged so a load shows whose and which it is.
fn batch(writer: usize, i: usize) -> Value {
    json!([{"w": writer, "i": i}, {"w": writer, "i": i, "pad": "x".repeat(300)}])
}

/// Posts `batch` under `key`; the status and body, or `None` when no
/// answer came (connection refused or reset).
async fn post(http: &reqwest::Client, url: &str, key: &str, batch: &Value) -> Option<(u16, Value)> {
    let resp = http
        .post(url)
        .header("idempotency-key", key)
        .json(&json!({ "entries": batch }))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Every entry of `batches`, in order.
fn flat(batches: &[Value]) -> Vec<Value> {
    batches
        .iter()
        .flat_map(|b| b.as_array().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn an_instance_killed_mid_burst_loses_nothing_acknowledged_through_the_survivor() {
    let test = "an_instance_killed_mid_burst_loses_nothing_acknowledged_through_the_survivor";
    // Two processes race on one record: the moto that serialises requests.
    let Some(aws) = AwsBackends::start_serialized(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = ChildGateway::start(&dir.path().join("a"), &aws.env()).await;
    let b = ChildGateway::start(&dir.path().join("b"), &aws.env()).await;
    let s = Session::fresh();
    let (a_url, b_url) = (s.entries(&a.base_url), s.entries(&b.base_url));
    let http = reqwest::Client::new();
    const WRITERS: usize = 12;
    const BATCHES: usize = 24;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, a_url, b_url) = (http.clone(), a_url.clone(), b_url.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut via_b = false;
                for i in 0..BATCHES {
                    let b_ = batch(w, i);
                    let key = format!("w{w}-{i}");
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        // Alternate instances until A fails, then B only.
                        let url = match via_b || (w + i) % 2 == 1 {
                            true => &b_url,
                            false => &a_url,
                        };
                        let target = format!("{url}?subpath=w{w}");
                        match post(&http, &target, &key, &b_).await {
                            Some((200, _)) => break,
                            Some((status, body)) if url == &b_url => {
                                panic!("writer {w}: the survivor answered {status}: {body}")
                            }
                            // A died under this request (or refused it): the
                            // same key through the survivor.
                            _ => via_b = true,
                        }
                        assert!(
                            Instant::now() < deadline,
                            "writer {w}: batch {i} never acknowledged"
                        );
                    }
                    acked.push(b_);
                }
                acked
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.signal("KILL");
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(w.await.unwrap());
    }
    for (w, acked) in outcomes.iter().enumerate() {
        let (status, entries) = load(&http, &format!("{b_url}?subpath=w{w}")).await;
        assert_eq!(status, 200, "writer {w}");
        assert_eq!(
            entries,
            flat(acked),
            "writer {w}: every acknowledged batch once, in order, byte for byte"
        );
    }
    drop(a);
    b.kill();
}

#[tokio::test]
async fn an_s3_outage_mid_burst_answers_503_promptly_and_the_same_gateway_recovers() {
    let test = "an_s3_outage_mid_burst_answers_503_promptly_and_the_same_gateway_recovers";
    if s3_target(test).is_none() {
        return;
    }
    let Some(emu) = PrivateEmulator::start(test) else {
        return;
    };
    let config = Config {
        aws_max_attempts: 2,
        aws_attempt_timeout_ms: 1_500,
        aws_operation_timeout_ms: 4_000,
        ..s3_config(&emu.endpoint, &emu.bucket)
    };
    let dir = tempfile::tempdir().unwrap();
    let objects = transcript_gateway::backend::s3::connect(&config.s3())
        .await
        .expect("connect to S3");
    let (_, catalog) = crate::common::embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, config).await;
    let s = Session::fresh();
    let url = s.entries(&gw.base_url);
    // The operation timeout, a listing before the part, and slack.
    let prompt = Duration::from_secs(15);
    const WRITERS: usize = 8;
    const BATCHES: usize = 12;
    let stop_at = Instant::now() + Duration::from_millis(600);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, url) = (gw.http.clone(), format!("{url}?subpath=w{w}"));
            tokio::spawn(async move {
                let (mut acked, mut refused) = (Vec::new(), 0);
                for i in 0..BATCHES {
                    let b = batch(w, i);
                    let key = format!("w{w}-{i}");
                    let deadline = Instant::now() + Duration::from_secs(90);
                    loop {
                        let started = Instant::now();
                        let (status, body) = post(&http, &url, &key, &b)
                            .await
                            .expect("the gateway answers");
                        let took = started.elapsed();
                        if status == 200 {
                            break;
                        }
                        assert_eq!(
                            (status, body["error"]["code"].as_str()),
                            (503, Some("backend_unavailable")),
                            "writer {w}: {body}"
                        );
                        assert!(took < prompt, "writer {w}: a 503 took {took:?}");
                        refused += 1;
                        assert!(Instant::now() < deadline, "writer {w}: no recovery");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    acked.push(b);
                    // Hold the last batches until the outage is over.
                    if i == BATCHES / 2 {
                        tokio::time::sleep(stop_at.saturating_duration_since(Instant::now())).await;
                    }
                }
                (acked, refused)
            })
        })
        .collect();
    tokio::time::sleep(stop_at.saturating_duration_since(Instant::now())).await;
    emu.run("stop-s3", &["--kill"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    emu.run("start-s3", &[]);
    let mut refused_total = 0;
    let mut outcomes = Vec::new();
    for w in writers {
        let (acked, refused) = w.await.unwrap();
        refused_total += refused;
        outcomes.push(acked);
    }
    eprintln!("appends answered 503 during the outage: {refused_total}");
    assert!(refused_total > 0, "the outage was met by appends");
    for (w, acked) in outcomes.iter().enumerate() {
        let (status, entries) = load(&gw.http, &format!("{url}?subpath=w{w}")).await;
        assert_eq!(status, 200, "writer {w}");
        assert_eq!(
            entries,
            flat(acked),
            "writer {w}: acknowledged batches once each, in order; nothing half-written"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_dynamodb_outage_mid_burst_fails_cleanly_and_the_catalog_catches_up() {
    let test = "a_dynamodb_outage_mid_burst_fails_cleanly_and_the_catalog_catches_up";
    let Some((s3_endpoint, bucket)) = s3_target(test) else {
        return;
    };
    let Some(moto) = PrivateEmulator::start_dynamodb(test) else {
        return;
    };
    let prefix = fresh_id("faults");
    let config = Config {
        catalog: CatalogKind::Dynamodb,
        dynamodb_endpoint_url: Some(moto.endpoint.clone()),
        dynamodb_table_prefix: prefix.clone(),
        aws_max_attempts: 2,
        aws_attempt_timeout_ms: 1_000,
        aws_operation_timeout_ms: 2_500,
        ..s3_config(&s3_endpoint, &bucket)
    };
    let env = [
        ("TG_CATALOG", "dynamodb"),
        ("TG_DYNAMODB_ENDPOINT_URL", moto.endpoint.as_str()),
        ("TG_DYNAMODB_TABLE_PREFIX", prefix.as_str()),
    ];
    let (code, out, err) = run_binary(&["migrate"], &env);
    assert_eq!(code, Some(0), "migrate: {out}{err}");
    let (objects, catalog) = transcript_gateway::server::open_backends(&config)
        .await
        .expect("open the backends");
    let engine = transcript_gateway::engine::Engine::new(
        objects,
        catalog,
        transcript_gateway::engine::EngineConfig::default(),
    );
    let gw = TestGateway::serve(engine, config).await;
    let task = Session::fresh();
    // One session per writer, all in one project, so one listing shows them.
    let sessions: Vec<Session> = (0..16)
        .map(|_| Session {
            session: fresh_id("sess"),
            ..task.clone()
        })
        .collect();

    // Writers append until the first refusal, then stop: what they saw
    // acknowledged must be stored, what was refused must not.
    let writers: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(w, s)| {
            let (http, url) = (gw.http.clone(), s.entries(&gw.base_url));
            tokio::spawn(async move {
                let mut acked: Vec<(Value, u64)> = Vec::new();
                for i in 0.. {
                    let b = batch(w, i);
                    let (status, body) = post(&http, &url, &format!("w{w}-{i}"), &b)
                        .await
                        .expect("the gateway answers");
                    match status {
                        200 => acked.push((b, body["data"]["mtime"].as_u64().unwrap())),
                        _ => {
                            assert_eq!(
                                (status, body["error"]["code"].as_str()),
                                (503, Some("backend_unavailable")),
                                "writer {w}: {body}"
                            );
                            return (acked, b);
                        }
                    }
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    moto.run("pause-dynamodb", &[]);
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.push(w.await.unwrap());
    }
    moto.run("resume-dynamodb", &[]);

    for (w, (acked, refused)) in outcomes.iter().enumerate() {
        let batches: Vec<Value> = acked.iter().map(|(b, _)| b.clone()).collect();
        let (status, entries) = load(&gw.http, &sessions[w].entries(&gw.base_url)).await;
        if batches.is_empty() {
            assert_eq!(
                status, 404,
                "writer {w}: nothing acknowledged, nothing stored"
            );
            continue;
        }
        assert_eq!(status, 200, "writer {w}");
        assert_eq!(
            entries,
            flat(&batches),
            "writer {w}: acknowledged once each; {refused} absent"
        );
    }

    // With no more appends, the catalog catches up with the parts within
    // 60 s: every session listed with its last acknowledged mtime.
    let mut wanted: Vec<(String, u64)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(w, (acked, _))| Some((sessions[w].session.clone(), acked.last()?.1)))
        .collect();
    wanted.sort();
    let list_url = format!("{}?limit=1000", task.sessions(&gw.base_url));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = get_json(&gw.http, &list_url).await;
        let mut got: Vec<(String, u64)> = listed["data"]["sessions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| {
                        Some((v["session_id"].as_str()?.to_string(), v["mtime"].as_u64()?))
                    })
                    .collect()
            })
            .unwrap_or_default();
        got.sort();
        if got == wanted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "60 s after the outage the catalog lists {got:?}; storage holds {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    gw.stop().await;
}
