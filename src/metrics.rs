//! Process-wide metrics as OpenTelemetry instruments: exported over OTLP when
//! the telemetry setup adds an exporter, and always rendered for Prometheus
//! at `/metrics` (the standard name translation: `tg.append.duration` in
//! seconds is `tg_append_duration_seconds`, a counter gains `_total`).
//!
//! Counters are plain atomics on the hot path, read by observable
//! instruments when a reader collects (tests read them directly too);
//! distributions are OpenTelemetry histograms. Attributes come only from a
//! small closed set (reason, outcome, backend): never a task, session or
//! project id.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, SdkMeterProvider};

/// The instrumentation scope every instrument belongs to.
pub const SCOPE: &str = "transcript-gateway";

/// Counts by one attribute value (a reason, an outcome, a backend).
#[derive(Default)]
pub struct Labeled(Mutex<BTreeMap<String, u64>>);

impl Labeled {
    const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports `value` from zero if it has no count yet.
    fn seed(&self, value: &str) {
        self.counts().entry(value.to_string()).or_default();
    }

    /// Adds one under `value`.
    pub fn add(&self, value: &str) {
        *self.counts().entry(value.to_string()).or_default() += 1;
    }

    /// The count under `value` so far.
    pub fn get(&self, value: &str) -> u64 {
        self.counts().get(value).copied().unwrap_or(0)
    }

