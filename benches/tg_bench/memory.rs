//! Memory: the gateway's peak RSS while it streams a large transcript.
//!
//! The transcript (200 MiB, 50 MiB with `--quick`) is 1 MiB parts of 256
//! entries of 4 KiB. On S3 they are seeded straight into the bucket in the
//! gateway's layout (the last one appended through the gateway); on the
//! embedded backend they are appended over HTTP. The gateway is then
//! restarted so its high-water mark (`VmHWM`) reflects nothing but the load,
//! and the benchmark reads the response as a stream, keeping no copy.
//! After that the transcript is compacted by a fresh process while a load
//! streams it from the same process (peak RSS of both, and the compaction's
//! time against one load alone), and loaded again by a fresh process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway::{Gateway, Spec, Storage};
use crate::payload::{gateway_dir, gateway_parts, Batch};
use crate::report::Row;
use crate::stats::summarize;
use crate::{entries_url, err, post_append, Env, Res, PROJECT};

/// Entries per 1 MiB part.
const ENTRIES_PER_PART: usize = 256;
/// Bytes per entry line.
const ENTRY_LEN: usize = 4095;
/// Peak RSS while loading, and while compacting with a load running.
const TARGET_MIB: f64 = 64.0;
/// Compaction time against reading the transcript once (one load, alone).
const TARGET_COMPACT_TIME: f64 = 1.5;

/// Runs the scenario.
pub async fn run(env: &Env) -> Res<(Vec<Row>, Value)> {
    let mib: u64 = if env.quick { 50 } else { 200 };
    let parts = mib; // 1 MiB each
    let mut rows = Vec::new();
    let mut detail = serde_json::Map::new();
    detail.insert("transcript_mib".into(), json!(mib));
    for (name, storage) in [
        (
            "s3",
            Storage::S3 {
                prefix: env.prefix("memory"),
            },
        ),
        ("embedded", Storage::Embedded),
    ] {
        let spec = Spec::new(
            &format!("memory-{name}"),
            storage.clone(),
            env.data_dir(&format!("memory-{name}")),
        )
        .with("TG_COMPACTION_THRESHOLD", 0)
        .with("TG_COMPACTION_GRACE_SECS", 3600);
        let (mut r, d) = one_backend(env, &spec, name, parts).await?;
        rows.append(&mut r);
        detail.insert(name.into(), d);
    }
    Ok((rows, Value::Object(detail)))
}

