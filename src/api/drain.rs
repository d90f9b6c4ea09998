//! Shutdown, as the HTTP layer sees it: once draining starts, every request
//! that arrives is refused with 503 `draining` and `Retry-After` (before any
//! work, so it changes nothing), while those already running finish. The
//! requests running are kept by method and path, so a drain that runs out of
//! time can say what it left behind.
//!
//! `/healthz` (the process is alive), `/readyz` (which answers 503 itself)
//! and `/metrics` are still served while draining.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use super::{paths, Readiness};
use crate::error::Error;

/// The requests being served now, by method and path.
#[derive(Clone, Debug, Default)]
pub struct InFlight(Arc<Registry>);

#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    requests: Mutex<HashMap<u64, String>>,
}

/// One request in [`InFlight`] until dropped.
struct Entered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let mut requests = self
            .registry
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        requests.remove(&self.id);
    }
}

impl InFlight {
    fn enter(&self, what: String) -> Entered {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let mut requests = self.0.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.insert(id, what);
        Entered {
            registry: self.0.clone(),
            id,
        }
    }

    /// How many requests are being served now.
    pub fn len(&self) -> usize {
        let requests = self.0.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The requests being served, as `METHOD path (n)` sorted, for a log line.
    pub fn describe(&self) -> String {
        let requests = self.0.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for what in requests.values() {
            *counts.entry(what.as_str()).or_default() += 1;
        }
        let listed: Vec<String> = counts
            .into_iter()
            .map(|(what, n)| format!("{what} ({n})"))
            .collect();
        listed.join(", ")
    }
}

/// What the drain middleware needs.
#[derive(Clone, Debug)]
pub struct DrainGate {
    /// Cleared when draining starts.
    pub readiness: Readiness,
    /// The requests being served.
    pub in_flight: InFlight,
}

/// Middleware: refuses requests that arrive while draining, and keeps the
/// others in [`InFlight`] until their response (a streamed body included)
/// is done.
pub async fn drain(State(gate): State<DrainGate>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let always = matches!(path, paths::HEALTHZ | paths::READYZ | paths::METRICS);
    if !always && !gate.readiness.is_ready() {
        return Error::Draining.into_response();
    }
    let entered = gate
        .in_flight
        .enter(format!("{} {}", request.method(), path));
    let response = next.run(request).await;
    if response.body().size_hint().exact().is_some() {
        // Sent as soon as it is written: done.
        return response;
    }
    // A streamed body: the request is in flight until its last byte.
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &entered;
            chunk
        }))
    })
}
