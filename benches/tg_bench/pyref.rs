//! The Python reference adapter (`benches/reference_load.py`) as a worker
//! process: one JSON request per line in, one answer per line out.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{err, Env, Res};

/// The running worker; killed on drop.
pub struct PyRef {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// `python` and `boto3` versions, from the first ping.
    pub versions: Value,
}

impl PyRef {
    /// Starts the worker with the venv's python and checks it answers.
    pub async fn start(env: &Env) -> Res<Self> {
        let mut child = Command::new(&env.python)
            .arg(&env.reference_script)
            .arg("--endpoint")
            .arg(&env.s3_endpoint)
            .arg("--bucket")
            .arg(&env.s3_bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", env.python.display())))?;
        let stdin = child.stdin.take().ok_or_else(|| err("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| err("no stdout"))?).lines();
        let mut worker = Self {
            child,
            stdin,
            stdout,
            versions: Value::Null,
        };
        worker.versions = worker.call(json!({"op": "ping"}), 60).await?;
        Ok(worker)
    }

    /// Sends one request and waits (at most `timeout_secs`) for its answer.
    pub async fn call(&mut self, request: Value, timeout_secs: u64) -> Res<Value> {
        let mut line = request.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        let answer =
            tokio::time::timeout(Duration::from_secs(timeout_secs), self.stdout.next_line())
                .await
                .map_err(|_| {
                    err(format!(
                        "reference worker gave no answer in {timeout_secs} s"
                    ))
                })??
                .ok_or_else(|| err("reference worker exited"))?;
        let value: Value = serde_json::from_str(&answer)
            .map_err(|e| err(format!("reference worker answered {answer:?}: {e}")))?;
        if value["ok"] != json!(true) {
            return Err(err(format!("reference worker failed: {}", value["error"])));
        }
        Ok(value)
    }

    /// Asks the worker to exit and reaps it.
    pub async fn stop(mut self) {
        let _ = self.stdin.write_all(b"{\"op\":\"quit\"}\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