    /// Every value with its count.
    fn snapshot(&self) -> Vec<(String, u64)> {
        self.counts().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The gateway's counters and gauges.
pub struct Metrics {
    /// Parts written.
    pub appends: AtomicU64,
    /// Creates that lost a race for a sequence number (`tg.part.conflicts`).
    pub append_conflicts: AtomicU64,
    /// Appends answered from an idempotency record.
    pub idempotent_replays: AtomicU64,
    /// Catalog writes that failed after their part was durable.
    pub catalog_failures: AtomicU64,
    /// Loads started.
    pub loads: AtomicU64,
    /// Objects that failed checksum verification (`tg.checksum.mismatches`).
    pub checksum_failures: AtomicU64,
    /// Loads and compactions that found a broken hash chain.
    pub integrity_violations: AtomicU64,
    /// Appends whose project key differs from the task's binding.
    pub project_key_drift: AtomicU64,
    /// Entries not stored because their uuid was stored before.
    pub dedup_skipped: AtomicU64,
    /// HTTP requests being served.
    pub in_flight: AtomicI64,
    /// Transcripts whose catalog record lags their durable parts.
    pub repair_backlog: AtomicI64,
    /// Live stream readers (long-poll and SSE) being served.
    pub live_readers: AtomicI64,
    /// 1 while the gateway takes traffic (as of its last readiness check), 0
    /// while draining or after a check found a backend unreachable.
    pub ready: AtomicI64,
    /// Mirror failures by reason.
    pub mirror_failures: Labeled,
    /// Compactions by outcome.
    pub compactions: Labeled,
    /// Backend calls retried, by backend.
    pub backend_retries: Labeled,
}

/// The one set of metrics.
pub static METRICS: Metrics = Metrics {
    appends: AtomicU64::new(0),
    append_conflicts: AtomicU64::new(0),
    idempotent_replays: AtomicU64::new(0),
    catalog_failures: AtomicU64::new(0),
    loads: AtomicU64::new(0),
    checksum_failures: AtomicU64::new(0),
    integrity_violations: AtomicU64::new(0),
    project_key_drift: AtomicU64::new(0),
    dedup_skipped: AtomicU64::new(0),
    in_flight: AtomicI64::new(0),
    repair_backlog: AtomicI64::new(0),
    live_readers: AtomicI64::new(0),
    ready: AtomicI64::new(0),
    mirror_failures: Labeled::new(),
    compactions: Labeled::new(),
    backend_retries: Labeled::new(),
};

/// The metric pipeline: the provider, the Prometheus registry its reader
/// fills, and the histograms recorded directly.
struct Pipeline {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    append_duration: Histogram<f64>,
    load_duration: Histogram<f64>,
    append_bytes: Histogram<u64>,
    append_entries: Histogram<u64>,
    load_parts: Histogram<u64>,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// The metric pipeline was built before [`install`] was called.
#[derive(Debug, thiserror::Error)]
#[error("the metric pipeline is already installed")]
pub struct AlreadyInstalled;

/// Builds the pipeline with the Prometheus reader plus whatever `configure`
/// adds (an OTLP periodic reader, a resource); returns the provider so the
/// caller can flush it on exit. Must run before the first metric is
/// recorded; without it the first use builds a Prometheus-only pipeline.
pub fn install(
    configure: impl FnOnce(MeterProviderBuilder) -> MeterProviderBuilder,
) -> Result<SdkMeterProvider, AlreadyInstalled> {
    let mut built = false;
    let pipeline = PIPELINE.get_or_init(|| {
        built = true;
        Pipeline::build(configure)
    });
    if built {
        Ok(pipeline.provider.clone())
    } else {
        Err(AlreadyInstalled)
    }
}

fn pipeline() -> &'static Pipeline {
    PIPELINE.get_or_init(|| Pipeline::build(|b| b))
}

/// Bucket bounds, in seconds, for request-scale durations.
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Bucket bounds for batch sizes in bytes.
const BYTES: [f64; 10] = [
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0, 33554432.0,
];
/// Bucket bounds for counts (entries per batch, parts per load).
const COUNTS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

impl Pipeline {
    fn build(configure: impl FnOnce(MeterProviderBuilder) -> MeterProviderBuilder) -> Self {
        let registry = prometheus::Registry::new();
        let builder = SdkMeterProvider::builder();
        let builder = match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
        {
            Ok(reader) => builder.with_reader(reader),
            // Only a registry that refuses the collector fails; /metrics is
            // then empty and OTLP (if configured) still exports.
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the Prometheus reader");
                builder
            }
        };
        let provider = configure(builder).build();
        let meter = provider.meter(SCOPE);
        register_observables(&meter);
        Self {
            append_duration: meter
                .f64_histogram("tg.append.duration")
                .with_unit("s")
                .with_description("Time to make an append durable (or to fail it).")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            load_duration: meter
                .f64_histogram("tg.load.duration")
                .with_unit("s")
                .with_description("Time from a load's start to its last entry.")
                .with_boundaries(SECONDS.to_vec())
                .build(),
            append_bytes: meter
                .u64_histogram("tg.append.bytes")
                .with_unit("By")
                .with_description("Bytes of entries per append.")
                .with_boundaries(BYTES.to_vec())
                .build(),
            append_entries: meter
                .u64_histogram("tg.append.entries")
                .with_unit("{entry}")
                .with_description("Entries per append.")
                .with_boundaries(COUNTS.to_vec())
                .build(),
            load_parts: meter
                .u64_histogram("tg.load.parts")
                .with_unit("{part}")
                .with_description("Parts (and snapshots) read per load.")
                .with_boundaries(COUNTS.to_vec())
                .build(),
            provider,
            registry,
        }
    }
}

/// A plain counter: instrument name, description, and the atomic read at
/// collection.
type Counter = (&'static str, &'static str, fn(&Metrics) -> &AtomicU64);

/// Every plain counter.
const COUNTERS: [Counter; 9] = [
    ("tg.appends", "Parts written.", |m| &m.appends),
    (
        "tg.part.conflicts",
        "Part creates that lost a sequence-number race.",
        |m| &m.append_conflicts,
    ),
    (
        "tg.idempotent.replays",
        "Appends answered from an idempotency record.",
        |m| &m.idempotent_replays,
    ),
    (
        "tg.catalog.failures",
        "Catalog writes that failed after their part was durable.",
        |m| &m.catalog_failures,
    ),
    ("tg.loads", "Loads started.", |m| &m.loads),
    (
        "tg.checksum.mismatches",
        "Objects that failed checksum verification.",
        |m| &m.checksum_failures,
    ),
    (
        "tg.integrity.violations",
        "Transcripts whose parts broke their hash chain (replaced, removed or truncated).",
        |m| &m.integrity_violations,
    ),
    (
        "tg.project_key.drift",
        "Appends under a project key other than the task's binding names.",
        |m| &m.project_key_drift,
    ),
    (
        "tg.dedup.skipped",
        "Entries not stored because their uuid was stored before in the transcript.",
        |m| &m.dedup_skipped,
    ),
];

/// A counter with one attribute: instrument name, description, the
/// attribute's key, and the counts read at collection.
type LabeledCounter = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Metrics) -> &Labeled,
);

