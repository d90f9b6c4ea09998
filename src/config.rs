//! The one typed configuration: defaults < TOML file < `TG_*` environment
//! variables < command-line flags, validated once at startup.
//!
//! Keys are flat and match the variable names without `TG_` in lower case:
//! `TG_S3_BUCKET` is `s3_bucket` in the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

use crate::api::HttpLimits;
use crate::auth::{AuthSettings, Guard, Secret};
use crate::backend::aws::AwsSettings;
pub use crate::backend::aws::RetryMode;
use crate::backend::dynamo::DynamoSettings;
use crate::backend::s3::S3Settings;

/// Where parts and snapshots live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// Files under `data_dir` (the default; no cloud).
    Embedded,
    /// An S3 bucket (or S3 Express One Zone directory bucket).
    S3,
}

/// Where the catalog lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// An embedded database under `data_dir` (the default).
    Embedded,
    /// DynamoDB tables named with `dynamodb_table_prefix`.
    Dynamodb,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// Every setting of the gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (`TG_LISTEN`); `localhost:PORT` means 127.0.0.1.
    #[serde(deserialize_with = "deserialize_listen")]
    pub listen: SocketAddr,
    /// HS256 secret for bearer tokens, at least 32 bytes (`TG_AUTH_SECRET`).
    pub auth_secret: Option<Secret>,
    /// PEM file with an Ed25519 or RSA public key for bearer tokens
    /// (`TG_AUTH_PUBLIC_KEY_FILE`); the orchestrator keeps the private key.
    pub auth_public_key_file: Option<PathBuf>,
    /// The `iss` every token must carry, when set (`TG_AUTH_ISSUER`).
    pub auth_issuer: Option<String>,
    /// The `aud` every token must carry, when set (`TG_AUTH_AUDIENCE`).
    pub auth_audience: Option<String>,
    /// Serve without authentication (`TG_INSECURE_NO_AUTH`, `--insecure-no-auth`):
    /// accepted only on a loopback address, for local development.
    pub insecure_no_auth: bool,
    /// Whether `/metrics` needs an `admin` token (`TG_METRICS_REQUIRE_AUTH`).
    pub metrics_require_auth: bool,
    /// Directory of the embedded backend (`TG_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Largest accepted request body in bytes (`TG_BODY_LIMIT_BYTES`).
    pub body_limit_bytes: usize,
    /// Time limit for one request until its response starts (`TG_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Largest total size of a request's headers in bytes (`TG_HEADER_LIMIT_BYTES`).
    pub header_limit_bytes: usize,
    /// Most requests served at once; more are refused with 503 (`TG_MAX_IN_FLIGHT`).
    pub max_in_flight: usize,
    /// Most live readers (long-poll and SSE requests of the stream route)
    /// served at once by this instance; more are refused with 503
    /// `overloaded` and `Retry-After` (`TG_MAX_LIVE_READERS`).
    pub max_live_readers: usize,
    /// How long a long-poll read of a stream waits for new entries before
    /// answering 204 (`TG_LIVE_LONG_POLL_SECS`); never longer than a second
    /// less than `request_timeout_secs`, so the request timeout never cuts it.
    pub live_long_poll_secs: u64,
    /// How long an SSE read of a stream stays open before the gateway
    /// closes it and the client reconnects from its last offset
    /// (`TG_LIVE_SSE_SECS`).
    pub live_sse_secs: u64,
    /// Longest wait, from SIGTERM, for in-flight requests, appends and
    /// background work before exiting 1 (`TG_DRAIN_TIMEOUT_SECS`); below
    /// the usual 30 s container grace period.
    pub drain_timeout_secs: u64,
    /// After SIGTERM, how long the listener stays open answering 503
    /// `draining` before it closes, for load balancers that need to see
    /// readiness fall (`TG_DRAIN_PRESTOP_SECS`); part of the drain timeout.
    pub drain_prestop_secs: u64,
    /// `json` or `text` (`TG_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `transcript_gateway=debug` (`TG_LOG`).
    pub log: String,
    /// `embedded` or `s3` (`TG_STORAGE`).
    pub storage: StorageKind,
    /// The bucket when `storage = s3` (`TG_S3_BUCKET`).
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket (`TG_S3_PREFIX`).
    pub s3_prefix: String,
    /// A custom S3 endpoint, for emulators and S3-compatible stores (`TG_S3_ENDPOINT_URL`).
    pub s3_endpoint_url: Option<String>,
    /// Path-style addressing, needed by most emulators (`TG_S3_FORCE_PATH_STYLE`).
    pub s3_force_path_style: bool,
    /// Parallel GETs per load (`TG_S3_LOAD_CONCURRENCY`).
    pub s3_load_concurrency: usize,
    /// `embedded` or `dynamodb` (`TG_CATALOG`).
    pub catalog: CatalogKind,
    /// Table name prefix (`TG_DYNAMODB_TABLE_PREFIX`).
    pub dynamodb_table_prefix: String,
    /// A custom DynamoDB endpoint, for emulators (`TG_DYNAMODB_ENDPOINT_URL`).
    pub dynamodb_endpoint_url: Option<String>,
    /// `standard` or `adaptive` (`TG_AWS_RETRY_MODE`).
    pub aws_retry_mode: RetryMode,
    /// Attempts per AWS call, first included (`TG_AWS_MAX_ATTEMPTS`).
    pub aws_max_attempts: u32,
    /// Time limit for one AWS call across its attempts, ms (`TG_AWS_OPERATION_TIMEOUT_MS`).
    pub aws_operation_timeout_ms: u64,
    /// Time limit for one attempt of an AWS call, ms (`TG_AWS_ATTEMPT_TIMEOUT_MS`).
    pub aws_attempt_timeout_ms: u64,
    /// Compact a key once this many parts follow its last snapshot; 0 disables (`TG_COMPACTION_THRESHOLD`).
    pub compaction_threshold: u64,
    /// Seconds before compacted parts are deleted (`TG_COMPACTION_GRACE_SECS`).
    pub compaction_grace_secs: u64,
    /// Most compactions running at once (`TG_COMPACTION_CONCURRENCY`).
    pub compaction_concurrency: usize,
    /// Bytes of transcripts held in memory at once by loads and compactions
    /// together (`TG_MEMORY_BUDGET_BYTES`).
    pub memory_budget_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            auth_secret: None,
            auth_public_key_file: None,
            auth_issuer: None,
            auth_audience: None,
            insecure_no_auth: false,
            metrics_require_auth: false,
            data_dir: PathBuf::from("./data"),
            body_limit_bytes: 32 * 1024 * 1024,
            request_timeout_secs: 60,
            header_limit_bytes: 16 * 1024,
            max_in_flight: 1024,
            max_live_readers: 256,
            live_long_poll_secs: 20,
            live_sse_secs: 60,
            drain_timeout_secs: 25,
            drain_prestop_secs: 0,
            log_format: LogFormat::Json,
            log: "info".into(),
            storage: StorageKind::Embedded,
            s3_bucket: None,
            s3_prefix: "transcripts".into(),
            s3_endpoint_url: None,
            s3_force_path_style: false,
            s3_load_concurrency: 16,
            catalog: CatalogKind::Embedded,
            dynamodb_table_prefix: "transcript-gateway".into(),
            dynamodb_endpoint_url: None,
            aws_retry_mode: RetryMode::Standard,
            aws_max_attempts: 3,
            aws_operation_timeout_ms: 10_000,
            aws_attempt_timeout_ms: 4_000,
            compaction_threshold: 256,
            compaction_grace_secs: 300,
            compaction_concurrency: 2,
            memory_budget_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Settings given as command-line flags; `None` leaves the lower layers be.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--insecure-no-auth` (only ever turns it on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_no_auth: Option<bool>,
}

/// Parses a listen address; `localhost:PORT` is 127.0.0.1:PORT.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("invalid port in listen address {text:?}"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("invalid listen address {text:?} (expected HOST:PORT)"))
}

fn deserialize_listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    parse_listen(&text).map_err(serde::de::Error::custom)
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

/// `TG_` variables that are not settings: `TG_CONFIG` names the file, and
/// `TG_TEST_*` belong to the test and benchmark tooling.
fn is_reserved_variable(name: &str) -> bool {
    name == "TG_CONFIG" || name.starts_with("TG_TEST_")
}

impl Config {
    /// The setting names: the file keys, and the variables without `TG_`.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Refuses `TG_*` variables (from `vars`) that name no setting, so a
    /// misspelt one cannot leave a default in force unnoticed.
    pub fn check_variables(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let keys = Self::keys();
        let mut unknown: Vec<String> = vars
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.to_ascii_uppercase().starts_with("TG_"))
            .filter(|name| !is_reserved_variable(name))
            .filter(|name| !keys.contains(&name[3..].to_ascii_lowercase()))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        Err(ConfigError(format!(
            "unknown environment variable(s) {}: no such setting (settings are TG_ plus a \
             key in lower or upper case, such as TG_LISTEN; `transcript-gateway serve --help` \
             and the README list them; TG_TEST_* is left to the test tooling)",
            unknown.join(", ")
        )))
    }

    /// Refuses keys of a TOML file that name no setting (keys are case-sensitive).
    fn check_file(path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        let keys = Self::keys();
        let mut unknown: Vec<&String> = table.keys().filter(|k| !keys.contains(k)).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        let listed: Vec<String> = unknown.iter().map(|k| format!("{k:?}")).collect();
        Err(ConfigError(format!(
            "config file {}: unknown key(s) {}; keys are the TG_ variable names in lower \
             case without TG_ (TG_S3_BUCKET is s3_bucket), such as listen or data_dir",
            path.display(),
            listed.join(", ")
        )))
    }

    /// Layers defaults, the optional TOML file, `TG_*` variables and flags,
    /// then validates the result. Unknown file keys and unknown `TG_*`
    /// variables are refused.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::check_variables(std::env::vars())?;
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} not found",
                    path.display()
                )));
            }
            Self::check_file(path)?;
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(Env::prefixed("TG_").filter(|k| {
                !is_reserved_variable(&format!("TG_{}", k.as_str().to_ascii_uppercase()))
            }))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// The HTTP layer's limits, with `guard` checking tokens.
    pub fn http_limits(&self, guard: Guard) -> HttpLimits {
        HttpLimits {
            body_limit_bytes: self.body_limit_bytes,
            request_timeout: std::time::Duration::from_secs(self.request_timeout_secs),
            header_limit_bytes: self.header_limit_bytes,
            max_in_flight: self.max_in_flight,
            live: crate::api::stream::LiveLimits {
                max_readers: self.max_live_readers,
                long_poll: self.long_poll_wait(),
                sse: std::time::Duration::from_secs(self.live_sse_secs),
            },
            guard,
        }
    }

    /// How the AWS adapters retry and bound their calls.
    pub fn aws(&self) -> AwsSettings {
        AwsSettings {
            retry_mode: self.aws_retry_mode,
            max_attempts: self.aws_max_attempts,
            operation_timeout: std::time::Duration::from_millis(self.aws_operation_timeout_ms),
            attempt_timeout: std::time::Duration::from_millis(self.aws_attempt_timeout_ms),
        }
    }

    /// The S3 adapter's settings.
    pub fn s3(&self) -> S3Settings {
        S3Settings {
            bucket: self.s3_bucket.clone().unwrap_or_default(),
            prefix: self.s3_prefix.clone(),
            endpoint_url: self.s3_endpoint_url.clone(),
            force_path_style: self.s3_force_path_style,
            aws: self.aws(),
        }
    }

    /// The DynamoDB adapter's settings.
    pub fn dynamodb(&self) -> DynamoSettings {
        DynamoSettings {
            table_prefix: self.dynamodb_table_prefix.clone(),
            endpoint_url: self.dynamodb_endpoint_url.clone(),
            aws: self.aws(),
        }
    }

    /// The token settings.
    pub fn auth(&self) -> AuthSettings {
        AuthSettings {
            secret: self.auth_secret.clone(),
            public_key_file: self.auth_public_key_file.clone(),
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
        }
    }

    /// Checks that serving on `listen` is safe: a token key is configured, or
    /// `insecure_no_auth` is set and `listen` is a loopback address.
    pub fn check_serving_auth(&self, listen: SocketAddr) -> Result<(), ConfigError> {
        let has_key = self.auth().has_key();
        match (has_key, self.insecure_no_auth) {
            (true, true) => Err(ConfigError(
                "both a token key (TG_AUTH_SECRET / TG_AUTH_PUBLIC_KEY_FILE) and \
                 --insecure-no-auth (TG_INSECURE_NO_AUTH) are set; choose one"
                    .into(),
            )),
            (true, false) => Ok(()),
            (false, true) if listen.ip().is_loopback() => Ok(()),
            (false, true) => Err(ConfigError(format!(
                "refusing to serve without authentication on {listen}: --insecure-no-auth \
                 (TG_INSECURE_NO_AUTH) is accepted only on a loopback address (127.0.0.0/8, \
                 ::1, localhost); set TG_AUTH_SECRET or TG_AUTH_PUBLIC_KEY_FILE instead"
            ))),
            (false, false) => Err(ConfigError(
                "authentication is not configured: set TG_AUTH_SECRET (at least 32 bytes) or \
                 TG_AUTH_PUBLIC_KEY_FILE (an Ed25519 or RSA public key in PEM), or, for local \
                 development on a loopback address only, pass --insecure-no-auth"
                    .into(),
            )),
        }
    }

    /// How long a long-poll waits: `live_long_poll_secs`, but ending before
    /// the request timeout would answer 504 instead.
    pub fn long_poll_wait(&self) -> std::time::Duration {
        let timeout = std::time::Duration::from_secs(self.request_timeout_secs);
        let below = timeout
            .saturating_sub(std::time::Duration::from_secs(1))
            .max(timeout / 2);
        std::time::Duration::from_secs(self.live_long_poll_secs).min(below)
    }

    /// Checks the settings fit together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.body_limit_bytes == 0 {
            return Err(ConfigError("body_limit_bytes must be positive".into()));
        }
        if self.request_timeout_secs == 0 {
            return Err(ConfigError("request_timeout_secs must be positive".into()));
        }
        if self.header_limit_bytes < 1024 {
            return Err(ConfigError(
                "header_limit_bytes must be at least 1024".into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError("max_in_flight must be positive".into()));
        }
        if self.max_live_readers == 0 {
            return Err(ConfigError("max_live_readers must be positive".into()));
        }
        if self.live_long_poll_secs == 0 {
            return Err(ConfigError("live_long_poll_secs must be positive".into()));
        }
        if self.live_sse_secs == 0 {
            return Err(ConfigError("live_sse_secs must be positive".into()));
        }
        if self.drain_prestop_secs >= self.drain_timeout_secs {
            return Err(ConfigError(format!(
                "drain_prestop_secs ({}) must be shorter than drain_timeout_secs ({}): \
                 the pre-stop wait is part of the drain",
                self.drain_prestop_secs, self.drain_timeout_secs
            )));
        }
        if self.aws_operation_timeout_ms == 0 || self.aws_attempt_timeout_ms == 0 {
            return Err(ConfigError(
                "aws_operation_timeout_ms and aws_attempt_timeout_ms must be positive".into(),
            ));
        }
        if self.aws_attempt_timeout_ms > self.aws_operation_timeout_ms {
            return Err(ConfigError(format!(
                "aws_attempt_timeout_ms ({}) must not exceed aws_operation_timeout_ms ({})",
                self.aws_attempt_timeout_ms, self.aws_operation_timeout_ms
            )));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError(format!(
                "log filter {:?} is not valid: {e}",
                self.log
            )));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError("data_dir must not be empty".into()));
        }
        if self.s3_load_concurrency == 0 || self.s3_load_concurrency > 256 {
            return Err(ConfigError("s3_load_concurrency must be 1 to 256".into()));
        }
        if self.storage == StorageKind::S3 && self.s3_bucket.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError(
                "storage = s3 needs TG_S3_BUCKET (s3_bucket)".into(),
            ));
        }
        if self.compaction_concurrency == 0 || self.compaction_concurrency > 64 {
            return Err(ConfigError("compaction_concurrency must be 1 to 64".into()));
        }
        if self.memory_budget_bytes < 16 * 1024 * 1024 {
            return Err(ConfigError(
                "memory_budget_bytes must be at least 16777216 (16 MiB, one load's budget)".into(),
            ));
        }
        if self.aws_max_attempts == 0 {
            return Err(ConfigError("aws_max_attempts must be at least 1".into()));
        }
        if self.s3_prefix.starts_with('/') || self.s3_prefix.ends_with('/') {
            return Err(ConfigError(
                "s3_prefix must not start or end with '/'".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_cloud() {
        let c = Config::default();
        assert_eq!(c.storage, StorageKind::Embedded);
        assert_eq!(c.catalog, CatalogKind::Embedded);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        c.validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
    fn layers_apply_in_order_defaults_file_env_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "tg.toml",
                "data_dir = \"/from-file\"\ns3_prefix = \"file-prefix\"\nlisten = \"127.0.0.1:1000\"\n",
            )?;
            jail.set_env("TG_S3_PREFIX", "env-prefix");
            jail.set_env("TG_LISTEN", "127.0.0.1:2000");
            let flags = Overrides {
                listen: Some("127.0.0.1:3000".parse().unwrap()),
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("tg.toml")), &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.data_dir, PathBuf::from("/from-file"));
            assert_eq!(c.s3_prefix, "env-prefix");
            assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
            assert_eq!(c.compaction_threshold, 256);
            Ok(())
        });
    }

    fn secret() -> Option<Secret> {
        Some(Secret::new("x".repeat(32)))
    }

    #[test]
    fn serving_without_a_key_is_refused_unless_open_on_loopback() {
        let public: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        let none = Config::default();
        let err = none.check_serving_auth(loopback).unwrap_err().to_string();
        assert!(
            err.contains("TG_AUTH_SECRET") && err.contains("--insecure-no-auth"),
            "{err}"
        );
        let open = Config {
            insecure_no_auth: true,
            ..Config::default()
        };
        open.check_serving_auth(loopback).unwrap();
        open.check_serving_auth("[::1]:1".parse().unwrap()).unwrap();
        open.check_serving_auth("127.9.9.9:1".parse().unwrap())
            .unwrap();
        let err = open.check_serving_auth(public).unwrap_err().to_string();
        assert!(err.contains("only on a loopback address"), "{err}");
        let keyed = Config {
            auth_secret: secret(),
            ..Config::default()
        };
        keyed.check_serving_auth(public).unwrap();
        let both = Config {
            insecure_no_auth: true,
            ..keyed
        };
        assert!(both
            .check_serving_auth(loopback)
            .unwrap_err()
            .to_string()
            .contains("choose one"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type.
    fn misspelt_or_miscased_file_keys_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "tg.toml",
                "lisen = \"127.0.0.1:1\"\nLISTEN = \"127.0.0.1:2\"\n",
            )?;
            let err = Config::load(Some(Path::new("tg.toml")), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("\"LISTEN\"") && err.contains("\"lisen\""),
                "{err}"
            );
            assert!(err.contains("unknown key"), "{err}");
            jail.create_file("ok.toml", "listen = \"127.0.0.1:3\"\n")?;
            let ok = Config::load(Some(Path::new("ok.toml")), &Overrides::default()).unwrap();
            assert_eq!(ok.listen.port(), 3);
            Ok(())
        });
    }

    #[test]
    fn unknown_tg_variables_are_refused_by_name() {
        let vars = |names: &[&str]| {
            names
                .iter()
                .map(|n| (n.to_string(), "x".to_string()))
                .collect::<Vec<_>>()
        };
        let err = Config::check_variables(vars(&["TG_LISEN", "TG_S3_BUCKT", "HOME", "TG_LISTEN"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TG_LISEN, TG_S3_BUCKT"), "{err}");
        assert!(!err.contains("HOME"));
        Config::check_variables(vars(&[
            "TG_LISTEN",
            "TG_AUTH_SECRET",
            "TG_CONFIG",
            "TG_TEST_GATEWAY_BIN",
            "PATH",
        ]))
        .unwrap();
    }

    #[test]
    fn a_long_poll_ends_before_the_request_timeout() {
        let wait = |long_poll, timeout| {
            Config {
                live_long_poll_secs: long_poll,
                request_timeout_secs: timeout,
                ..Config::default()
            }
            .long_poll_wait()
        };
        assert_eq!(wait(20, 60), std::time::Duration::from_secs(20));
        assert_eq!(wait(20, 10), std::time::Duration::from_secs(9));
        assert_eq!(wait(20, 1), std::time::Duration::from_millis(500));
    }

    #[test]
    fn values_that_cannot_work_are_refused() {
        for (what, config) in [
            (
                "request_timeout_secs",
                Config {
                    request_timeout_secs: 0,
                    ..Config::default()
                },
            ),
            (
                "max_in_flight",
                Config {
                    max_in_flight: 0,
                    ..Config::default()
                },
            ),
            (
                "max_live_readers",
                Config {
                    max_live_readers: 0,
                    ..Config::default()
                },
            ),
            (
                "live_long_poll_secs",
                Config {
                    live_long_poll_secs: 0,
                    ..Config::default()
                },
            ),
            (
                "live_sse_secs",
                Config {
                    live_sse_secs: 0,
                    ..Config::default()
                },
            ),
            (
                "header_limit_bytes",
                Config {
                    header_limit_bytes: 10,
                    ..Config::default()
                },
            ),
            (
                "aws_attempt_timeout_ms",
                Config {
                    aws_attempt_timeout_ms: 20_000,
                    ..Config::default()
                },
            ),
            (
                "aws_operation_timeout_ms",
                Config {
                    aws_operation_timeout_ms: 0,
                    ..Config::default()
                },
            ),
            (
                "log filter",
                Config {
                    log: "=[".into(),
                    ..Config::default()
                },
            ),
            (
                "body_limit_bytes",
                Config {
                    body_limit_bytes: 0,
                    ..Config::default()
                },
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn localhost_is_a_listen_address() {
        assert_eq!(
            parse_listen("localhost:9000").unwrap(),
            "127.0.0.1:9000".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_listen("localhost:x").is_err());
        assert!(parse_listen("example.com:80").is_err());
    }

    #[test]
    fn s3_without_bucket_is_refused() {
        let c = Config {
            storage: StorageKind::S3,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("TG_S3_BUCKET"));
    }
}
