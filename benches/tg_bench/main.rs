//! `tg-bench`: the transcript-gateway benchmark harness.
//!
//! Starts release gateway processes itself (free 127.0.0.1 ports, fresh data
//! directories, `TG_LOG=warn`), talks to them over HTTP with one keep-alive
//! client, and talks to the S3 emulator directly (aws-sdk-s3, and a Python
//! boto3 worker for the reference adapter) for baselines. Baseline and
//! gateway requests are interleaved, so ratios compare numbers taken side by
//! side on a shared, noisy machine.
//!
//! Scenarios: `append` (overhead vs a direct conditional PutObject), `resume`
//! (load of 10 / 1,000 / 10,000 parts before and after compaction vs the
//! reference pattern and a single-object floor), `throughput` (64 sessions
//! appending concurrently) and `memory` (peak RSS while streaming a large
//! load). Prints a table and writes JSON to `--results-dir`.
//!
//! Run it through `scripts/bench [--quick]`, which builds it, starts
//! SeaweedFS and passes the emulator's settings.

// A harness, not a request path: an unwrap that fails stops the run.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

mod append;
mod dynamo;
mod gateway;
mod memory;
mod otlp_sink;
mod payload;
mod procfs;
mod pyref;
mod report;
mod resume;
mod s3;
mod stats;
mod throughput;

/// Errors are reported, not handled: a boxed error with a readable message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result with [`Error`].
pub type Res<T> = Result<T, Error>;

/// An error from a message.
pub fn err(message: impl Into<String>) -> Error {
    message.into().into()
}

/// A scenario of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Append,
    Resume,
    Throughput,
    Memory,
}

/// Benchmarks transcript-gateway against direct S3 access (see scripts/bench).
#[derive(Parser, Debug)]
#[command(about, long_about)]
struct Args {
    /// Fewer iterations and smaller sizes (under 2 minutes).
    #[arg(long)]
    quick: bool,
    /// The gateway binary (a release build).
    #[arg(
        long,
        env = "TG_TEST_BENCH_GATEWAY_BIN",
        default_value = "target/release/transcript-gateway"
    )]
    gateway_bin: PathBuf,
    /// Another build of the gateway (the previous release, say), run as one
    /// more append series interleaved with the others.
    #[arg(long)]
    baseline_gateway_bin: Option<PathBuf>,
    /// The S3 emulator's endpoint.
    #[arg(long, env = "TG_TEST_S3_ENDPOINT")]
    s3_endpoint: String,
    /// The bucket to use.
    #[arg(long, env = "TG_TEST_S3_BUCKET")]
    s3_bucket: String,
    /// A DynamoDB emulator's endpoint: adds the series with the DynamoDB
    /// catalog (scripts/bench starts moto).
    #[arg(long, env = "TG_TEST_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// The pid of the S3 emulator, to report its CPU time.
    #[arg(long, env = "TG_TEST_S3_PID")]
    s3_pid: Option<u32>,
    /// Python with boto3 (the venv's).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The reference adapter worker.
    #[arg(long, default_value = "benches/reference_load.py")]
    reference_script: PathBuf,
    /// Where `<timestamp>.json` and `latest.json` go.
    #[arg(long, default_value = "bench/results")]
    results_dir: PathBuf,
    /// Scratch space for data directories and gateway logs (default: a new
    /// directory under the system temp dir, removed at exit).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The emulator's version, for the record.
    #[arg(long, default_value = "unknown")]
    seaweedfs_version: String,
    /// Which scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "append,resume,throughput,memory"
    )]
    scenarios: Vec<Scenario>,
}

/// What every scenario needs.
pub struct Env {
    /// The gateway binary.
    pub gateway_bin: PathBuf,
    /// Another build, for the baseline append series.
    pub baseline_bin: Option<PathBuf>,
    /// The DynamoDB emulator, when one runs.
    pub dynamodb_endpoint: Option<String>,
    /// Python with boto3.
    pub python: PathBuf,
    /// `benches/reference_load.py`.
    pub reference_script: PathBuf,
    /// The S3 emulator's endpoint.
    pub s3_endpoint: String,
    /// The bucket.
    pub s3_bucket: String,
    /// The emulator's pid, when known.
    pub s3_pid: Option<u32>,
    /// Scratch space.
    pub work_dir: PathBuf,
    /// Direct S3 access.
    pub direct: s3::Direct,
    /// Unique per run; keeps S3 prefixes apart.
    pub run_id: String,
    /// `--quick`.
    pub quick: bool,
}

impl Env {
    /// A fresh data directory for a gateway (unique to this run, so a reused
    /// work dir never mixes runs).
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.work_dir
            .join(&self.run_id)
            .join(format!("data-{name}"))
    }

    /// An S3 key prefix of this run (no trailing `/`).
    pub fn prefix(&self, name: &str) -> String {
        format!("bench-{}/{name}", self.run_id)
    }
}

/// The project key of every benchmark session.
pub const PROJECT: &str = "-workspace-bench";

/// `.../entries` of a session on a gateway.
pub fn entries_url(base: &str, task: &str, session: &str) -> String {
    format!("{base}/v1/tasks/{task}/projects/{PROJECT}/sessions/{session}/entries")
}

/// The HS256 secret every benchmarked gateway verifies tokens with.
pub const BENCH_AUTH_SECRET: &str = "tg-bench-secret-for-loopback-gateways-only";

