//! transcript-gateway: one HTTP service that keeps Claude Agent SDK session
//! transcripts durable and portable across workers.
//!
//! Module map:
//! - [`auth`]: bearer tokens (verification, scopes, minting) and the one
//!   middleware that checks them.
//! - [`config`]: the one typed configuration (defaults, file, `TG_*`, flags).
//! - [`domain`]: validated ids and keys (`TaskId`, `SessionKey`, `Seq`, ...).
//! - [`error`]: the service error enum and its wire codes and statuses.
//! - [`backend`]: the object and catalog ports, and their embedded, S3 and
//!   DynamoDB adapters.
//! - [`engine`]: ordering, load, compaction, listing, deletion and summaries
//!   over the ports.
//! - [`api`]: the HTTP layer (routes, extractors, envelope, OpenAPI, the
//!   operators' dashboard page).
//! - [`compact`]: `transcript-gateway compact`, via the gateway or directly.
//! - [`migrate`]: `transcript-gateway migrate`, the DynamoDB tables of `migrations/`.
//! - [`server`]: building the engine, serving, draining on shutdown.
//! - [`metrics`]: OpenTelemetry instruments, rendered for `/metrics` and
//!   exported over OTLP when configured.
//! - [`telemetry`]: log lines, and OTLP trace and metric export from the
//!   standard `OTEL_*` variables; flushed on exit.
//! - [`token`]: `transcript-gateway token mint`.

pub mod api;
pub mod auth;
pub mod backend;
pub mod compact;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod migrate;
pub mod server;
pub mod telemetry;
pub mod token;

pub use config::Config;
pub use engine::Engine;
pub use error::{Error, ErrorCode};
