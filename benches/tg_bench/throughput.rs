//! Throughput: 64 sessions, one writer each, appending 1 KiB batches as fast
//! as their answers come back, for a fixed time, on the embedded backend and
//! on S3. Afterwards the gateway is killed (SIGKILL) and restarted, and every
//! session is loaded: each acknowledged append must be there.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway::{Gateway, Spec, Storage};
use crate::payload::Batch;
use crate::report::Row;
use crate::stats::Samples;
use crate::{entries_url, err, post_append, Env, Res};

/// Concurrent sessions.
const SESSIONS: usize = 64;
/// The target on the embedded backend: durable appends per second.
const TARGET_EMBEDDED: f64 = 5000.0;

/// Runs the scenario.
pub async fn run(env: &Env) -> Res<(Vec<Row>, Value)> {
    let secs = if env.quick { 5 } else { 20 };
    let mut rows = Vec::new();
    let mut detail = serde_json::Map::new();
    for (name, storage) in [
        ("embedded", Storage::Embedded),
        (
            "s3",
            Storage::S3 {
                prefix: env.prefix("throughput"),
            },
        ),
    ] {
        let spec = Spec::new(
            &format!("throughput-{name}"),
            storage,
            env.data_dir(&format!("throughput-{name}")),
        );
        let (row, d) = one_backend(env, &spec, name, Duration::from_secs(secs)).await?;
        rows.push(row);
        detail.insert(name.into(), d);
    }
    detail.insert("sessions".into(), json!(SESSIONS));
    detail.insert("secs".into(), json!(secs));
    Ok((rows, Value::Object(detail)))
}

struct Writer {
    latencies: Samples,
    acked: u64,
    errors: u64,
    first_error: Option<String>,
}

async fn one_backend(env: &Env, spec: &Spec, name: &str, duration: Duration) -> Res<(Row, Value)> {
    let gw = Gateway::start(env, spec).await?;
    let task = "bench-throughput";
    let urls: Vec<String> = (0..SESSIONS)
        .map(|i| entries_url(&gw.base, task, &format!("sess-{i:02}")))
        .collect();
    let bodies: Vec<_> = (0..SESSIONS)
        .map(|i| Batch::new(&format!("w{i:02}"), 1, 1, 1023).http_bodies())
        .collect();
    // One append per session first: connections open, heads cached.
    let warm = urls
        .iter()
        .zip(&bodies)
        .map(|(u, b)| post_append(&gw.http, u, b.nth(0)));
    futures::future::try_join_all(warm).await?;

    eprintln!(
        "tg-bench: throughput {name}: {SESSIONS} writers for {} s",
        duration.as_secs()
    );
    let cpu0 = (
        gw.cpu_secs(),
        env.s3_pid.and_then(crate::procfs::cpu_secs),
        crate::procfs::self_cpu_secs(),
    );
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = urls
        .iter()
        .zip(&bodies)
        .map(|(url, body)| {
            let (http, url, body) = (gw.http.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut w = Writer {
                    latencies: Samples::default(),
                    acked: 0,
                    errors: 0,
                    first_error: None,
                };
                let mut n = 1;
                while Instant::now() < deadline {
                    let next = body.nth(n);
                    n += 1;
                    let t0 = Instant::now();
                    match post_append(&http, &url, next).await {
                        Ok(_) => {
                            w.latencies.push(t0.elapsed());
                            w.acked += 1;
                        }
                        Err(e) => {
                            w.errors += 1;
                            w.first_error
                                .get_or_insert_with(|| crate::chain(e.as_ref()));
                        }
                    }
                }
                w
            })
        })
        .collect();
    let mut writers = Vec::new();
    for t in tasks {
        writers.push(t.await?);
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = json!({
        "gateway": gw.cpu_secs().zip(cpu0.0).map(|(a, b)| a - b),
        "emulator": env.s3_pid.and_then(crate::procfs::cpu_secs).zip(cpu0.1).map(|(a, b)| a - b),
        "bench": crate::procfs::self_cpu_secs().zip(cpu0.2).map(|(a, b)| a - b),
        "wall_secs": wall,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    let acked: u64 = writers.iter().map(|w| w.acked).sum();
    let errors: u64 = writers.iter().map(|w| w.errors).sum();
    let first_error = writers.iter().find_map(|w| w.first_error.clone());
    let mut all = Samples::default();
    for w in &writers {
        all.0.extend_from_slice(&w.latencies.0);
    }
    let rate = acked as f64 / wall;

    let metrics = gw.metrics().await.ok();
    // Durability: crash the gateway, restart it on the same data, count.
    eprintln!("tg-bench: throughput {name}: kill -9, restart, verify");
    gw.kill();
    let gw = Gateway::start(env, spec).await?;
    let mut lost = 0u64;
    let mut extra = 0u64;
    for (i, w) in writers.iter().enumerate() {
        let url = entries_url(&gw.base, task, &format!("sess-{i:02}"));
        let resp = gw.http.get(&url).send().await?;
        if !resp.status().is_success() {
            return Err(err(format!(
                "load {url} after restart answered {}",
                resp.status()
            )));
        }
        let v: Value = resp.json().await?;
        let got = v["data"]["entries"].as_array().map_or(0, Vec::len) as u64;
        let want = w.acked + 1; // + the warm-up append
        lost += want.saturating_sub(got);
        extra += got.saturating_sub(want);
    }
    gw.stop()?;

    let summary = all.summary();
    let series = if name == "embedded" {
        "gateway, embedded backend"
    } else {
        "gateway, S3 (embedded catalog)"
    };
    let mut row = Row::new(
        &format!("throughput {SESSIONS} sessions, 1 KiB"),
        series,
        summary.clone(),
    )
    .rate(rate, "appends/s")
    .ratio(format!("{acked} acked, {lost} lost, {errors} errors"));
    let durable = lost == 0 && errors == 0;
    row = if name == "embedded" {
        row.target(
            format!(">= {TARGET_EMBEDDED:.0}/s, none lost"),
            Some(rate >= TARGET_EMBEDDED && durable),
        )
    } else {
        row.target("none lost", Some(durable))
    };
    let detail = json!({
        "appends_per_sec": rate,
        "acked": acked,
        "errors": errors,
        "first_error": first_error,
        "lost_after_kill_restart": lost,
        "unacknowledged_but_present": extra,
        "latency": summary,
        "cpu_secs": cpu,
        "gateway_metrics": metrics,
    });
    Ok((row, detail))
}
