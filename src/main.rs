//! The `transcript-gateway` command: parse the CLI, load the config, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use transcript_gateway::config::{parse_listen, Config, Overrides};
use transcript_gateway::{server, telemetry, token};

/// Durable, portable Claude Agent SDK session transcripts over HTTP.
///
/// Every setting can also be given as a `TG_*` environment variable (for
/// example TG_LISTEN, TG_DATA_DIR, TG_STORAGE, TG_S3_BUCKET) or in the TOML
/// file; precedence is defaults < file < environment < flags.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// TOML configuration file (also TG_CONFIG).
    #[arg(long, global = true, env = "TG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8787] (also TG_LISTEN).
        #[arg(long, value_parser = parse_listen)]
        listen: Option<std::net::SocketAddr>,
        /// Directory of the embedded backend [default: ./data] (also TG_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve without authentication; refused unless listening on a
        /// loopback address (also TG_INSECURE_NO_AUTH=true).
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Bearer tokens for workers and operators.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create or update the DynamoDB tables (idempotent; reports what it did).
    Migrate,
    /// Compact every transcript of a task now, whatever the threshold (asks
    /// the running gateway, or works on the backends when none answers).
    Compact {
        /// The task to compact.
        #[arg(long)]
        task: String,
        /// An admin token for the running gateway (by default one is minted
        /// with TG_AUTH_SECRET).
        #[arg(long)]
        token: Option<String>,
        /// Directory of the embedded backend [default: ./data] (also TG_DATA_DIR).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Ask the gateway at TG_LISTEN for GET /healthz (0.0.0.0 and :: mean
    /// this host); exit 0 on 200 within 2 s, else 1 with the reason. For
    /// container health checks.
    Healthcheck {
        /// Address the gateway listens on [default: 127.0.0.1:8787] (also TG_LISTEN).
        #[arg(long, value_parser = parse_listen)]
        listen: Option<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a signed token on stdout, signed with TG_AUTH_SECRET (HS256) or
    /// with --private-key-file (EdDSA or RS256).
    Mint(token::MintArgs),
}

/// mimalloc: per-thread free lists cut the allocator's share of an append
/// (glibc's spent it in arena locks and in mapping and unmapping buffers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Commit memory as it is used and return freed pages within 10 ms (v3
/// waits a second), so a load's buffers do not stay resident (the memory
/// benchmark holds the gateway to a budget). Indexes of `mi_option_e` in
/// mimalloc v3's `mimalloc.h`. Set from the executable's first constructor,
/// before the allocator initializes (`MIMALLOC_*` variables still override
/// them).
#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    for (option, var, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 10),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: setting an option is not thread-safe; constructors run
            // before any other thread exists.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

fn main() -> ExitCode {
    // Crash points for tests, armed by FAILPOINTS (only with the
    // `failpoints` feature; without it this does nothing).
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let overrides = match &cli.command {
        Command::Serve {
            listen,
            data_dir,
            insecure_no_auth,
        } => Overrides {
            listen: *listen,
            data_dir: data_dir.clone(),
            insecure_no_auth: insecure_no_auth.then_some(true),
        },
        Command::Compact { data_dir, .. } => Overrides {
            data_dir: data_dir.clone(),
            ..Overrides::default()
        },
        Command::Healthcheck { listen } => Overrides {
            listen: *listen,
            ..Overrides::default()
        },
        Command::Migrate | Command::Openapi | Command::Token { .. } => Overrides::default(),
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("transcript-gateway: {e}");
            // A health check answers 0 or 1, whatever went wrong.
            return match cli.command {
                Command::Healthcheck { .. } => ExitCode::FAILURE,
                _ => ExitCode::from(2),
            };
        }
    };
    match cli.command {
        Command::Healthcheck { .. } => healthcheck(config.listen),
        Command::Openapi => {
            print!("{}", transcript_gateway::api::openapi::openapi_json());
            ExitCode::SUCCESS
        }
        Command::Token {
            command: TokenCommand::Mint(args),
        } => match token::mint(&config, &args) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "transcript-gateway: {}",
                    transcript_gateway::error::chain(&e)
                );
                ExitCode::from(2)
            }
        },
        Command::Migrate => run(async move {
            let report = transcript_gateway::migrate::run(&config).await;
            report.map(|r| print!("{r}"))
        }),
        Command::Compact { task, token, .. } => run(async move {
            let outcome = transcript_gateway::compact::run(&config, &task, token.as_deref()).await;
            outcome.map(|o| print!("{o}"))
        }),
        Command::Serve { .. } => run(async move {
            config.check_serving_auth(config.listen)?;
            // Building an exporter may block: off the runtime's threads.
            let settings = config.clone();
            let telemetry = tokio::task::spawn_blocking(move || telemetry::init(&settings))
                .await
                .map_err(std::io::Error::other)??;
            let served = async {
                let engine = server::build_engine(&config).await?;
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|e| server::ServeError::Listen(config.listen, e))?;
                tracing::info!(listen = %listener.local_addr()?, storage = ?config.storage, catalog = ?config.catalog, traces = telemetry.exports_traces(), metrics = telemetry.exports_metrics(), "transcript-gateway serving");
                server::serve(listener, engine, &config, server::shutdown_signal()).await
            }
            .await;
            // Pending spans and one last metric export, within 10 s.
            let flushed = tokio::task::spawn_blocking(move || {
                telemetry.shutdown(std::time::Duration::from_secs(10))
            });
            let _ = flushed.await;
            served
        }),
    }
}

/// `GET /healthz` on `listen` (an unspecified address means loopback) over
/// plain HTTP/1.1: success on a 200 within 2 s, else one line on stderr.
fn healthcheck(listen: std::net::SocketAddr) -> ExitCode {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = listen;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
        _ => {}
    }
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("cannot send to {addr}: {e}"))?;
        // The status line is all that matters; it comes first.
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("cannot read from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        let line = text.lines().next().unwrap_or_default();
        match line.split(' ').nth(1) {
            Some("200") => Ok(()),
            Some(status) if line.starts_with("HTTP/") => {
                Err(format!("http://{addr}/healthz answered {status}"))
            }
            _ => Err(format!("http://{addr}/healthz gave no HTTP answer")),
        }
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|rt| {
            rt.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(2), probe)
                    .await
                    .unwrap_or_else(|_| Err(format!("http://{addr}/healthz: no answer within 2 s")))
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("transcript-gateway healthcheck: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn run<E: std::error::Error>(fut: impl std::future::Future<Output = Result<(), E>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("transcript-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "transcript-gateway: {}",
                transcript_gateway::error::chain(&e)
            );
            ExitCode::FAILURE
        }
    }
}
