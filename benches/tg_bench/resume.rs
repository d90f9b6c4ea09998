//! Resume: loading one session of N one-entry parts (1 KiB entries) through
//! the gateway, before and after compaction, against
//!
//! - the reference adapter's pattern done directly against S3: ListObjectsV2
//!   pages, 16-way parallel GetObject of every part, `json.loads` per line
//!   (Python/boto3, `benches/reference_load.py`), and the same in Rust;
//! - the floor: one GetObject of the same entries stored as a single object,
//!   with and without parsing;
//! - with a DynamoDB emulator, a second gateway on the same bucket whose
//!   catalog is on DynamoDB, loading its own compacted session.
//!
//! Parts are seeded straight into the bucket in the gateway's layout (with
//! CRC32C and If-None-Match, high parallelism); the last part is appended
//! through the gateway so its catalog knows the session. Gateway loads are
//! timed to the last byte ("bytes") and, for comparison with the reference,
//! including parsing the response ("+ parse").

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use crate::gateway::{Gateway, Spec, Storage};
use crate::payload::{gateway_dir, gateway_parts, Batch};
use crate::pyref::PyRef;
use crate::report::Row;
use crate::s3::parse_lines;
use crate::stats::{Samples, Summary};
use crate::{entries_url, err, post_append, Env, Res, PROJECT};

/// Bytes of one entry line (1 KiB with its newline).
const ENTRY_LEN: usize = 1023;
/// The reference pattern's parallelism.
const REF_CONCURRENCY: usize = 16;
/// Issue 6 targets, for the largest size.
const TARGET_NO_COMPACTION: f64 = 3.0;
const TARGET_COMPACTED: f64 = 50.0;
const TARGET_FLOOR: f64 = 2.0;
/// Small resumes: a compacted load within this many times the floor, at
/// these sizes, with the catalog embedded and on DynamoDB.
const TARGET_SMALL_FLOOR: f64 = 1.5;
const SMALL_SIZES: [u64; 2] = [10, 1_000];

struct Size {
    parts: u64,
    before: usize,
    after: usize,
}

/// One gateway load: time to the last byte, then with parsing too.
struct GwLoad {
    bytes_ms: f64,
    parse_ms: f64,
}

/// Runs the scenario.
pub async fn run(env: &Env) -> Res<(Vec<Row>, Value)> {
    let sizes: &[Size] = if env.quick {
        &[
            Size {
                parts: 10,
                before: 8,
                after: 10,
            },
            Size {
                parts: 1_000,
                before: 3,
                after: 5,
            },
            Size {
                parts: 2_000,
                before: 2,
                after: 5,
            },
        ]
    } else {
        &[
            Size {
                parts: 10,
                before: 20,
                after: 30,
            },
            Size {
                parts: 1_000,
                before: 6,
                after: 20,
            },
            Size {
                parts: 10_000,
                before: 3,
                after: 10,
            },
        ]
    };
    let target_parts = 10_000;
    let prefix = env.prefix("resume");
    // Automatic compaction off, so "before" is uncompacted; a long grace so
    // the covered parts still exist during the "after" loads (the load must
    // not read them anyway).
    let gw = Gateway::start(
        env,
        &Spec::new(
            "resume",
            Storage::S3 {
                prefix: prefix.clone(),
            },
            env.data_dir("resume"),
        )
        .with("TG_COMPACTION_THRESHOLD", 0)
        .with("TG_COMPACTION_GRACE_SECS", 3600),
    )
    .await?;
    // With a DynamoDB emulator, a second gateway on the same bucket with its
    // catalog there: its own session per size, compacted through it.
    let gw_ddb = match &env.dynamodb_endpoint {
        Some(endpoint) => {
            let spec = Spec::new(
                "resume-dynamodb",
                Storage::S3 {
                    prefix: prefix.clone(),
                },
                env.data_dir("resume-dynamodb"),
            )
            .with("TG_COMPACTION_THRESHOLD", 0)
            .with("TG_COMPACTION_GRACE_SECS", 3600);
            let spec = crate::dynamo::on_dynamodb(env, endpoint, &format!("{prefix}-ddb"), spec)?;
            Some(Gateway::start(env, &spec).await?)
        }
        None => None,
    };
    let mut py = PyRef::start(env).await?;
    let mut rows = Vec::new();
    let mut detail = serde_json::Map::new();
    detail.insert("reference_worker".into(), py.versions.clone());
    detail.insert(
        "method".into(),
        json!(
            "per size: seed parts directly in S3, append the last through the gateway; \
               'before' rounds interleave gateway load, Rust reference and Python reference \
               (rotating order); then POST compact; 'after' rounds interleave gateway load, \
               Rust floor GET, Python floor GET and (with moto) the gateway whose catalog is \
               on DynamoDB loading its own session of the same parts. Ratios use p50. '+ parse' rows include \
               parsing the whole answer into JSON values; the reference parses every line."
        ),
    );
    if env.quick {
        detail.insert(
            "note".into(),
            json!("quick mode: 2,000 parts instead of 10,000; the 10,000-part targets are not evaluated"),
        );
    }
    for size in sizes {
        let gateways = Gateways {
            embedded: &gw,
            dynamodb: gw_ddb.as_ref(),
        };
        let (mut r, d) = one_size(
            env,
            gateways,
            &mut py,
            &prefix,
            size,
            size.parts == target_parts,
        )
        .await?;
        rows.append(&mut r);
        detail.insert(format!("{} parts", size.parts), d);
    }
    py.stop().await;
    gw.stop()?;
    if let Some(g) = gw_ddb {
        g.stop()?;
    }
    Ok((rows, Value::Object(detail)))
}