/// Every counter with one attribute.
const LABELED: [LabeledCounter; 3] = [
    (
        "tg.mirror.failures",
        "Appends the gateway could not make durable, and gaps clients or loads found, by reason.",
        "reason",
        |m| &m.mirror_failures,
    ),
    (
        "tg.compactions",
        "Compactions by outcome (completed, skipped, failed, migrated).",
        "outcome",
        |m| &m.compactions,
    ),
    (
        "tg.backend.retries",
        "Backend calls retried after a failed attempt, by backend.",
        "backend",
        |m| &m.backend_retries,
    ),
];

/// Mirror-failure reasons reported from zero, so an alarm on their
/// increase sees the first one (a series that appears at 1 shows no increase).
pub const MIRROR_REASONS: [&str; 9] = [
    "backend_unavailable",
    "timeout",
    "checksum",
    "conflict_exhausted",
    "catalog",
    "client_reported",
    "integrity",
    "draining",
    "internal",
];
/// Compaction outcomes reported from zero.
const COMPACTION_OUTCOMES: [&str; 4] = ["completed", "skipped", "failed", "migrated"];

fn register_observables(meter: &Meter) {
    for reason in MIRROR_REASONS {
        METRICS.mirror_failures.seed(reason);
    }
    for outcome in COMPACTION_OUTCOMES {
        METRICS.compactions.seed(outcome);
    }
    for backend in ["s3", "dynamodb"] {
        METRICS.backend_retries.seed(backend);
    }
    for (name, help, counter) in COUNTERS {
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |o| o.observe(counter(&METRICS).load(Ordering::Relaxed), &[]))
            .build();
    }
    for (name, help, attribute, counts) in LABELED {
        meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |o| {
                for (value, n) in counts(&METRICS).snapshot() {
                    o.observe(n, &[KeyValue::new(attribute, value)]);
                }
            })
            .build();
    }
    meter
        .i64_observable_up_down_counter("tg.requests.in_flight")
        .with_description("HTTP requests being served.")
        .with_callback(|o| o.observe(METRICS.in_flight.load(Ordering::Relaxed), &[]))
        .build();
    meter
        .i64_observable_up_down_counter("tg.stream.readers")
        .with_description(
            "Live stream readers (long-poll and SSE) being served; at most TG_MAX_LIVE_READERS.",
        )
        .with_callback(|o| o.observe(METRICS.live_readers.load(Ordering::Relaxed), &[]))
        .build();
    meter
        .i64_observable_gauge("tg.ready")
        .with_description("1 while the gateway takes traffic (as of its last readiness check), 0 while draining or when a backend did not answer it.")
        .with_callback(|o| o.observe(METRICS.ready.load(Ordering::Relaxed), &[]))
        .build();
    meter
        .i64_observable_gauge("tg.catalog.repair.backlog")
        .with_description("Transcripts whose catalog record lags their durable parts (repaired by the next append or compaction).")
        .with_callback(|o| o.observe(METRICS.repair_backlog.load(Ordering::Relaxed), &[]))
        .build();
}

impl Metrics {
    /// Records one append's duration, bytes and entries.
    pub fn record_append(&self, took: Duration, bytes: u64, entries: u64) {
        let p = pipeline();
        p.append_duration.record(took.as_secs_f64(), &[]);
        p.append_bytes.record(bytes, &[]);
        p.append_entries.record(entries, &[]);
    }

    /// Records one complete load's duration and the parts it read.
    pub fn record_load(&self, took: Duration, parts: u64) {
        let p = pipeline();
        p.load_duration.record(took.as_secs_f64(), &[]);
        p.load_parts.record(parts, &[]);
    }

    /// Counts one mirror failure of `reason`.
    pub fn mirror_failure(&self, reason: &str) {
        self.mirror_failures.add(reason);
    }

    /// Mirror failures of `reason` so far.
    pub fn mirror_failures_of(&self, reason: &str) -> u64 {
        self.mirror_failures.get(reason)
    }

    /// Renders every instrument in the Prometheus text format.
    pub fn render(&self) -> String {
        let families = pipeline().registry.gather();
        let mut out = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::error!(error = %e, "cannot render the metrics");
        }
        out
    }
}
