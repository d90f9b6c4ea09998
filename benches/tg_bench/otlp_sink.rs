//! A loopback OTLP/HTTP receiver that accepts and counts what a gateway
//! exports, so one benchmark series can run with telemetry export on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::routing::post;

use crate::Res;

/// Requests and bytes received.
#[derive(Default)]
pub struct Counts {
    /// Export requests.
    pub requests: AtomicU64,
    /// Their body bytes.
    pub bytes: AtomicU64,
}

/// A running sink.
pub struct Sink {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for it.
    pub endpoint: String,
    /// What arrived so far.
    pub counts: Arc<Counts>,
}

/// Starts a sink on a free loopback port, for as long as the process runs.
pub async fn start() -> Res<Sink> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let counts = Arc::new(Counts::default());
    let seen = counts.clone();
    let accept = move |body: bytes::Bytes| {
        let seen = seen.clone();
        async move {
            seen.requests.fetch_add(1, Ordering::Relaxed);
            seen.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            // An empty protobuf message: the export succeeded.
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }
    };
    let app = axum::Router::new()
        .route("/v1/traces", post(accept.clone()))
        .route("/v1/metrics", post(accept));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Sink { endpoint, counts })
}
