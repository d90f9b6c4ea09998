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

/// Why `compact` could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// The task id is not valid.
    #[error("task")]
    Task(#[from] crate::domain::Invalid),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
    /// The gateway's admin route could not be called, or answered nonsense.
    #[error("{url}")]
    Request {
        /// The admin route.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The gateway refused the compaction.
    #[error("{url} answered {status}: {body}{hint}")]
    Refused {
        /// The admin route.
        url: String,
        /// Its status.
        status: reqwest::StatusCode,
        /// Its body.
        body: serde_json::Value,
        /// What to do about it, if known.
        hint: &'static str,
    },
    /// No gateway answered and the data directory holds no catalog.
    #[error(
        "no gateway answered at {listen} and {dir} holds no catalog ({file}); run compact with \
         the gateway's TG_LISTEN, or with --data-dir naming its data directory"
    )]
    NoCatalog {
        /// The configured listen address.
        listen: std::net::SocketAddr,
        /// The data directory.
        dir: String,
        /// The catalog's file name.
        file: &'static str,
    },
    /// The backends could not be opened.
    #[error("opening the backends")]
    Open(#[source] server::ServeError),
    /// The compaction failed.
    #[error("compacting directly on the backends")]
    Compact(#[source] crate::error::Error),
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
) -> Result<CompactOutcome, CompactError> {
    let task = TaskId::new(task)?;
    let url = format!("http://{}/admin/v1/tasks/{task}/compact", config.listen);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.request_timeout_secs + 5))
        .build()
        .map_err(CompactError::Client)?;
    let mut request = client.post(&url);
    if let Some(token) = admin_token(config, &task, token) {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let body: serde_json::Value =
                resp.json().await.map_err(|source| CompactError::Request {
                    url: url.clone(),
                    source,
                })?;
            if !status.is_success() {
                let hint = match status {
                    reqwest::StatusCode::UNAUTHORIZED => {
                        "; the gateway needs an admin token (set TG_AUTH_SECRET as the gateway \
                         has it, or pass --token)"
                    }
                    _ => "",
                };
                return Err(CompactError::Refused {
                    url,
                    status,
                    body,
                    hint,
                });
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
        Err(source) => Err(CompactError::Request { url, source }),
    }
}

async fn direct(config: &Config, task: &TaskId) -> Result<CompactOutcome, CompactError> {
    // Opening the embedded catalog would create an empty one: refuse a
    // directory that holds none instead of reporting "compacted 0".
    if config.catalog == CatalogKind::Embedded {
        let catalog = config.data_dir.join(crate::backend::embedded::CATALOG_FILE);
        if !catalog.is_file() {
            return Err(CompactError::NoCatalog {
                listen: config.listen,
                dir: config.data_dir.display().to_string(),
                file: crate::backend::embedded::CATALOG_FILE,
            });
        }
    }
    let engine = server::build_engine(config)
        .await
        .map_err(CompactError::Open)?;
    let reports: Vec<CompactionReport> = engine
        .compact_task(task)
        .await
        .map_err(CompactError::Compact)?;
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