/// The gateways a size is loaded through: catalog embedded, and on DynamoDB
/// when the emulator runs.
#[derive(Clone, Copy)]
struct Gateways<'a> {
    embedded: &'a Gateway,
    dynamodb: Option<&'a Gateway>,
}

/// Seeds parts `1..n` of `session` straight into the bucket in the
/// gateway's layout and appends part `n` through `gw`, so its catalog knows
/// the session; returns the session's entries URL.
async fn seed_session(
    env: &Env,
    gw: &Gateway,
    prefix: &str,
    task: &str,
    session: &str,
    n: u64,
) -> Res<String> {
    let dir = gateway_dir(task, PROJECT, session);
    env.direct
        .put_many(
            gateway_parts(&dir, n - 1, part)
                .into_iter()
                .map(|(key, body)| (format!("{prefix}/{key}"), body)),
            64,
        )
        .await?;
    let url = entries_url(&gw.base, task, session);
    let receipt = post_append(&gw.http, &url, part(n).http_body()).await?;
    if receipt["data"]["seq"] != json!(n) {
        return Err(err(format!(
            "the gateway appended part {} after {} seeded parts; expected {n}: the layout differs",
            receipt["data"]["seq"],
            n - 1
        )));
    }
    Ok(url)
}

/// Part `seq` of every seeded session: one entry of `ENTRY_LEN` bytes.
fn part(seq: u64) -> Batch {
    Batch::new("resume", seq, 1, ENTRY_LEN)
}

