//! Shared test helpers: fresh ids, an in-process gateway on 127.0.0.1:0, the
//! real binary as a child process, and emulator settings from the environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::oneshot;
use transcript_gateway::backend::embedded::{FsObjects, RedbCatalog};
use transcript_gateway::backend::{CatalogPort, ObjectPort};
use transcript_gateway::config::Config;
use transcript_gateway::domain::{ProjectKey, SessionId, SessionKey, SessionRef, TaskId};
use transcript_gateway::engine::{AppendRequest, Engine, EngineConfig};
use transcript_gateway::server;

/// A fresh, unique, lower-case id with a readable prefix.
pub fn fresh_id(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The project key most tests use.
pub const PROJECT: &str = "-workspace-task";

/// The HS256 secret of gateways that tests run with authentication on.
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// A configuration with token authentication (the HS256 [`TEST_SECRET`]).
pub fn auth_config() -> Config {
    Config {
        auth_secret: Some(transcript_gateway::auth::Secret::new(TEST_SECRET)),
        ..Config::default()
    }
}

/// A token signed with `config`'s settings for `task` (or `*`) and `scopes`.
pub fn mint_with(config: &Config, task: &str, scopes: &str) -> String {
    use transcript_gateway::auth::{Minter, Scopes, TaskGrant};
    Minter::new(&config.auth(), None)
        .expect("minter")
        .mint(
            &TaskGrant::parse(task).expect("task"),
            Scopes::parse_strict(scopes).expect("scopes"),
            Duration::from_secs(600),
            "integration-test",
        )
        .expect("mint")
}

/// A token signed with [`TEST_SECRET`].
pub fn mint(task: &str, scopes: &str) -> String {
    mint_with(&auth_config(), task, scopes)
}

/// SHA-256 of every file under `dir`, by relative path: a fingerprint of
/// everything the embedded backend stores (objects and catalog).
pub fn storage_fingerprint(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut out = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// An emulator setting, or `None` after printing why the caller skips.
pub fn emulator_env(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var_os("TG_TEST_REQUIRE_EMULATORS").is_some() => {
            panic!("{test}: {var} is not set, and TG_TEST_REQUIRE_EMULATORS says the emulators run")
        }
        _ => {
            eprintln!(
                "SKIP {test}: {var} is not set (scripts/test starts the emulators and sets it)"
            );
            None
        }
    }
}

/// Embedded ports over a fresh temporary directory.
pub fn embedded_ports(dir: &Path) -> (Arc<dyn ObjectPort>, Arc<dyn CatalogPort>) {
    let objects = FsObjects::open(dir).expect("open objects");
    let catalog = RedbCatalog::open(dir).expect("open catalog");
    (Arc::new(objects), Arc::new(catalog))
}

/// A gateway served in-process on an ephemeral loopback port.
pub struct TestGateway {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The engine it serves.
    pub engine: Engine,
    /// An HTTP client.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl TestGateway {
    /// A gateway over the embedded backend in a fresh temporary directory.
    pub async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (objects, catalog) = embedded_ports(dir.path());
        let mut gw = Self::over(objects, catalog, Config::default()).await;
        gw._dir = Some(dir);
        gw
    }

    /// A gateway over the given ports.
    pub async fn over(
        objects: Arc<dyn ObjectPort>,
        catalog: Arc<dyn CatalogPort>,
        config: Config,
    ) -> Self {
        let engine = Engine::new(objects, catalog, EngineConfig::default());
        Self::serve(engine, config).await
    }

    /// Serves `engine` with `config`'s HTTP limits; without a token key in
    /// `config` it serves open (loopback only, as `--insecure-no-auth`).
    pub async fn serve(engine: Engine, mut config: Config) -> Self {
        if !config.auth().has_key() {
            config.insecure_no_auth = true;
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = engine.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            server::serve(listener, served, &config, shutdown)
                .await
                .expect("serve");
        });
        Self {
            base_url,
            engine,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The Prometheus text `/metrics` serves.
    pub async fn metrics(&self) -> String {
        let resp = self.http.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }
}

/// Routes of one session, for building request URLs.
#[derive(Clone, Debug)]
pub struct Session {
    /// Task id.
    pub task: String,
    /// Project key.
    pub project: String,
    /// Session id.
    pub session: String,
}

impl Session {
    /// A session with fresh task and session ids.
    pub fn fresh() -> Self {
        Self {
            task: fresh_id("task"),
            project: PROJECT.to_string(),
            session: fresh_id("sess"),
        }
    }

    /// `.../sessions`.
    pub fn sessions(&self, base: &str) -> String {
        format!(
            "{base}/v1/tasks/{}/projects/{}/sessions",
            self.task, self.project
        )
    }

    /// `.../sessions/{session}`.
    pub fn session(&self, base: &str) -> String {
        format!("{}/{}", self.sessions(base), self.session)
    }

    /// `.../sessions/{session}/entries`.
    pub fn entries(&self, base: &str) -> String {
        format!("{}/entries", self.session(base))
    }
}

/// POSTs a batch and returns the status and JSON body.
pub async fn append(http: &reqwest::Client, url: &str, entries: Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .json(&json!({ "entries": entries }))
        .send()
        .await
        .expect("append request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// GETs a transcript's entries: the status and the entries (empty on error).
pub async fn load(http: &reqwest::Client, url: &str) -> (u16, Vec<Value>) {
    let resp = http.get(url).send().await.expect("load request");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let entries = body["data"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (status, entries)
}

/// GETs `url` and parses the answer as JSON, whatever its status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.expect("GET");
    resp.json().await.expect("a JSON answer")
}

/// Parses chunks of JSONL (as an engine load yields them) into entries.
pub fn jsonl_lines(chunks: &[bytes::Bytes]) -> Vec<Value> {
    chunks
        .iter()
        .flat_map(|c| c.split(|&b| b == b'\n').filter(|l| !l.is_empty()))
        .map(|l| serde_json::from_slice(l).expect("a JSON line"))
        .collect()
}

/// S3 (SeaweedFS) and DynamoDB (moto) for gateway processes: the `TG_*`
/// settings and the same as a [`Config`], with fresh tables (migrated) and a
/// fresh key prefix. `None`, after saying why, when the emulators are absent.
pub struct AwsBackends {
    /// Settings for child gateways.
    pub env: Vec<(&'static str, String)>,
    /// The same settings, to open the ports in-process.
    pub config: Config,
}

impl AwsBackends {
    /// Fresh tables and prefix on the test emulators.
    pub fn start(test: &str) -> Option<Self> {
        Self::with_dynamodb(test, "TG_TEST_DYNAMODB_ENDPOINT")
    }

    /// [`AwsBackends::start`] on the moto that serialises its requests, for
    /// tests where several processes race on one record (moto's own
    /// conditional writes are not atomic under concurrency).
    pub fn start_serialized(test: &str) -> Option<Self> {
        Self::with_dynamodb(test, "TG_TEST_DYNAMODB_SERIAL_ENDPOINT")
    }

    fn with_dynamodb(test: &str, variable: &str) -> Option<Self> {
        use transcript_gateway::config::{CatalogKind, StorageKind};
        let s3 = emulator_env("TG_TEST_S3_ENDPOINT", test)?;
        let dynamodb = emulator_env(variable, test)?;
        let bucket = std::env::var("TG_TEST_S3_BUCKET").unwrap_or_else(|_| "tg-test".into());
        let prefix = fresh_id("tg");
        let env = vec![
            ("TG_STORAGE", "s3".to_string()),
            ("TG_S3_ENDPOINT_URL", s3.clone()),
            ("TG_S3_BUCKET", bucket.clone()),
            ("TG_S3_FORCE_PATH_STYLE", "true".to_string()),
            ("TG_S3_PREFIX", prefix.clone()),
            ("TG_CATALOG", "dynamodb".to_string()),
            ("TG_DYNAMODB_ENDPOINT_URL", dynamodb.clone()),
            ("TG_DYNAMODB_TABLE_PREFIX", prefix.clone()),
        ];
        let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, out, err) = run_binary(&["migrate"], &borrowed);
        assert_eq!(code, Some(0), "migrate: {out}{err}");
        let config = Config {
            storage: StorageKind::S3,
            s3_bucket: Some(bucket),
            s3_prefix: prefix.clone(),
            s3_endpoint_url: Some(s3),
            s3_force_path_style: true,
            catalog: CatalogKind::Dynamodb,
            dynamodb_endpoint_url: Some(dynamodb),
            dynamodb_table_prefix: prefix,
            ..Config::default()
        };
        Some(Self { env, config })
    }

    /// The settings as borrowed pairs, for [`ChildGateway::start`].
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// Both ports, opened in this process.
    pub async fn ports(&self) -> (Arc<dyn ObjectPort>, Arc<dyn CatalogPort>) {
        transcript_gateway::server::open_backends(&self.config)
            .await
            .expect("connect to the emulators")
    }
}

/// The gateway binary cargo built for this test run.
pub fn gateway_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_transcript-gateway"))
}

/// Runs the gateway binary with `args`, none of this process's `TG_*`
/// settings and `env`; the exit code, stdout and stderr.
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(gateway_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("TG_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TG_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the gateway binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The real binary running `serve` as a child process.
pub struct ChildGateway {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl ChildGateway {
    /// Starts `transcript-gateway serve` with `env` on a free port and waits
    /// until `/healthz` answers (at most 30 s). Without `TG_AUTH_SECRET` in
    /// `env` it runs open (`--insecure-no-auth`, on loopback).
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let keyed = env.iter().any(|(k, _)| *k == "TG_AUTH_SECRET");
        let args: &[&str] = if keyed { &[] } else { &["--insecure-no-auth"] };
        Self::start_with(data_dir, env, args).await
    }

    /// [`ChildGateway::start`] with extra `serve` flags and nothing implied.
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let port = free_port();
        let log = data_dir.with_extension(format!("{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(gateway_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("TG_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn gateway");
        let gw = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        gw.wait_healthy().await;
        gw
    }

    async fn wait_healthy(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(format!("{}/healthz", self.base_url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("gateway did not become healthy in 30 s; log:\n{log}");
    }

    /// Waits (at most `limit`) for the process to exit by itself.
    pub fn wait_exit(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`, ...) without waiting.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most 30 s) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("gateway did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one HTTP/1.1 request over a fresh connection, byte for byte as given,
/// and returns the status, the lower-cased headers and the body.
pub async fn raw_request(
    base_url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: impl AsRef<[u8]>,
) -> (u16, std::collections::HashMap<String, String>, Vec<u8>) {
    let body = body.as_ref();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: std::collections::HashMap<_, _> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.get("transfer-encoding").map(|v| v.as_str()) == Some("chunked") {
        body = dechunk(&body);
    }
    (status, headers, body)
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..pos]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[pos + 2..pos + 2 + size]);
        data = &data[pos + 2 + size + 2..];
    }
    out
}

/// Entries as the raw JSON the engine takes.
pub fn raw_entries(batch: &[Value]) -> Vec<Box<serde_json::value::RawValue>> {
    batch
        .iter()
        .map(|v| serde_json::value::RawValue::from_string(v.to_string()).expect("raw"))
        .collect()
}

/// Appends a batch straight to an engine.
pub async fn engine_append(
    engine: &Engine,
    key: &transcript_gateway::domain::SessionKey,
    batch: &[Value],
) -> Result<transcript_gateway::domain::AppendReceipt, transcript_gateway::Error> {
    engine
        .append(transcript_gateway::engine::AppendRequest {
            key: key.clone(),
            entries: raw_entries(batch),
            idempotency_key: None,
            summary: None,
            writer_epoch: None,
        })
        .await
}

/// Loads a whole transcript straight from an engine: `Ok(None)` when it does
/// not exist, and any error the stream ends with.
pub async fn engine_load(
    engine: &Engine,
    key: &transcript_gateway::domain::SessionKey,
) -> Result<Option<Vec<Value>>, transcript_gateway::Error> {
    use futures::StreamExt;
    let Some(mut loaded) = engine
        .load(key, transcript_gateway::domain::Seq::ZERO)
        .await?
    else {
        return Ok(None);
    };
    let mut chunks = Vec::new();
    while let Some(chunk) = loaded.stream.next().await {
        chunks.push(chunk?);
    }
    Ok(Some(jsonl_lines(&chunks)))
}

/// A fresh main key.
pub fn fresh_key() -> transcript_gateway::domain::SessionKey {
    use transcript_gateway::domain::{ProjectKey, SessionId, SessionKey, SessionRef, TaskId};
    SessionKey::main(SessionRef {
        task_id: TaskId::new(fresh_id("task")).expect("task"),
        project_key: ProjectKey::new(PROJECT).expect("project"),
        session_id: SessionId::new(fresh_id("sess")).expect("session"),
    })
}

/// The storage every engine-level test runs on: embedded always (in a
/// directory the caller keeps), S3 + DynamoDB when the emulators run.
pub async fn test_stores(
    test: &str,
    dir: &Path,
) -> Vec<(&'static str, Arc<dyn ObjectPort>, Arc<dyn CatalogPort>)> {
    let (objects, catalog) = embedded_ports(dir);
    let mut out = vec![("embedded", objects, catalog)];
    if let Some(aws) = AwsBackends::start(test) {
        let (objects, catalog) = aws.ports().await;
        out.push(("s3+dynamodb", objects, catalog));
    }
    out
}

/// Several engines (as separate gateway instances would) appending to one
/// key concurrently produce every batch exactly once, in one gap-free order.
pub async fn concurrent_engines_append_gap_free(
    objects: Arc<dyn ObjectPort>,
    catalog: Arc<dyn CatalogPort>,
    task: &str,
    engines: usize,
    appends_each: usize,
) {
    let k = SessionKey::main(SessionRef {
        task_id: TaskId::new(task).expect("task"),
        project_key: ProjectKey::new("-workspace-race").expect("project"),
        session_id: SessionId::new("race").expect("session"),
    });
    let tasks: Vec<_> = (0..engines)
        .map(|e| {
            let engine = Engine::new(objects.clone(), catalog.clone(), EngineConfig::default());
            let k = k.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..appends_each {
                    let entries = vec![
                        serde_json::value::RawValue::from_string(format!(
                            "{{\"e\":{e},\"i\":{i},\"p\":0}}"
                        ))
                        .expect("json"),
                        serde_json::value::RawValue::from_string(format!(
                            "{{\"e\":{e},\"i\":{i},\"p\":1}}"
                        ))
                        .expect("json"),
                    ];
                    let receipt = engine
                        .append(AppendRequest {
                            key: k.clone(),
                            entries,
                            idempotency_key: None,
                            summary: None,
                            writer_epoch: None,
                        })
                        .await
                        .expect("append");
                    seqs.push(receipt.seq.0);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("join"));
    }
    all.sort_unstable();
    let total = (engines * appends_each) as u64;
    assert_eq!(
        all,
        (1..=total).collect::<Vec<_>>(),
        "sequence numbers must be unique and gap-free"
    );
    let engine = Engine::new(objects, catalog, EngineConfig::default());
    let lines = engine_load(&engine, &k)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(lines.len() as u64, total * 2, "every entry exactly once");
    let mut batches = std::collections::HashSet::new();
    for pair in lines.chunks(2) {
        assert_eq!(pair[0]["p"], 0);
        assert_eq!(pair[1]["p"], 1, "a batch must stay contiguous");
        assert_eq!(
            (&pair[0]["e"], &pair[0]["i"]),
            (&pair[1]["e"], &pair[1]["i"])
        );
        assert!(
            batches.insert((pair[0]["e"].to_string(), pair[0]["i"].to_string())),
            "duplicate batch"
        );
    }
}

/// A private SeaweedFS started with `scripts/emulators.py`, stopped on drop.
pub struct PrivateEmulator {
    python: String,
    script: String,
    state_dir: PathBuf,
    /// The endpoint URL (S3, or DynamoDB for [`PrivateEmulator::start_dynamodb`]).
    pub endpoint: String,
    /// The S3 bucket (empty for DynamoDB).
    pub bucket: String,
    _dir: tempfile::TempDir,
}

impl PrivateEmulator {
    /// Starts a SeaweedFS of its own, or says why not and returns `None`.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_components(test, &["--s3"])
    }

    /// Starts a moto (DynamoDB) of its own, or says why not.
    pub fn start_dynamodb(test: &str) -> Option<Self> {
        Self::start_components(test, &["--dynamodb"])
    }

    fn start_components(test: &str, components: &[&str]) -> Option<Self> {
        let python = emulator_env("TG_TEST_EMULATORS_PYTHON", test)?;
        let script = emulator_env("TG_TEST_EMULATORS_SCRIPT", test)?;
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("emulators");
        let mut emu = Self {
            python,
            script,
            state_dir,
            endpoint: String::new(),
            bucket: String::new(),
            _dir: dir,
        };
        emu.run("start", components);
        let env: Value = serde_json::from_slice(
            &std::fs::read(emu.state_dir.join("env.json")).expect("env.json"),
        )
        .expect("env.json is JSON");
        let var = |name: &str| env[name].as_str().unwrap_or_default().to_string();
        emu.endpoint = match components {
            ["--dynamodb"] => var("TG_TEST_DYNAMODB_ENDPOINT"),
            _ => var("TG_TEST_S3_ENDPOINT"),
        };
        emu.bucket = var("TG_TEST_S3_BUCKET");
        Some(emu)
    }

    /// Runs an `emulators.py` command on it (`stop-s3`, `start-s3`, …).
    pub fn run(&self, command: &str, extra: &[&str]) {
        let started = Instant::now();
        let status = Command::new(&self.python)
            .arg(&self.script)
            .arg(command)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run scripts/emulators.py");
        assert!(status.success(), "emulators.py {command} failed: {status}");
        eprintln!("emulators.py {command}: {:?}", started.elapsed());
    }
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        let _ = Command::new(&self.python)
            .arg(&self.script)
            .arg("stop")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdout(std::process::Stdio::null())
            .status();
    }
}
