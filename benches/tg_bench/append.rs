//! Append overhead: one batch through the gateway vs a direct conditional,
//! checksummed `PutObject` of the same part bytes to the same emulator,
//! presigned before timing and sent with the same keep-alive HTTP client
//! that posts to the gateway (so the baseline pays no signing or hashing
//! the gateway's client does not).
//!
//! Three series, interleaved request by request in a fresh order each round: the
//! gateway on S3 (embedded catalog), the direct put, and the gateway on the
//! embedded backend. One request in flight at a time (latency, not load).
//!
//! A fourth series is the gateway on S3 with an `Idempotency-Key` on every
//! append, as the Python adapter sends (one more catalog read, and the
//! idempotency record in the same commit). A fifth is the gateway on S3
//! exporting traces and metrics over OTLP/HTTP to a loopback sink, against
//! the first (no endpoint: nothing exported), to show what export costs.
//!
//! Four more series, interleaved the same way, split the gateway's extra
//! time into its parts: an HTTP round trip to the gateway that touches no
//! backend (`GET /healthz`); the gateway's own S3 client (aws-sdk-s3, set up
//! as the gateway sets it up) putting the same part from this process; one
//! durable write to the embedded catalog (the redb store the gateway commits
//! each append's record to, at the same time as the part's PUT), run in
//! this process on the same disk; and the idempotent variant of that write
//! (a lookup, then the record and the idempotency record in one commit).

use std::sync::Arc;

use serde_json::{json, Value};
use transcript_gateway::backend::embedded::RedbCatalog;
use transcript_gateway::backend::{
    CatalogPort, IdempotencyRecord, ObjectPort as _, SessionRecord, SessionWrite,
};
use transcript_gateway::domain::{
    AppendReceipt, ProjectKey, Seq, SessionId, SessionKey, SessionRef, TaskId,
};

use crate::gateway::{Gateway, Spec, Storage};
use crate::payload::Batch;
use crate::report::Row;
use crate::stats::{timed, Samples};
use crate::{entries_url, post_append, post_append_with, Env, Res};