async fn one_size(
    env: &Env,
    gateways: Gateways<'_>,
    py: &mut PyRef,
    prefix: &str,
    size: &Size,
    judged: bool,
) -> Res<(Vec<Row>, Value)> {
    let gw = gateways.embedded;
    let n = size.parts;
    let task = format!("bench-resume-{n}");
    let session = format!("sess-{}", env.run_id);
    let dir = gateway_dir(&task, PROJECT, &session);
    let gw_dir = format!("{prefix}/{dir}");
    // The reference pattern reads a plain store's layout: one JSONL object per part.
    let ref_dir = format!("{prefix}/reference/{task}/{PROJECT}/{session}/");
    let floor_key = format!("{prefix}/floor/{n}.jsonl");
    eprintln!("tg-bench: resume {n} parts: seeding");

    // Seed parts 1..n-1 directly (in the gateway's layout, and plainly for
    // the references), part n through the gateway.
    let t_seed = Instant::now();
    let url = seed_session(env, gw, prefix, &task, &session, n).await?;
    let url_ddb = match gateways.dynamodb {
        Some(g) => {
            let session = format!("sess-ddb-{}", env.run_id);
            Some(seed_session(env, g, prefix, &task, &session, n).await?)
        }
        None => None,
    };
    env.direct
        .put_many(
            (1..=n).map(|seq| {
                (
                    format!("{ref_dir}part-{seq:020}.jsonl"),
                    part(seq).part_body(),
                )
            }),
            64,
        )
        .await?;
    let mut floor = BytesMut::with_capacity(n as usize * (ENTRY_LEN + 1));
    for seq in 1..=n {
        floor.extend_from_slice(&part(seq).part_body());
    }
    let floor_bytes = floor.len();
    env.direct.put_if_absent(&floor_key, floor.freeze()).await?;
    let seed_secs = t_seed.elapsed().as_secs_f64();

    // Warm up every path once, checking each sees all n entries in order.
    check_entries(&load(&gw.http, &url).await?.1, n, "gateway load")?;
    let warm = env.direct.reference_load(&ref_dir, REF_CONCURRENCY).await?;
    expect(warm.entries, n, "Rust reference load")?;

    eprintln!(
        "tg-bench: resume {n} parts: before compaction ({} rounds)",
        size.before
    );
    let (mut gw_bytes, mut gw_parse) = (Samples::default(), Samples::default());
    let (mut rust_ref, mut py_ref) = (Samples::default(), Samples::default());
    let mut rust_breakdown = Vec::new();
    let mut py_breakdown = Vec::new();
    for i in 0..size.before {
        for k in 0..3 {
            match (i + k) % 3 {
                0 => {
                    let (l, body) = load(&gw.http, &url).await?;
                    check_entries(&body, n, "gateway load")?;
                    gw_bytes.push_ms(l.bytes_ms);
                    gw_parse.push_ms(l.parse_ms);
                }
                1 => {
                    let r = env.direct.reference_load(&ref_dir, REF_CONCURRENCY).await?;
                    expect(r.entries, n, "Rust reference load")?;
                    rust_ref.push_ms(r.total_ms);
                    rust_breakdown.push(json!({"list_ms": r.list_ms, "fetch_parse_ms": r.fetch_ms, "pages": r.pages}));
                }
                _ => {
                    let r = py
                        .call(json!({"op": "reference", "prefix": ref_dir, "concurrency": REF_CONCURRENCY}), 600)
                        .await?;
                    expect(
                        r["entries"].as_u64().unwrap_or(0) as usize,
                        n,
                        "Python reference load",
                    )?;
                    py_ref.push_ms(r["total_s"].as_f64().unwrap_or(0.0) * 1e3);
                    py_breakdown.push(json!({"list_s": r["list_s"], "fetch_parse_s": r["fetch_s"], "pages": r["pages"]}));
                }
            }
        }
    }

    eprintln!("tg-bench: resume {n} parts: compacting");
    let t_compact = Instant::now();
    let (status, answer) = gw.compact(&task).await?;
    let compact_secs = t_compact.elapsed().as_secs_f64();
    let compacted = status == 200;
    if !compacted {
        eprintln!("tg-bench: compaction endpoint answered {status}: {answer}; after-compaction rows skipped");
    }
    // The same through the gateway whose catalog is on DynamoDB.
    let url_ddb = match (gateways.dynamodb, url_ddb) {
        (Some(g), Some(url)) => {
            let (status, answer) = g.compact(&task).await?;
            if status == 200 {
                check_entries(&load(&g.http, &url).await?.1, n, "gateway (DynamoDB) load")?;
                Some((g, url))
            } else {
                eprintln!("tg-bench: compaction (DynamoDB catalog) answered {status}: {answer}; its rows skipped");
                None
            }
        }
        _ => None,
    };
    let (objects_after, _) = env.direct.list(&gw_dir).await?;
    let snapshots = objects_after
        .iter()
        .filter(|k| k[gw_dir.len()..].starts_with("snapshot-"))
        .count();

    eprintln!(
        "tg-bench: resume {n} parts: after compaction / floor ({} rounds)",
        size.after
    );
    let (mut after_bytes, mut after_parse) = (Samples::default(), Samples::default());
    let (mut floor_get, mut floor_parse, mut floor_py) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut after_ddb = Samples::default();
    for i in 0..size.after {
        for k in 0..4 {
            match (i + k) % 4 {
                3 => {
                    if let Some((g, url)) = &url_ddb {
                        let (l, body) = load(&g.http, url).await?;
                        check_entries(&body, n, "gateway (DynamoDB) load after compaction")?;
                        after_ddb.push_ms(l.bytes_ms);
                    }
                }
                0 if compacted => {
                    let (l, body) = load(&gw.http, &url).await?;
                    check_entries(&body, n, "gateway load after compaction")?;
                    after_bytes.push_ms(l.bytes_ms);
                    after_parse.push_ms(l.parse_ms);
                }
                0 => {}
                1 => {
                    let t0 = Instant::now();
                    let body = env.direct.get(&floor_key).await?;
                    let got = t0.elapsed();
                    let parsed = parse_lines(&body)?;
                    let total = t0.elapsed();
                    expect(parsed.len(), n, "floor object")?;
                    floor_get.push(got);
                    floor_parse.push(total);
                }
                _ => {
                    let r = py
                        .call(json!({"op": "single", "key": floor_key}), 600)
                        .await?;
                    floor_py.push_ms(r["total_s"].as_f64().unwrap_or(0.0) * 1e3);
                }
            }
        }
    }

    // Rows.
    let scenario = format!("resume {n} parts");
    let mib = (n as f64 * (ENTRY_LEN + 1) as f64) / (1024.0 * 1024.0);
    let rate = |s: &Summary| mib / (s.p50_ms / 1e3);
    let py_s = py_ref
        .summary()
        .ok_or_else(|| err("no Python reference samples"))?;
    let rust_s = rust_ref
        .summary()
        .ok_or_else(|| err("no Rust reference samples"))?;
    let gwb = gw_bytes
        .summary()
        .ok_or_else(|| err("no gateway samples"))?;
    let gwp = gw_parse
        .summary()
        .ok_or_else(|| err("no gateway samples"))?;
    let fg = floor_get.summary().ok_or_else(|| err("no floor samples"))?;
    let fp = floor_parse
        .summary()
        .ok_or_else(|| err("no floor samples"))?;
    let faster = |s: &Summary| py_s.p50_ms / s.p50_ms;
    let small = SMALL_SIZES.contains(&n);
    let small_target = |s: &Summary| {
        (
            format!("<= {TARGET_SMALL_FLOOR}x floor"),
            Some(s.p50_ms / fg.p50_ms <= TARGET_SMALL_FLOOR),
        )
    };
    let mut rows = vec![
        Row::new(
            &scenario,
            "reference pattern, Python boto3",
            Some(py_s.clone()),
        )
        .rate(rate(&py_s), "MiB/s")
        .ratio("baseline"),
        Row::new(
            &scenario,
            "reference pattern, Rust aws-sdk-s3",
            Some(rust_s.clone()),
        )
        .rate(rate(&rust_s), "MiB/s")
        .ratio(format!("{:.1}x faster", faster(&rust_s))),
    ];
    let before_target = if judged {
        let ok = faster(&gwp) >= TARGET_NO_COMPACTION;
        (format!(">= {TARGET_NO_COMPACTION}x faster"), Some(ok))
    } else {
        (String::new(), None)
    };
    rows.push(
        Row::new(
            &scenario,
            "gateway, no compaction (+ parse)",
            Some(gwp.clone()),
        )
        .rate(rate(&gwp), "MiB/s")
        .ratio(format!("{:.1}x faster", faster(&gwp)))
        .target(before_target.0, before_target.1),
    );
    rows.push(
        Row::new(
            &scenario,
            "gateway, no compaction (bytes)",
            Some(gwb.clone()),
        )
        .rate(rate(&gwb), "MiB/s")
        .ratio(format!(
            "{:.1}x faster; {:.1}x floor",
            faster(&gwb),
            gwb.p50_ms / fg.p50_ms
        )),
    );
    let (mut ab, mut ap) = (None, None);
    if compacted {
        let a_bytes = after_bytes
            .summary()
            .ok_or_else(|| err("no after samples"))?;
        let a_parse = after_parse
            .summary()
            .ok_or_else(|| err("no after samples"))?;
        let (t1, t2) = if judged {
            (
                (
                    format!(">= {TARGET_COMPACTED}x faster"),
                    Some(faster(&a_parse) >= TARGET_COMPACTED),
                ),
                (
                    format!("<= {TARGET_FLOOR}x floor"),
                    Some(a_bytes.p50_ms / fg.p50_ms <= TARGET_FLOOR),
                ),
            )
        } else if small {
            ((String::new(), None), small_target(&a_bytes))
        } else {
            ((String::new(), None), (String::new(), None))
        };
        rows.push(
            Row::new(
                &scenario,
                "gateway, compacted (+ parse)",
                Some(a_parse.clone()),
            )
            .rate(rate(&a_parse), "MiB/s")
            .ratio(format!("{:.1}x faster", faster(&a_parse)))
            .target(t1.0, t1.1),
        );
        rows.push(
            Row::new(
                &scenario,
                "gateway, compacted (bytes)",
                Some(a_bytes.clone()),
            )
            .rate(rate(&a_bytes), "MiB/s")
            .ratio(format!("{:.2}x floor", a_bytes.p50_ms / fg.p50_ms))
            .target(t2.0, t2.1),
        );
        ab = Some(a_bytes);
        ap = Some(a_parse);
        if let Some(d) = after_ddb.summary() {
            let (target, met) = if small {
                small_target(&d)
            } else {
                (String::new(), None)
            };
            rows.push(
                Row::new(
                    &scenario,
                    "gateway, DynamoDB catalog, compacted (bytes)",
                    Some(d.clone()),
                )
                .rate(rate(&d), "MiB/s")
                .ratio(format!("{:.2}x floor", d.p50_ms / fg.p50_ms))
                .target(target, met),
            );
        }
    } else {
        rows.push(
            Row::new(&scenario, "gateway, compacted", None)
                .ratio(format!("not measured: compact answered {status}"))
                .target(
                    if judged {
                        ">= 50x faster; <= 2x floor"
                    } else {
                        ""
                    },
                    None,
                ),
        );
    }
    rows.push(
        Row::new(
            &scenario,
            "floor: one GetObject, Rust (bytes)",
            Some(fg.clone()),
        )
        .rate(rate(&fg), "MiB/s")
        .ratio("floor"),
    );
    rows.push(
        Row::new(
            &scenario,
            "floor: one GetObject, Rust (+ parse)",
            Some(fp.clone()),
        )
        .rate(rate(&fp), "MiB/s")
        .ratio(format!("{:.1}x faster", faster(&fp))),
    );
    if let Some(s) = floor_py.summary() {
        rows.push(
            Row::new(
                &scenario,
                "floor: one GetObject, Python (+ parse)",
                Some(s.clone()),
            )
            .rate(rate(&s), "MiB/s")
            .ratio(format!("{:.1}x faster", faster(&s))),
        );
    }

    let detail = json!({
        "parts": n,
        "entry_bytes": ENTRY_LEN + 1,
        "floor_object_bytes": floor_bytes,
        "seed_secs": seed_secs,
        "rounds_before": size.before,
        "rounds_after": size.after,
        "python_reference": py_s,
        "python_reference_breakdown": py_breakdown,
        "rust_reference": rust_s,
        "rust_reference_breakdown": rust_breakdown,
        "gateway_before_bytes": gwb,
        "gateway_before_parse": gwp,
        "compact": {"status": status, "answer": answer, "secs": compact_secs, "snapshots_listed": snapshots, "objects_listed": objects_after.len()},
        "gateway_after_bytes": ab,
        "gateway_after_parse": ap,
        "gateway_dynamodb_after_bytes": after_ddb.summary(),
        "floor_get": fg,
        "floor_get_parse": fp,
        "floor_python": floor_py.summary(),
        "judged_against_targets": judged,
    });
    Ok((rows, detail))
}

