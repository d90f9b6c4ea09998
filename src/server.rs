//! Running the gateway: build the state from the config, serve on a given
//! listener until a given shutdown future resolves, then drain.
//!
//! On shutdown (see [`serve`]) the gateway refuses new requests with 503
//! `draining` at once, reports not-ready, keeps the listener open for the
//! pre-stop wait, then closes it and lets every request already running
//! finish, then the appends whose clients left and the background work, all
//! within the drain timeout counted from the signal; past it, [`serve`]
//! returns [`ServeError::DrainTimeout`] naming what was left.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::api::drain::InFlight;
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
    /// Shutdown left work unfinished when the drain timeout ran out.
    #[error("{0}")]
    DrainTimeout(String),
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

/// How often catalog records that lag their parts are repaired.
const REPAIR_EVERY: Duration = Duration::from_secs(5);
/// How often the fleet's append counter is flushed to the catalog.
const COUNT_EVERY: Duration = Duration::from_secs(5);

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
    engine.start_repairs(REPAIR_EVERY);
    engine.start_counters(COUNT_EVERY);
    let readiness = Readiness::new();
    let appends = tokio_util::task::TaskTracker::new();
    let in_flight = InFlight::default();
    let background = engine.clone();
    let state = AppState {
        engine,
        readiness: readiness.clone(),
        appends: appends.clone(),
        in_flight: in_flight.clone(),
    };
    let limits = config.http_limits(guard);
    let router = api::router(state, &limits);
    let drain = Duration::from_secs(config.drain_timeout_secs);
    let prestop = Duration::from_secs(config.drain_prestop_secs);
    let (signalled, started) = tokio::sync::oneshot::channel::<tokio::time::Instant>();
    let signal = async move {
        shutdown.await;
        // From now on every new request is refused (503 `draining`), and
        // `/readyz` says so; the listener stays open for the pre-stop wait.
        readiness.set_draining();
        let _ = signalled.send(tokio::time::Instant::now());
        tracing::info!(
            prestop_secs = prestop.as_secs(),
            drain_timeout_secs = drain.as_secs(),
            "shutdown requested; refusing new requests, finishing the ones in flight"
        );
        tokio::time::sleep(prestop).await;
    };
    // Answers go out as written: no Nagle delay on a streamed load's last
    // chunk while the client holds back its ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    let server = axum::serve(listener, router).with_graceful_shutdown(signal);
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    let mut started = started;
    // Serve until the signal; then until the connections are done or the
    // drain timeout, counted from the signal, runs out.
    // The server may finish in the same poll as the signal (no connections
    // open, no pre-stop wait): a finished server is never polled again.
    let (deadline, served) = tokio::select! {
        result = &mut server => {
            result?;
            // The server is done (the shutdown future ended, perhaps
            // together with its signal time): drain the rest from now.
            (tokio::time::Instant::now() + drain, true)
        }
        at = &mut started => (at.unwrap_or_else(|_| tokio::time::Instant::now()) + drain, false),
    };
    let requests_done = served
        || tokio::select! {
            result = &mut server => {
                result?;
                true
            }
            _ = tokio::time::sleep_until(deadline) => false,
        };
    // Appends whose clients went away still finish: their parts and records
    // land together, so a retry with the same idempotency key finds them.
    appends.close();
    let appends_done = tokio::time::timeout_at(deadline, appends.wait())
        .await
        .is_ok();
    // Compactions stop between parts, deletions waiting for their grace
    // period stop at once (their work is recorded for the next compaction).
    let left = tokio::time::Instant::now();
    let background_left = background
        .shutdown(deadline.saturating_duration_since(left))
        .await;
    if requests_done && appends_done && background_left == 0 {
        tracing::info!("drained; server stopped");
        return Ok(());
    }
    let mut unfinished = Vec::new();
    if !requests_done {
        unfinished.push(format!(
            "{} request(s) still in flight: {}",
            in_flight.len(),
            in_flight.describe()
        ));
    }
    if !appends_done {
        unfinished.push(format!("{} append(s) still writing", appends.len()));
    }
    if background_left > 0 {
        unfinished.push(format!(
            "{background_left} background task(s) still running"
        ));
    }
    let report = format!(
        "the drain timeout ({} s) ran out with {}",
        drain.as_secs(),
        unfinished.join("; ")
    );
    tracing::error!(unfinished = %report, "drain timeout");
    Err(ServeError::DrainTimeout(report))
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT); a second one exits
/// the process at once with status 130, without draining further.
pub async fn shutdown_signal() {
    let mut signals = Signals::new();
    signals.next().await;
    tokio::spawn(async move {
        signals.next().await;
        eprintln!("transcript-gateway: a second signal: exiting now, without draining");
        std::process::exit(130);
    });
}

/// SIGTERM and SIGINT, listened to for the life of the process (so a signal
/// between two waits is not lost).
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGTERM or SIGINT.
    async fn next(&mut self) {
        #[cfg(unix)]
        {
            async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = recv(&mut self.term) => {},
                _ = recv(&mut self.int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
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