/// Target ratios of gateway to the presigned direct put.
const P50_TARGET: f64 = 1.2;
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
    let sink = crate::otlp_sink::start().await?;
    let exporting = Gateway::start(
        env,
        &Spec::new(
            "append-s3-otlp",
            Storage::S3 {
                prefix: format!("{prefix}-otlp"),
            },
            env.data_dir("append-s3-otlp"),
        )
        .with("OTEL_EXPORTER_OTLP_ENDPOINT", &sink.endpoint)
        .with("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    .await?;
    let baseline = match &env.baseline_bin {
        Some(bin) => Some(
            Gateway::start(
                env,
                &Spec::new(
                    "append-s3-baseline",
                    Storage::S3 {
                        prefix: format!("{prefix}-baseline"),
                    },
                    env.data_dir("append-s3-baseline"),
                )
                .with_bin(bin.clone()),
            )
            .await?,
        ),
        None => None,
    };
    // With a DynamoDB emulator: the gateway on S3 + DynamoDB, and a direct
    // conditional DynamoDB write measured alone.
    let dynamo = match &env.dynamodb_endpoint {
        Some(endpoint) => {
            let tables = format!("{prefix}-ddb").replace('/', "-");
            let spec = Spec::new(
                "append-s3-dynamodb",
                Storage::S3 {
                    prefix: format!("{prefix}-ddb"),
                },
                env.data_dir("append-s3-dynamodb"),
            );
            let spec = crate::dynamo::on_dynamodb(env, endpoint, &tables, spec)?;
            let gateway = Gateway::start(env, &spec).await?;
            let direct = crate::dynamo::Direct::new(endpoint, &tables).await?;
            Some((gateway, direct))
        }
        None => None,
    };
    // The gateway's own S3 client, in this process, configured as the
    // gateway configures it.
    let sdk = transcript_gateway::backend::s3::S3Objects::open(
        &transcript_gateway::config::Config {
            s3_bucket: Some(env.s3_bucket.clone()),
            s3_prefix: format!("{prefix}-sdk"),
            s3_endpoint_url: Some(env.s3_endpoint.clone()),
            s3_force_path_style: true,
            ..transcript_gateway::config::Config::default()
        }
        .s3(),
    )
    .await?;
    // Which series run: the nine always, then the optional ones.
    let mut active: Vec<usize> = (0..8).chain([12]).collect();
    if baseline.is_some() {
        active.push(8);
    }
    if dynamo.is_some() {
        active.extend([9, 10, 11]);
    }
    let embedded = Gateway::start(
        env,
        &Spec::new(
            "append-embedded",
            Storage::Embedded,
            env.data_dir("append-embedded"),
        ),
    )
    .await?;

    let catalog: Arc<dyn CatalogPort> =
        Arc::new(RedbCatalog::open(&env.data_dir("append-catalog-probe"))?);
    let healthz = format!("{}/healthz", s3.base);
    let s3_http = crate::light_client(reqwest::header::HeaderMap::new())?;

    let mut rows = Vec::new();
    let mut detail = serde_json::Map::new();
    for (label, entries, iters) in [("1 KiB", 1usize, iters_small), ("64 KiB", 64, iters_large)] {
        let batch = Batch::new("append", 1, entries, 1023);
        let bodies = batch.http_bodies();
        let part = batch.part_body();
        let session = format!("sess-{}", label.replace(' ', "").to_lowercase());
        let s3_url = entries_url(&s3.base, "bench-append", &session);
        let emb_url = entries_url(&embedded.base, "bench-append", &session);
        let mut series: [Samples; 13] = Default::default();
        let s3_idem_url = entries_url(&s3.base, "bench-append", &format!("{session}-idem"));
        let otlp_url = entries_url(&exporting.base, "bench-append", &session);
        let baseline_url = baseline
            .as_ref()
            .map(|b| entries_url(&b.base, "bench-append", &session));
        let ddb_url = dynamo
            .as_ref()
            .map(|(g, _)| entries_url(&g.base, "bench-append", &session));
        let ddb_idem_url = dynamo
            .as_ref()
            .map(|(g, _)| entries_url(&g.base, "bench-append", &format!("{session}-idem")));
        let probe_key = SessionKey {
            session: SessionRef {
                task_id: TaskId::new("bench-append-probe")?,
                project_key: ProjectKey::new(crate::PROJECT)?,
                session_id: SessionId::new(session.clone())?,
            },
            subpath: None,
        };
        let mut probe_version = 0;
        let idem_probe_key = SessionKey {
            session: SessionRef {
                session_id: SessionId::new(format!("{session}-idem"))?,
                ..probe_key.session.clone()
            },
            subpath: None,
        };
        let mut idem_version = 0;
        // The baseline's requests are signed before timing starts: a signing
        // and hashing step inside the timed loop would flatter the gateway.
        let mut presigned = Vec::with_capacity(warmup + iters);
        for i in 0..warmup + iters {
            let key = format!("{prefix}/direct-{session}/obj-{i:08}.jsonl");
            presigned.push(env.direct.presign_put(&key, &part).await?);
        }
        let (cpu_gw0, cpu_emu0) = (s3.cpu_secs(), env.s3_pid.and_then(crate::procfs::cpu_secs));
        for i in 0..warmup + iters {
            // A fresh order every iteration: with a fixed cycle, a series
            // would always follow the same neighbour (and inherit, say, an
            // emulator still busy with it) however the start rotates.
            for which in shuffled(&active, i as u64) {
                let elapsed = match which {
                    0 => timed(post_append(&s3.http, &s3_url, bodies.nth(i as u64))).await,
                    1 => {
                        let put = presigned
                            .get(i)
                            .ok_or_else(|| crate::err("no presigned put"))?;
                        timed(async {
                            put.send(&s3_http, part.clone()).await?;
                            Ok(Value::Null)
                        })
                        .await
                    }
                    2 => timed(post_append(&embedded.http, &emb_url, bodies.nth(i as u64))).await,
                    3 => {
                        timed(async {
                            let resp = s3.http.get(&healthz).send().await?;
                            resp.bytes().await?;
                            Ok(Value::Null)
                        })
                        .await
                    }
                    5 => {
                        let key = format!("bench-{}-{session}-{i:08}", env.run_id);
                        timed(post_append_with(
                            &s3.http,
                            &s3_idem_url,
                            bodies.nth(i as u64),
                            Some(&key),
                        ))
                        .await
                    }
                    7 => {
                        timed(post_append(
                            &exporting.http,
                            &otlp_url,
                            bodies.nth(i as u64),
                        ))
                        .await
                    }
                    6 => {
                        // The idempotent path in-process: lookup, then the
                        // record and the idempotency record in one commit.
                        let key = format!("probe-{session}-{i}");
                        let record = SessionRecord {
                            head: Seq(idem_version + 1),
                            parts: idem_version + 1,
                            mtime: transcript_gateway::domain::clock::now_ms(),
                            ..SessionRecord::default()
                        };
                        let idem_record = IdempotencyRecord {
                            fingerprint: "0".repeat(64),
                            receipt: AppendReceipt {
                                seq: Seq(idem_version + 1),
                                skipped: 0,
                                count: entries as u64,
                                mtime: record.mtime,
                                summary: None,
                            },
                            created_ms: record.mtime,
                            expires_ms: record.mtime + 7 * 24 * 3600 * 1000,
                            part_dir: None,
                        };
                        let (result, d) = timed(async {
                            let found = catalog
                                .get_idempotency(&idem_probe_key.session.task_id, &key)
                                .await?;
                            if found.is_some() {
                                return Err(crate::err("probe idempotency key already used"));
                            }
                            Ok(catalog
                                .put_session(SessionWrite {
                                    key: &idem_probe_key,
                                    record: &record,
                                    expected_version: idem_version,
                                    idempotency: vec![(&key, &idem_record)],
                                    independent: false,
                                })
                                .await?)
                        })
                        .await;
                        idem_version = result?;
                        (Ok(Value::Null), d)
                    }
                    4 => {
                        let record = SessionRecord {
                            head: Seq(probe_version + 1),
                            parts: probe_version + 1,
                            bytes: (probe_version + 1) * part.len() as u64,
                            mtime: transcript_gateway::domain::clock::now_ms(),
                            ..SessionRecord::default()
                        };
                        let write = SessionWrite {
                            key: &probe_key,
                            record: &record,
                            expected_version: probe_version,
                            idempotency: Vec::new(),
                            independent: false,
                        };
                        let (result, d) = timed(catalog.put_session(write)).await;
                        probe_version = result?;
                        (Ok(Value::Null), d)
                    }
                    8 => match (&baseline, &baseline_url) {
                        (Some(b), Some(url)) => {
                            timed(post_append(&b.http, url, bodies.nth(i as u64))).await
                        }
                        _ => return Err(crate::err("no baseline gateway")),
                    },
                    9 => match (&dynamo, &ddb_url) {
                        (Some((g, _)), Some(url)) => {
                            timed(post_append(&g.http, url, bodies.nth(i as u64))).await
                        }
                        _ => return Err(crate::err("no DynamoDB gateway")),
                    },
                    11 => match (&dynamo, &ddb_idem_url) {
                        (Some((g, _)), Some(url)) => {
                            let key = format!("bench-{}-{session}-ddb-{i:08}", env.run_id);
                            timed(post_append_with(
                                &g.http,
                                url,
                                bodies.nth(i as u64),
                                Some(&key),
                            ))
                            .await
                        }
                        _ => return Err(crate::err("no DynamoDB gateway")),
                    },
                    10 => match &dynamo {
                        Some((_, direct)) => {
                            let sk = format!("M#{session}#{}#{i}", env.run_id);
                            timed(async {
                                direct.put_new(&sk).await?;
                                Ok(Value::Null)
                            })
                            .await
                        }
                        None => return Err(crate::err("no DynamoDB emulator")),
                    },
                    12 => {
                        let key = format!("sdk-{session}/obj-{i:08}.jsonl");
                        let body = part.clone();
                        timed(async {
                            let crc = crc32c::crc32c(&body);
                            sdk.put_if_absent(&key, body, crc).await?;
                            Ok(Value::Null)
                        })
                        .await
                    }
                    _ => return Err(crate::err("no such series")),
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
        let [gw, direct, emb, hop, commit, idem, lookup, otlp, base, gw_ddb, ddb, ddb_idem, sdk_put] =
            series.map(|s| s.summary());
        let unwrap = |s: Option<crate::stats::Summary>| {
            s.ok_or_else(|| crate::err("a series has no samples"))
        };
        let (gw, direct, emb, hop, commit, idem, lookup, otlp, sdk_put) = (
            unwrap(gw)?,
            unwrap(direct)?,
            unwrap(emb)?,
            unwrap(hop)?,
            unwrap(commit)?,
            unwrap(idem)?,
            unwrap(lookup)?,
            unwrap(otlp)?,
            unwrap(sdk_put)?,
        );
        let p50 = gw.p50_ms / direct.p50_ms;
        let p99 = gw.p99_ms / direct.p99_ms;
        let scenario = format!("append {label}");
        rows.push(
            Row::new(
                &scenario,
                "direct PutObject, presigned (If-None-Match, CRC32C)",
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
            Row::new(
                &scenario,
                "gateway, S3, with Idempotency-Key",
                Some(idem.clone()),
            )
            .rate(idem.sequential_rate(), "ops/s")
            .ratio(format!(
                "p50 {:.2}x, p99 {:.2}x; the key costs {:+.2} ms",
                idem.p50_ms / direct.p50_ms,
                idem.p99_ms / direct.p99_ms,
                idem.p50_ms - gw.p50_ms
            ))
            .target(
                "within 0.1 ms of without".to_string(),
                Some(idem.p50_ms - gw.p50_ms <= 0.1),
            ),
        );
        rows.push(
            Row::new(
                &scenario,
                "gateway, S3, exporting OTLP traces + metrics",
                Some(otlp.clone()),
            )
            .rate(otlp.sequential_rate(), "ops/s")
            .ratio(format!(
                "vs no endpoint: p50 {:.2}x, p99 {:.2}x",
                otlp.p50_ms / gw.p50_ms,
                otlp.p99_ms / gw.p99_ms
            )),
        );
        if let Some(base) = &base {
            rows.push(
                Row::new(
                    &scenario,
                    "baseline build, S3 (--baseline-gateway-bin)",
                    Some(base.clone()),
                )
                .rate(base.sequential_rate(), "ops/s")
                .ratio(format!(
                    "this build vs it: p50 {:.2}x, p99 {:.2}x",
                    gw.p50_ms / base.p50_ms,
                    gw.p99_ms / base.p99_ms
                )),
            );
        }
        if let (Some(gw_ddb), Some(ddb), Some(ddb_idem)) = (&gw_ddb, &ddb, &ddb_idem) {
            rows.push(
                Row::new(
                    &scenario,
                    "direct DynamoDB PutItem (conditional)",
                    Some(ddb.clone()),
                )
                .rate(ddb.sequential_rate(), "ops/s")
                .ratio(format!(
                    "{:.2}x the direct put at p50",
                    ddb.p50_ms / direct.p50_ms
                )),
            );
            // Against the slower of the two direct writes, each alone.
            let (floor50, floor99) = (direct.p50_ms.max(ddb.p50_ms), direct.p99_ms.max(ddb.p99_ms));
            let (r50, r99) = (gw_ddb.p50_ms / floor50, gw_ddb.p99_ms / floor99);
            rows.push(
                Row::new(
                    &scenario,
                    "gateway, S3 + DynamoDB catalog",
                    Some(gw_ddb.clone()),
                )
                .rate(gw_ddb.sequential_rate(), "ops/s")
                .ratio(format!(
                    "vs the slower direct write: p50 {r50:.2}x, p99 {r99:.2}x"
                ))
                .target(
                    "p50 <= 1.2x, p99 <= 1.5x".to_string(),
                    Some(r50 <= 1.2 && r99 <= 1.5),
                ),
            );
            let extra = ddb_idem.p50_ms - gw_ddb.p50_ms;
            rows.push(
                Row::new(
                    &scenario,
                    "gateway, S3 + DynamoDB, with Idempotency-Key",
                    Some(ddb_idem.clone()),
                )
                .rate(ddb_idem.sequential_rate(), "ops/s")
                .ratio(format!("the key costs {extra:+.2} ms at p50"))
                .target("within 0.1 ms of without".to_string(), Some(extra <= 0.1)),
            );
        }
        rows.push(
            Row::new(&scenario, "gateway, embedded backend", Some(emb.clone()))
                .rate(emb.sequential_rate(), "ops/s")
                .ratio(format!(
                    "p50 {:.2}x, p99 {:.2}x",
                    emb.p50_ms / direct.p50_ms,
                    emb.p99_ms / direct.p99_ms
                )),
        );
        // The catalog commit overlaps the part's PUT: the gap is the extra
        // hop, what the gateway's S3 client costs over a presigned put, and
        // the rest (parsing, hashing, waiting for the slower of the two).
        let gap = gw.p50_ms - direct.p50_ms;
        let client = sdk_put.p50_ms - direct.p50_ms;
        let residual = gap - hop.p50_ms - client;
        rows.push(
            Row::new(
                &scenario,
                "phase: HTTP round trip (GET /healthz)",
                Some(hop.clone()),
            )
            .ratio(format!("{:.0}% of the p50 gap", 100.0 * hop.p50_ms / gap)),
        );
        rows.push(
            Row::new(
                &scenario,
                "phase: catalog commit (redb, fsync)",
                Some(commit.clone()),
            )
            .ratio("overlaps the part's PUT".to_string()),
        );
        rows.push(
            Row::new(
                &scenario,
                "phase: the gateway's S3 client alone (in-process put)",
                Some(sdk_put.clone()),
            )
            .ratio(format!(
                "{client:+.2} ms over the presigned put ({:.0}% of the p50 gap); rest {residual:.2} ms",
                100.0 * client / gap
            )),
        );
        rows.push(
            Row::new(
                &scenario,
                "phase: idempotent catalog write (lookup + commit)",
                Some(lookup.clone()),
            )
            .ratio(format!(
                "+{:.2} ms over the plain commit; the key costs the gateway +{:.2} ms",
                lookup.p50_ms - commit.p50_ms,
                idem.p50_ms - gw.p50_ms
            )),
        );
        detail.insert(
            scenario,
            json!({
                "part_bytes": part.len(),
                "http_body_bytes": bodies.nth(0).len(),
                "entries_per_batch": entries,
                "iterations": iters,
                "warmup": warmup,
                "direct_put": direct,
                "gateway_s3": gw,
                "gateway_embedded": emb,
                "gateway_s3_idempotency_key": idem,
                "gateway_s3_exporting_otlp": otlp,
                "otlp_vs_quiet_p50": otlp.p50_ms / gw.p50_ms,
                "otlp_vs_quiet_p99": otlp.p99_ms / gw.p99_ms,
                "baseline_build_s3": base,
                "gateway_s3_dynamodb": gw_ddb,
                "direct_dynamodb_put": ddb,
                "gateway_s3_dynamodb_idempotency_key": ddb_idem,
                "phase_http_round_trip": hop,
                "phase_catalog_commit": commit,
                "phase_idempotent_catalog_write": lookup,
                "phase_sdk_put": sdk_put,
                "p50_gap_ms": gap,
                "p50_gap_unexplained_ms": residual,
                "ratio_p50": p50,
                "ratio_p99": p99,
                "gateway_s3_cpu_secs": cpu_gw,
                "emulator_cpu_secs": cpu_emu,
            }),
        );
    }
    s3.stop()?;
    exporting.stop()?;
    if let Some(b) = baseline {
        b.stop()?;
    }
    if let Some((g, _)) = dynamo {
        g.stop()?;
    }
    embedded.stop()?;
    // Stopping flushed the exporting gateway's last spans and metrics.
    detail.insert(
        "otlp_sink".into(),
        json!({
            "export_requests": sink.counts.requests.load(std::sync::atomic::Ordering::Relaxed),
            "export_bytes": sink.counts.bytes.load(std::sync::atomic::Ordering::Relaxed),
        }),
    );
    detail.insert(
        "method".into(),
        json!("sequential; every series once per iteration, in a fresh pseudo-random order each iteration; default compaction settings"),
    );
    Ok((rows, Value::Object(detail)))
}

/// `items` in a pseudo-random order fixed by `seed` (Fisher-Yates over a
/// SplitMix64 sequence: reproducible, no dependency).
fn shuffled(items: &[usize], seed: u64) -> Vec<usize> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = items.to_vec();
    for i in (1..out.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        out.swap(i, j);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::shuffled;

    #[test]
    fn every_series_runs_once_per_round_in_changing_orders() {
        let items: Vec<usize> = (0..12).collect();
        let orders: Vec<Vec<usize>> = (0..50).map(|seed| shuffled(&items, seed)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, items);
        }
        // Series 0's predecessor changes from round to round.
        let before_zero: std::collections::BTreeSet<usize> = orders
            .iter()
            .filter_map(|o| {
                o.iter()
                    .position(|&x| x == 0)
                    .filter(|&p| p > 0)
                    .map(|p| o[p - 1])
            })
            .collect();
        assert!(before_zero.len() > 5, "{before_zero:?}");
    }
}