/// GETs a transcript, buffering the body; times the last byte and the parse.
async fn load(http: &reqwest::Client, url: &str) -> Res<(GwLoad, Value)> {
    let t0 = Instant::now();
    let mut resp = http.get(url).send().await?;
    let status = resp.status();
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
    }
    let bytes_ms = t0.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() {
        return Err(err(format!(
            "load {url} answered {status}: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(500)])
        )));
    }
    let body: Bytes = buf.freeze();
    let value: Value = serde_json::from_slice(&body)?;
    let parse_ms = t0.elapsed().as_secs_f64() * 1e3;
    Ok((GwLoad { bytes_ms, parse_ms }, value))
}

/// Checks a load answer holds entries 1..=n in order.
fn check_entries(body: &Value, n: u64, what: &str) -> Res<()> {
    let entries = body["data"]["entries"]
        .as_array()
        .ok_or_else(|| err(format!("{what}: no data.entries in the answer")))?;
    expect(entries.len(), n, what)?;
    for (i, e) in entries.iter().enumerate() {
        if e["seq"] != json!(i as u64 + 1) {
            return Err(err(format!(
                "{what}: entry {i} has seq {}, out of order",
                e["seq"]
            )));
        }
    }
    Ok(())
}

fn expect(got: usize, want: u64, what: &str) -> Res<()> {
    if got as u64 == want {
        Ok(())
    } else {
        Err(err(format!("{what}: {got} entries, expected {want}")))
    }
}