async fn one_backend(env: &Env, spec: &Spec, name: &str, parts: u64) -> Res<(Vec<Row>, Value)> {
    let task = "bench-memory";
    let session = format!("sess-{}", env.run_id);
    let part = |seq: u64| {
        Batch::new(
            "memory",
            (seq - 1) * ENTRIES_PER_PART as u64 + 1,
            ENTRIES_PER_PART,
            ENTRY_LEN,
        )
    };
    let part_bytes = part(1).part_len() as u64;
    let total_bytes = part_bytes * parts;

    eprintln!(
        "tg-bench: memory {name}: seeding {} MiB twice",
        total_bytes >> 20
    );
    let t_seed = Instant::now();
    // The same transcript in a second task, compacted alone for its time.
    let timed_task = "bench-memory-timed";
    seed(env, spec, task, &session, parts, part).await?;
    seed(env, spec, timed_task, &session, parts, part).await?;
    let seed_secs = t_seed.elapsed().as_secs_f64();

    let mut rows = Vec::new();
    let scenario = format!("memory {} MiB load", total_bytes >> 20);
    let (before, before_row) = measured_load(env, spec, task, &session, total_bytes, parts).await?;
    let label = if name == "s3" {
        "gateway, S3"
    } else {
        "gateway, embedded backend"
    };
    rows.push(before_row(&scenario, &format!("{label}, {parts} parts")));

    // Compact on a fresh process while a load streams the same transcript
    // from it, then load the snapshot with another fresh process.
    let gw = Gateway::start(env, spec).await?;
    let t0 = Instant::now();
    let during = async {
        let t = Instant::now();
        let mut resp = gw
            .http
            .get(entries_url(&gw.base, task, &session))
            .send()
            .await?;
        let ok = resp.status().is_success();
        let mut received = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            received += chunk.len() as u64;
        }
        Ok::<_, reqwest::Error>((ok, received, t.elapsed().as_secs_f64()))
    };
    let compaction = async {
        let answer = gw.compact(task).await;
        (answer, t0.elapsed().as_secs_f64())
    };
    let (during, (answer, compact_secs)) = tokio::join!(during, compaction);
    let (status, answer) = answer?;
    let (during_ok, during_bytes, during_secs) = during?;
    let compact_hwm = gw.status_kib("VmHWM").ok();
    gw.stop()?;
    let mut after = Value::Null;
    if status == 200 {
        let (a, after_row) = measured_load(env, spec, task, &session, total_bytes, parts).await?;
        rows.push(after_row(&scenario, &format!("{label}, compacted")));
        after = a;
    } else {
        rows.push(
            Row::new(&scenario, &format!("{label}, compacted"), None)
                .ratio(format!("not measured: compact answered {status}")),
        );
    }
    // Reading the transcript once: the load before compaction, alone.
    let read_once = before["secs"].as_f64().unwrap_or(f64::NAN);
    if let Some(kib) = compact_hwm.filter(|_| status == 200) {
        let mib = kib as f64 / 1024.0;
        rows.push(
            Row::new(
                &scenario,
                &format!("{label}, compaction with a load running"),
                None,
            )
            .ratio(format!("peak RSS {mib:.1} MiB; {compact_secs:.1} s"))
            .target(
                format!("<= {TARGET_MIB:.0} MiB"),
                Some(mib <= TARGET_MIB && during_ok),
            ),
        );
    }
    // The other copy compacted alone, for its time.
    let gw = Gateway::start(env, spec).await?;
    let t0 = Instant::now();
    let (alone_status, alone_answer) = gw.compact(timed_task).await?;
    let alone_secs = t0.elapsed().as_secs_f64();
    let alone_hwm = gw.status_kib("VmHWM").ok();
    gw.stop()?;
    if alone_status == 200 {
        let ratio = alone_secs / read_once;
        let mib = alone_hwm.map_or(f64::NAN, |k| k as f64 / 1024.0);
        rows.push(
            Row::new(&scenario, &format!("{label}, the compaction alone"), None)
                .ratio(format!(
                    "{alone_secs:.2} s, {ratio:.2}x one load; peak RSS {mib:.1} MiB"
                ))
                .target(
                    format!("<= {TARGET_COMPACT_TIME}x one load"),
                    Some(ratio <= TARGET_COMPACT_TIME),
                ),
        );
    }
    let alone = json!({"status": alone_status, "answer": alone_answer, "secs": alone_secs, "peak_rss_kib": alone_hwm});
    let during = json!({"ok": during_ok, "received_bytes": during_bytes, "secs": during_secs});
    let detail = json!({
        "parts": parts,
        "part_bytes": part_bytes,
        "entries_per_part": ENTRIES_PER_PART,
        "transcript_bytes": total_bytes,
        "seed_secs": seed_secs,
        "load_before_compaction": before,
        "compact": {"status": status, "answer": answer, "secs": compact_secs, "peak_rss_kib": compact_hwm, "load_meanwhile": during, "read_once_secs": read_once},
        "compact_alone": alone,
        "load_after_compaction": after,
    });
    Ok((rows, detail))
}