/// The keep-alive HTTP client every timed request goes through: to a
/// gateway (with `http_client`'s token) or, presigned, straight to S3.
pub fn light_client(headers: reqwest::header::HeaderMap) -> Res<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// A keep-alive HTTP client for loopback gateways that sends a bearer token
/// for every task (gateways run with authentication on, as deployed).
pub fn http_client() -> Res<reqwest::Client> {
    use transcript_gateway::auth::{AuthSettings, Minter, Scopes, Secret, TaskGrant};
    let settings = AuthSettings {
        secret: Some(Secret::new(BENCH_AUTH_SECRET)),
        ..AuthSettings::default()
    };
    let token = Minter::new(&settings, None)
        .and_then(|m| {
            m.mint(
                &TaskGrant::Any,
                Scopes::parse_strict("transcripts:write admin")
                    .map_err(transcript_gateway::auth::KeyError::new)?,
                Duration::from_secs(24 * 3600),
                "tg-bench",
            )
        })
        .map_err(|e| err(format!("cannot mint the benchmark token: {e}")))?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| err(e.to_string()))?,
    );
    light_client(headers)
}

/// An error with its chain of causes on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// POSTs an append body; fails unless the answer is 200. Returns the answer.
pub async fn post_append(http: &reqwest::Client, url: &str, body: bytes::Bytes) -> Res<Value> {
    post_append_with(http, url, body, None).await
}

/// [`post_append`] with an optional `Idempotency-Key`, as the Python adapter
/// sends on every append.
pub async fn post_append_with(
    http: &reqwest::Client,
    url: &str,
    body: bytes::Bytes,
    idempotency_key: Option<&str>,
) -> Res<Value> {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = idempotency_key {
        req = req.header("idempotency-key", key);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        return Err(err(format!(
            "append to {url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let answer: Value = serde_json::from_slice(&bytes)?;
    if answer["data"]["skipped"].as_u64().unwrap_or(0) > 0 {
        // Resent uuids measure appends that store nothing.
        return Err(err(format!(
            "append to {url} skipped entries as duplicates: {answer}"
        )));
    }
    Ok(answer)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tg-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // On Ctrl-C or SIGTERM the run is dropped, and with it every gateway
    // and worker process it started (their Drop kills them).
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = run(args) => Some(result),
            () = stop_signal() => None,
        }
    });
    let Some(outcome) = outcome else {
        eprintln!("tg-bench: interrupted; stopped every process it started");
        return std::process::ExitCode::from(130);
    };
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("tg-bench: {}", chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

/// Runs the chosen scenarios; `Ok(false)` when one of them failed to run.
async fn run(args: Args) -> Res<bool> {
    let started = Instant::now();
    let stamp = report::utc_stamp();
    let (work_dir, owned) = match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("tg-bench-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work_dir)?;
    if !args.gateway_bin.is_file() {
        return Err(err(format!(
            "no gateway binary at {}; build it with cargo build --release --bin transcript-gateway",
            args.gateway_bin.display()
        )));
    }
    let env = Env {
        gateway_bin: args.gateway_bin.clone(),
        baseline_bin: args.baseline_gateway_bin.clone(),
        dynamodb_endpoint: args.dynamodb_endpoint.clone(),
        python: args.python.clone(),
        reference_script: args.reference_script.clone(),
        direct: s3::Direct::new(&args.s3_endpoint, &args.s3_bucket)?,
        s3_endpoint: args.s3_endpoint.clone(),
        s3_bucket: args.s3_bucket.clone(),
        s3_pid: args.s3_pid,
        work_dir: work_dir.clone(),
        run_id: ulid::Ulid::new().to_string().to_lowercase(),
        quick: args.quick,
    };
    let mode = if args.quick { "quick" } else { "full" };
    eprintln!(
        "tg-bench: {mode} run {} of {:?} against {} (bucket {}), work dir {}",
        env.run_id,
        args.scenarios,
        env.s3_endpoint,
        env.s3_bucket,
        work_dir.display()
    );

    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    let mut all_ran = true;
    for scenario in &args.scenarios {
        let name = format!("{scenario:?}").to_lowercase();
        let t0 = Instant::now();
        eprintln!("tg-bench: == {name}");
        let result = match scenario {
            Scenario::Append => append::run(&env).await,
            Scenario::Resume => resume::run(&env).await,
            Scenario::Throughput => throughput::run(&env).await,
            Scenario::Memory => memory::run(&env).await,
        };
        let secs = t0.elapsed().as_secs_f64();
        match result {
            Ok((mut r, mut detail)) => {
                detail["scenario_secs"] = json!(secs);
                details.insert(name.clone(), detail);
                rows.append(&mut r);
            }
            Err(e) => {
                eprintln!("tg-bench: {name} failed: {}", chain(e.as_ref()));
                details.insert(
                    name.clone(),
                    json!({ "error": chain(e.as_ref()), "scenario_secs": secs }),
                );
                all_ran = false;
            }
        }
        eprintln!("tg-bench: {name} took {secs:.1} s");
    }

    let table = report::table(&rows);
    println!("\ntranscript-gateway benchmark ({mode}), {stamp}\n");
    println!("{table}");
    if args.quick {
        println!(
            "quick mode: fewer rounds; resume uses 2,000 parts instead of 10,000 (the resume \
             targets are judged on 10,000 only), throughput runs 5 s, memory loads 50 MiB.\n"
        );
    }
    let output = json!({
        "timestamp_utc": stamp,
        "mode": mode,
        "run_id": env.run_id,
        "total_secs": started.elapsed().as_secs_f64(),
        "machine": report::machine(&args.seaweedfs_version),
        "rows": rows,
        "scenarios": details,
    });
    let path = report::write_json(&args.results_dir, &stamp, &output)?;
    println!(
        "total {:.1} s; JSON in {} (and latest.json)",
        started.elapsed().as_secs_f64(),
        path.display()
    );
    if owned && all_ran {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    Ok(all_ran)
}
