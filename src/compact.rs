//! The `compact` command: compact every transcript of a task now. It asks
//! the gateway running with the same config (its admin endpoint), and works
//! directly on the backends when no gateway answers there.

use std::time::Duration;

use crate::auth::{Minter, Scope, Scopes, TaskGrant};
use crate::config::{CatalogKind, Config};
use crate::domain::TaskId;
use crate::engine::CompactionReport;
use crate::server;

/// Where the compaction ran and what it did.
#[derive(Debug)]
pub struct CompactOutcome {
    /// `gateway at http://...` or `directly on the backends`.
    pub via: String,
    /// One line per compacted transcript, as JSON.
    pub reports: Vec<serde_json::Value>,
}

impl std::fmt::Display for CompactOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "compacted {} transcript(s) via {}",
            self.reports.len(),
            self.via
        )?;
        for r in &self.reports {
            writeln!(f, "  {r}")?;
        }
        Ok(())
    }
}

/// The bearer token for the gateway's admin route: the one given, or one
/// minted with the configured secret for this task, or none (an open gateway).
fn admin_token(config: &Config, task: &TaskId, given: Option<&str>) -> Option<String> {
    if let Some(token) = given {
        return Some(token.to_string());
    }
    let minter = Minter::new(&config.auth(), None).ok()?;
    let scopes = Scopes::parse_strict(Scope::Admin.as_str()).ok()?;
    minter
        .mint(
            &TaskGrant::One(task.clone()),
            scopes,
            Duration::from_secs(300),
            "transcript-gateway-compact",
        )
        .ok()
}

/// Compacts every transcript of `task`; `token` is an admin token for the
/// gateway when the configuration has no secret to mint one.
pub async fn run(
    config: &Config,
    task: &str,
    token: Option<&str>,
) -> Result<CompactOutcome, String> {
    let task = TaskId::new(task).map_err(|e| e.to_string())?;
    let url = format!("http://{}/admin/v1/tasks/{task}/compact", config.listen);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.request_timeout_secs + 5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.post(&url);
    if let Some(token) = admin_token(config, &task, token) {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.map_err(|e| format!("{url}: {e}"))?;
            if status == reqwest::StatusCode::UNAUTHORIZED {
                return Err(format!(
                    "{url} answered {status}: {body}; the gateway needs an admin token \
                     (set TG_AUTH_SECRET as the gateway has it, or pass --token)"
                ));
            }
            if !status.is_success() {
                return Err(format!("{url} answered {status}: {body}"));
            }
            let reports = body["data"]["compacted"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok(CompactOutcome {
                via: format!("the gateway at {}", config.listen),
                reports,
            })
        }
        Err(e) if e.is_connect() => direct(config, &task).await,
        Err(e) => Err(format!("{url}: {e}")),
    }
}

async fn direct(config: &Config, task: &TaskId) -> Result<CompactOutcome, String> {
    // Opening the embedded catalog would create an empty one: refuse a
    // directory that holds none instead of reporting "compacted 0".
    if config.catalog == CatalogKind::Embedded {
        let catalog = config.data_dir.join(crate::backend::embedded::CATALOG_FILE);
        if !catalog.is_file() {
            return Err(format!(
                "no gateway answered at {} and {} holds no catalog ({}); run compact with the \
                 gateway's TG_LISTEN, or with --data-dir naming its data directory",
                config.listen,
                config.data_dir.display(),
                crate::backend::embedded::CATALOG_FILE
            ));
        }
    }
    let engine = server::build_engine(config)
        .await
        .map_err(|e| e.to_string())?;
    let reports: Vec<CompactionReport> =
        engine.compact_task(task).await.map_err(|e| e.to_string())?;
    Ok(CompactOutcome {
        via: "the backends directly (no gateway answered at the configured listen address; \
              covered parts are deleted by a later compaction once the grace period has passed)"
            .into(),
        reports: reports
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect(),
    })
}