/// Writes parts `1..=parts` of `task`/`session`: on S3 straight into the
/// bucket in the gateway's layout (the last through the gateway), on the
/// embedded backend over HTTP.
async fn seed(
    env: &Env,
    spec: &Spec,
    task: &str,
    session: &str,
    parts: u64,
    part: impl Fn(u64) -> Batch,
) -> Res<()> {
    let gw = Gateway::start(env, spec).await?;
    let url = entries_url(&gw.base, task, session);
    match &spec.storage {
        Storage::S3 { prefix } => {
            let dir = gateway_dir(task, PROJECT, session);
            env.direct
                .put_many(
                    gateway_parts(&dir, parts - 1, &part)
                        .into_iter()
                        .map(|(key, body)| (format!("{prefix}/{key}"), body)),
                    8,
                )
                .await?;
            post_append(&gw.http, &url, part(parts).http_body()).await?;
        }
        Storage::Embedded => {
            for seq in 1..=parts {
                post_append(&gw.http, &url, part(seq).http_body()).await?;
            }
        }
    }
    gw.stop()
}

type RowFn = Box<dyn Fn(&str, &str) -> Row + Send>;

/// Starts a fresh gateway, lets it settle, then streams one load while
/// sampling its RSS; returns the numbers and a row builder.
async fn measured_load(
    env: &Env,
    spec: &Spec,
    task: &str,
    session: &str,
    total_bytes: u64,
    parts: u64,
) -> Res<(Value, RowFn)> {
    let gw = Gateway::start(env, spec).await?;
    let url = entries_url(&gw.base, task, session);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = gw.status_kib("VmRSS")?;
    let idle_hwm = gw.status_kib("VmHWM")?;

    // Sample VmRSS every 10 ms while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(idle_rss));
    let sampler = {
        let (stop, peak, pid) = (stop.clone(), peak.clone(), gw.pid);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(kib) = crate::procfs::status_kib(pid, "VmRSS") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let t0 = Instant::now();
    let mut resp = gw.http.get(&url).send().await?;
    let status = resp.status();
    let first_byte = t0.elapsed();
    let mut received: u64 = 0;
    let mut chunks: u64 = 0;
    while let Some(chunk) = resp.chunk().await? {
        received += chunk.len() as u64;
        chunks += 1;
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm = gw.status_kib("VmHWM")?;
    let rss_after = gw.status_kib("VmRSS")?;
    gw.stop()?;
    if !status.is_success() {
        return Err(err(format!("load {url} answered {status}")));
    }
    // `{"data":{"entries":[` + the JSONL with newlines turned into commas
    // (the last one dropped) + `]}}`.
    let expected = (r#"{"data":{"entries":["#.len() + "]}}".len()) as u64 + total_bytes - 1;
    let hwm_mib = hwm as f64 / 1024.0;
    let idle_mib = idle_rss as f64 / 1024.0;
    let secs = elapsed.as_secs_f64();
    let mib_s = received as f64 / (1024.0 * 1024.0) / secs;
    let value = json!({
        "parts": parts,
        "status": status.as_u16(),
        "idle_rss_kib": idle_rss,
        "idle_hwm_kib": idle_hwm,
        "peak_rss_kib_vmhwm": hwm,
        "peak_rss_kib_sampled": peak.load(Ordering::Relaxed),
        "rss_after_kib": rss_after,
        "received_bytes": received,
        "expected_bytes": expected,
        "chunks": chunks,
        "first_byte_ms": first_byte.as_secs_f64() * 1e3,
        "secs": secs,
        "mib_per_sec": mib_s,
    });
    if received != expected {
        eprintln!("tg-bench: load returned {received} bytes, expected {expected}");
    }
    let latency = summarize(&[secs * 1e3]);
    let row: RowFn = Box::new(move |scenario, series| {
        Row::new(scenario, series, latency.clone())
            .rate(mib_s, "MiB/s")
            .ratio(format!(
                "peak RSS {hwm_mib:.1} MiB (idle {idle_mib:.1} MiB)"
            ))
            .target(
                format!("<= {TARGET_MIB:.0} MiB"),
                Some(hwm_mib <= TARGET_MIB),
            )
    });
    Ok((value, row))
}
