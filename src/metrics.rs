//! Process-wide counters, rendered for Prometheus at `/metrics`.
//!
//! Plain atomics: cheap on the append path and readable by any exporter.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The gateway's counters.
#[derive(Default)]
pub struct Metrics {
    /// Parts written.
    pub appends: AtomicU64,
    /// Bytes written in parts.
    pub appended_bytes: AtomicU64,
    /// Creates that lost a race for a sequence number.
    pub append_conflicts: AtomicU64,
    /// Appends answered from an idempotency record.
    pub idempotent_replays: AtomicU64,
    /// Catalog writes that failed after their part was durable.
    pub catalog_failures: AtomicU64,
    /// Loads started.
    pub loads: AtomicU64,
    /// Objects that failed checksum verification.
    pub checksum_failures: AtomicU64,
    /// Loads and compactions that found a broken hash chain.
    pub integrity_violations: AtomicU64,
    /// Compactions completed.
    pub compactions: AtomicU64,
    /// Appends whose project key differs from the task's binding.
    pub project_key_drift: AtomicU64,
    /// Entries not stored because their uuid was stored before.
    pub dedup_skipped: AtomicU64,
    /// Mirror failures by reason.
    pub mirror_failures: Mutex<BTreeMap<String, u64>>,
}

/// The one set of counters.
pub static METRICS: Metrics = Metrics {
    appends: AtomicU64::new(0),
    appended_bytes: AtomicU64::new(0),
    append_conflicts: AtomicU64::new(0),
    idempotent_replays: AtomicU64::new(0),
    catalog_failures: AtomicU64::new(0),
    loads: AtomicU64::new(0),
    checksum_failures: AtomicU64::new(0),
    integrity_violations: AtomicU64::new(0),
    compactions: AtomicU64::new(0),
    project_key_drift: AtomicU64::new(0),
    dedup_skipped: AtomicU64::new(0),
    mirror_failures: Mutex::new(BTreeMap::new()),
};

impl Metrics {
    /// Each counter's Prometheus name, help text and value.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 11] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("tg_appends_total", "Parts written.", get(&self.appends)),
            (
                "tg_appended_bytes_total",
                "Bytes written in parts.",
                get(&self.appended_bytes),
            ),
            (
                "tg_append_conflicts_total",
                "Creates that lost a sequence-number race.",
                get(&self.append_conflicts),
            ),
            (
                "tg_idempotent_replays_total",
                "Appends answered from an idempotency record.",
                get(&self.idempotent_replays),
            ),
            (
                "tg_catalog_failures_total",
                "Catalog writes that failed after the part was durable.",
                get(&self.catalog_failures),
            ),
            ("tg_loads_total", "Loads started.", get(&self.loads)),
            (
                "tg_checksum_failures_total",
                "Objects that failed checksum verification.",
                get(&self.checksum_failures),
            ),
            (
                "tg_integrity_violations_total",
                "Transcripts whose parts broke their hash chain (replaced, removed or truncated).",
                get(&self.integrity_violations),
            ),
            (
                "tg_compactions_total",
                "Compactions completed.",
                get(&self.compactions),
            ),
            (
                "tg_project_key_drift_total",
                "Appends under a project key other than the task's binding names.",
                get(&self.project_key_drift),
            ),
            (
                "tg_dedup_skipped_entries_total",
                "Entries not stored because their uuid was stored before in the transcript.",
                get(&self.dedup_skipped),
            ),
        ]
    }

    /// Counts one mirror failure of `reason`.
    pub fn mirror_failure(&self, reason: &str) {
        let mut counts = self
            .mirror_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *counts.entry(reason.to_string()).or_default() += 1;
    }

    /// Mirror failures of `reason` so far.
    pub fn mirror_failures_of(&self, reason: &str) -> u64 {
        let counts = self
            .mirror_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.get(reason).copied().unwrap_or(0)
    }

    /// Renders every counter in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in self.counters() {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP tg_mirror_failures_total Mirror failures (writes that did not land, broken chains, client reports, project-key drift), by reason.\n# TYPE tg_mirror_failures_total counter"
        );
        let counts = self
            .mirror_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (reason, value) in counts.iter() {
            let _ = writeln!(
                out,
                "tg_mirror_failures_total{{reason=\"{reason}\"}} {value}"
            );
        }
        out
    }
}
