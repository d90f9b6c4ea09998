//! Gateway processes: the release binary started on a free 127.0.0.1 port with
//! its own data directory and `TG_LOG=warn`, stopped (or killed) by pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{err, Env, Res};

/// Where a gateway keeps parts (the catalog is always embedded here).
#[derive(Clone, Debug)]
pub enum Storage {
    /// Files under the data directory.
    Embedded,
    /// The emulator's bucket under this key prefix.
    S3 {
        /// `TG_S3_PREFIX`.
        prefix: String,
    },
}

/// How to start one gateway.
#[derive(Clone, Debug)]
pub struct Spec {
    /// A short name for logs.
    pub name: String,
    /// Object storage.
    pub storage: Storage,
    /// `TG_DATA_DIR` (embedded objects and the catalog).
    pub data_dir: PathBuf,
    /// Extra `TG_*` settings, e.g. the compaction threshold.
    pub env: Vec<(String, String)>,
    /// Another gateway binary than the run's.
    pub bin: Option<PathBuf>,
}

impl Spec {
    /// A spec with no extra settings.
    pub fn new(name: &str, storage: Storage, data_dir: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            storage,
            data_dir,
            env: Vec::new(),
            bin: None,
        }
    }

    /// Runs `bin` instead of the run's gateway binary.
    pub fn with_bin(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    /// Adds one `TG_*` setting.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running gateway process.
pub struct Gateway {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A keep-alive client for this process only (a restarted gateway may get
    /// the same port, and pooled connections to a killed one are dead).
    pub http: reqwest::Client,
    /// The process id (for /proc/<pid>/status).
    pub pid: u32,
    /// Its stderr.
    pub log: PathBuf,
}

impl Gateway {
    /// Starts `serve` and waits until `/readyz` answers 200 (at most 60 s).
    pub async fn start(env: &Env, spec: &Spec) -> Res<Self> {
        std::fs::create_dir_all(&spec.data_dir)?;
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start(env, spec).await {
                Ok(gw) => return Ok(gw),
                // A free port can be taken between probe and bind; try another.
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(err(format!(
            "gateway {} did not start: {last_error}",
            spec.name
        )))
    }

    async fn try_start(env: &Env, spec: &Spec) -> Res<Self> {
        let port = free_port()?;
        let log = env
            .work_dir
            .join(&env.run_id)
            .join(format!("gateway-{}-{port}.log", spec.name));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(spec.bin.as_ref().unwrap_or(&env.gateway_bin));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        // Nothing of the caller's TG_* settings leaks in: each gateway gets
        // exactly the configuration the scenario names.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TG_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("TG_LOG", "warn")
            .env("TG_AUTH_SECRET", crate::BENCH_AUTH_SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Storage::S3 { prefix } = &spec.storage {
            cmd.env("TG_STORAGE", "s3")
                .env("TG_S3_BUCKET", &env.s3_bucket)
                .env("TG_S3_ENDPOINT_URL", &env.s3_endpoint)
                .env("TG_S3_FORCE_PATH_STYLE", "true")
                .env("TG_S3_PREFIX", prefix);
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", env.gateway_bin.display())))?;
        let mut gw = Self {
            pid: child.id(),
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            http: crate::http_client()?,
            log,
        };
        gw.wait_ready().await?;
        Ok(gw)
    }

    async fn wait_ready(&mut self) -> Res<()> {
        let http = self.http.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(err(format!(
                        "gateway exited with {status} before it was ready; log {}:\n{}",
                        self.log.display(),
                        tail(&self.log)
                    )));
                }
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(err(format!(
            "gateway not ready within 60 s; log {}:\n{}",
            self.log.display(),
            tail(&self.log)
        )))
    }

    /// A field of `/proc/<pid>/status` in KiB (e.g. `VmHWM`, `VmRSS`).
    pub fn status_kib(&self, field: &str) -> Res<u64> {
        crate::procfs::status_kib(self.pid, field)
    }

    /// User plus system CPU seconds used so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        crate::procfs::cpu_secs(self.pid)
    }

    /// `POST /admin/v1/tasks/{task}/compact`: the status and the JSON answer.
    pub async fn compact(&self, task: &str) -> Res<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/admin/v1/tasks/{task}/compact", self.base))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&body)
                .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned())),
        ))
    }

    /// The gateway's own counters and histogram sums and counts from
    /// `/metrics` (`tg_*` samples, buckets left out).
    pub async fn metrics(&self) -> Res<std::collections::BTreeMap<String, f64>> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("tg_") && !l.contains("_bucket{"))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect())
    }

    /// SIGTERM, then waits (at most 30 s, then SIGKILL).
    pub fn stop(mut self) -> Res<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    eprintln!(
                        "tg-bench: gateway {} exited with {status}; log {}",
                        self.pid,
                        self.log.display()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!(
                    "gateway {} did not exit within 30 s of SIGTERM; killed",
                    self.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a crash), then reaps the process.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound, then released).
fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
