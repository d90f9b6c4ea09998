//! Append overhead: one batch through the gateway vs a direct conditional,
//! checksummed `PutObject` of the same part bytes to the same emulator.
//!
//! Three series, interleaved request by request with a rotating order: the
//! gateway on S3 (embedded catalog), the direct put, and the gateway on the
//! embedded backend. One request in flight at a time (latency, not load).

use serde_json::{json, Value};

use crate::gateway::{Gateway, Spec, Storage};
use crate::payload::Batch;
use crate::report::Row;
use crate::stats::{timed, Samples};
use crate::{entries_url, post_append, Env, Res};

/// Target ratios of gateway to direct put (issue 6).
const P50_TARGET: f64 = 1.3;
const P99_TARGET: f64 = 1.5;

/// Runs the scenario.
pub async fn run(env: &Env) -> Res<(Vec<Row>, Value)> {
    let (iters_small, iters_large, warmup) = if env.quick {
        (200, 100, 10)
    } else {
        (1000, 400, 20)
    };
    let prefix = env.prefix("append");
    let s3 = Gateway::start(
        env,
        &Spec::new(
            "append-s3",
            Storage::S3 {
                prefix: prefix.clone(),
            },
            env.data_dir("append-s3"),
        ),
    )
    .await?;
    let embedded = Gateway::start(
        env,
        &Spec::new(
            "append-embedded",
            Storage::Embedded,
            env.data_dir("append-embedded"),
        ),
    )
    .await?;

    let mut rows = Vec::new();
    let mut detail = serde_json::Map::new();
    for (label, entries, iters) in [("1 KiB", 1usize, iters_small), ("64 KiB", 64, iters_large)] {
        let batch = Batch::new("append", 1, entries, 1023);
        let http_body = batch.http_body();
        let part = batch.part_body();
        let session = format!("sess-{}", label.replace(' ', "").to_lowercase());
        let s3_url = entries_url(&s3.base, "bench-append", &session);
        let emb_url = entries_url(&embedded.base, "bench-append", &session);
        let mut series = [Samples::default(), Samples::default(), Samples::default()];
        let (cpu_gw0, cpu_emu0) = (s3.cpu_secs(), env.s3_pid.and_then(crate::procfs::cpu_secs));
        for i in 0..warmup + iters {
            for k in 0..3 {
                let which = (i + k) % 3;
                let elapsed = match which {
                    0 => timed(post_append(&s3.http, &s3_url, http_body.clone())).await,
                    1 => {
                        let key = format!("{prefix}/direct-{session}/obj-{i:08}.jsonl");
                        timed(async {
                            env.direct.put_if_absent(&key, part.clone()).await?;
                            Ok(Value::Null)
                        })
                        .await
                    }
                    _ => timed(post_append(&embedded.http, &emb_url, http_body.clone())).await,
                };
                let (result, d) = elapsed;
                result?;
                if i >= warmup {
                    series[which].push(d);
                }
            }
        }
        let cpu_gw = s3.cpu_secs().zip(cpu_gw0).map(|(a, b)| a - b);
        let cpu_emu = env
            .s3_pid
            .and_then(crate::procfs::cpu_secs)
            .zip(cpu_emu0)
            .map(|(a, b)| a - b);
        let [gw, direct, emb] = series.map(|s| s.summary().expect("samples"));
        let p50 = gw.p50_ms / direct.p50_ms;
        let p99 = gw.p99_ms / direct.p99_ms;
        let scenario = format!("append {label}");
        rows.push(
            Row::new(
                &scenario,
                "direct PutObject (If-None-Match, CRC32C)",
                Some(direct.clone()),
            )
            .rate(direct.sequential_rate(), "ops/s")
            .ratio("baseline"),
        );
        rows.push(
            Row::new(
                &scenario,
                "gateway, S3 (embedded catalog)",
                Some(gw.clone()),
            )
            .rate(gw.sequential_rate(), "ops/s")
            .ratio(format!("p50 {p50:.2}x, p99 {p99:.2}x"))
            .target(
                format!("p50 <= {P50_TARGET}x, p99 <= {P99_TARGET}x"),
                Some(p50 <= P50_TARGET && p99 <= P99_TARGET),
            ),
        );
        rows.push(
            Row::new(&scenario, "gateway, embedded backend", Some(emb.clone()))
                .rate(emb.sequential_rate(), "ops/s")
                .ratio(format!(
                    "p50 {:.2}x, p99 {:.2}x",
                    emb.p50_ms / direct.p50_ms,
                    emb.p99_ms / direct.p99_ms
                )),
        );
        detail.insert(
            scenario,
            json!({
                "part_bytes": part.len(),
                "http_body_bytes": http_body.len(),
                "entries_per_batch": entries,
                "iterations": iters,
                "warmup": warmup,
                "direct_put": direct,
                "gateway_s3": gw,
                "gateway_embedded": emb,
                "ratio_p50": p50,
                "ratio_p99": p99,
                "gateway_s3_cpu_secs": cpu_gw,
                "emulator_cpu_secs": cpu_emu,
            }),
        );
    }
    s3.stop()?;
    embedded.stop()?;
    detail.insert(
        "method".into(),
        json!("sequential; gateway (S3), direct put and gateway (embedded) interleaved per iteration with a rotating order; default compaction settings"),
    );
    Ok((rows, Value::Object(detail)))
}
