//! Running the gateway: build the state from the config, serve on a given
//! listener until a given shutdown future resolves, then drain.
//!
//! On shutdown the gateway reports not-ready, stops accepting, lets every
//! in-flight request finish (bounded by the drain timeout) and returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::api::{self, AppState, Readiness};
use crate::auth::{Guard, Verifier};
use crate::backend::embedded::{FsObjects, RedbCatalog};
use crate::backend::{self, CatalogPort, ObjectPort, PortError};
use crate::config::{CatalogKind, Config, StorageKind};
use crate::engine::{Engine, EngineConfig};

/// A failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration does not allow serving.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A token key cannot be used.
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::KeyError),
    /// A backend could not be opened.
    #[error("cannot open the storage backends")]
    Open(#[source] PortError),
    /// A backend did not pass its start-up check.
    #[error("backend check failed")]
    Check(#[source] crate::error::Error),
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1} (is another process using that address? set TG_LISTEN or --listen)")]
    Listen(std::net::SocketAddr, #[source] std::io::Error),
    /// Telemetry could not be set up.
    #[error("telemetry")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    /// The listener failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured backends and builds the engine over them.
pub async fn build_engine(config: &Config) -> Result<Engine, ServeError> {
    let (objects, catalog) = open_backends(config).await.map_err(ServeError::Open)?;
    let engine = Engine::new(
        objects,
        catalog,
        EngineConfig {
            load_concurrency: config.s3_load_concurrency,
            compaction_threshold: config.compaction_threshold,
            compaction_grace: Duration::from_secs(config.compaction_grace_secs),
            compaction_concurrency: config.compaction_concurrency,
            memory_budget: config.memory_budget_bytes,
            ..EngineConfig::default()
        },
    );
    engine.check().await.map_err(ServeError::Check)?;
    Ok(engine)
}

/// Serves `engine` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Checked against the address actually bound, whatever the config says.
    config.check_serving_auth(listener.local_addr()?)?;
    let verifier = Verifier::from_settings(&config.auth())?;
    if verifier.is_none() {
        tracing::warn!("serving WITHOUT authentication (--insecure-no-auth, loopback only)");
    }
    let guard = Guard {
        verifier: verifier.map(Arc::new),
        metrics_require_auth: config.metrics_require_auth,
    };
    let readiness = Readiness::new();
    let appends = tokio_util::task::TaskTracker::new();
    let background = engine.clone();
    let state = AppState {
        engine,
        readiness: readiness.clone(),
        appends: appends.clone(),
    };
    let limits = config.http_limits(guard);
    let router = api::router(state, &limits);
    let draining = Arc::new(tokio::sync::Notify::new());
    let notify = draining.clone();
    let signal = async move {
        shutdown.await;
        readiness.set_draining();
        tracing::info!("shutdown requested; draining in-flight requests");
        notify.notify_one();
    };
    // Answers go out as written: no Nagle delay on a streamed load's last
    // chunk while the client holds back its ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(signal);
    let drain_limit = Duration::from_secs(config.drain_timeout_secs);
    let deadline = async {
        draining.notified().await;
        tokio::time::sleep(drain_limit).await
    };
    tokio::select! {
        result = server => result?,
        _ = deadline => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
    // Appends whose clients went away still finish: their parts and records
    // land together, so a retry with the same idempotency key finds them.
    appends.close();
    if tokio::time::timeout(drain_limit, appends.wait())
        .await
        .is_err()
    {
        tracing::warn!(left = appends.len(), "appends still running at exit");
    }
    // Compactions, deletions and kept failures: waiting ones stop (their
    // work is recorded for the next compaction), running ones finish.
    let left = background.shutdown(drain_limit).await;
    if left > 0 {
        tracing::warn!(left, "background work still running at exit");
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Opens the configured object store and catalog.
pub async fn open_backends(
    config: &Config,
) -> Result<(Arc<dyn ObjectPort>, Arc<dyn CatalogPort>), PortError> {
    // Opening the embedded backend touches the disk (and may wait for a
    // catalog file another process is releasing): not on the runtime's threads.
    let objects: Arc<dyn ObjectPort> = match config.storage {
        StorageKind::Embedded => {
            let dir = config.data_dir.clone();
            Arc::new(off_runtime(move || FsObjects::open(&dir)).await?)
        }
        StorageKind::S3 => backend::s3::connect(&config.s3()).await?,
    };
    let catalog: Arc<dyn CatalogPort> = match config.catalog {
        CatalogKind::Embedded => {
            let dir = config.data_dir.clone();
            Arc::new(off_runtime(move || RedbCatalog::open(&dir)).await?)
        }
        CatalogKind::Dynamodb => backend::dynamo::connect(&config.dynamodb()).await?,
    };
    Ok((objects, catalog))
}

/// Runs a blocking `open` on a thread of its own.
async fn off_runtime<T: Send + 'static>(
    open: impl FnOnce() -> Result<T, PortError> + Send + 'static,
) -> Result<T, PortError> {
    tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| PortError::other("opening the embedded backend").caused_by(e))?
}
