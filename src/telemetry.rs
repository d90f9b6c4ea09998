//! Telemetry: structured log lines always; OpenTelemetry traces and metrics
//! over OTLP only when an endpoint is configured, through the standard
//! `OTEL_*` variables (the SDK reads the sampler, batch delay, metric
//! interval, headers, timeouts and resource from them; this module reads
//! which signals to export and over which protocol).
//!
//! With no endpoint nothing is exported, attempted or logged about
//! exporting: spans go nowhere, metrics only to `/metrics`. The W3C trace
//! context propagator is installed either way, so an incoming `traceparent`
//! is honoured whenever traces are exported.

use std::sync::mpsc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

/// The `service.name` unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const SERVICE_NAME: &str = "transcript-gateway";

/// How OTLP is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`grpc`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`, the default).
    HttpProtobuf,
}

/// Which signals are exported, and how; `None` means not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExportSettings {
    /// Spans.
    pub traces: Option<Protocol>,
    /// Metrics.
    pub metrics: Option<Protocol>,
}

/// A telemetry setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` variable has a value this gateway does not support.
    #[error("{var}={value:?} is not supported ({expected})")]
    Unsupported {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is.
        expected: &'static str,
    },
    /// An OTLP exporter could not be built.
    #[error("cannot set up the OTLP {signal} exporter")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The metric pipeline was in use before telemetry was set up.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::AlreadyInstalled),
}

impl ExportSettings {
    /// Reads the standard variables from the process environment.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the standard variables through `get`: nothing is exported
    /// when `OTEL_SDK_DISABLED=true`; otherwise a signal is exported
    /// when its endpoint (`OTEL_EXPORTER_OTLP_{SIGNAL}_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) is set and `OTEL_{SIGNAL}_EXPORTER` is
    /// not `none`; its protocol is `OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`,
    /// else `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let set = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Self::default());
        }
        let signal = |exporter: &'static str,
                      endpoint: &'static str,
                      protocol: &'static str|
         -> Result<Option<Protocol>, TelemetryError> {
            match set(exporter).as_deref().map(str::trim) {
                None | Some("otlp") => {}
                Some("none") => return Ok(None),
                Some(other) => {
                    return Err(TelemetryError::Unsupported {
                        var: exporter,
                        value: other.to_string(),
                        expected: "otlp or none",
                    })
                }
            }
            if set(endpoint).is_none() && set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
                return Ok(None);
            }
            let (var, value) = match set(protocol) {
                Some(v) => (protocol, v),
                None => (
                    "OTEL_EXPORTER_OTLP_PROTOCOL",
                    set("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_else(|| "http/protobuf".into()),
                ),
            };
            match value.trim() {
                "grpc" => Ok(Some(Protocol::Grpc)),
                "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
                other => Err(TelemetryError::Unsupported {
                    var,
                    value: other.to_string(),
                    expected: "grpc or http/protobuf",
                }),
            }
        };
        Ok(Self {
            traces: signal(
                "OTEL_TRACES_EXPORTER",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            )?,
            metrics: signal(
                "OTEL_METRICS_EXPORTER",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            )?,
        })
    }
}

/// What was set up; [`Telemetry::shutdown`] flushes it.
#[must_use = "shut telemetry down on exit so pending spans and metrics are sent"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.tracer.is_some()
    }

    /// Whether metrics are exported.
    pub fn exports_metrics(&self) -> bool {
        self.meter.is_some()
    }

    /// Sends pending spans and one last metric export, waiting at most
    /// `limit` (blocking: call it off the async runtime's threads).
    pub fn shutdown(self, limit: Duration) {
        let (done, finished) = mpsc::channel();
        let mut pending = 0;
        if let Some(tracer) = self.tracer {
            pending += 1;
            let done = done.clone();
            std::thread::spawn(move || {
                let _ = done.send(("traces", tracer.shutdown_with_timeout(limit)));
            });
        }
        if let Some(meter) = self.meter {
            pending += 1;
            std::thread::spawn(move || {
                let _ = done.send(("metrics", meter.shutdown_with_timeout(limit)));
            });
        }
        let deadline = std::time::Instant::now() + limit;
        for _ in 0..pending {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match finished.recv_timeout(left) {
                Ok((signal, Ok(()))) => tracing::debug!(signal, "telemetry flushed"),
                Ok((signal, Err(e))) => {
                    tracing::warn!(signal, error = %e, "telemetry flush failed")
                }
                Err(_) => {
                    tracing::warn!(?limit, "telemetry flush did not finish in time");
                    return;
                }
            }
        }
    }
}

/// Sets up logging, and tracing and metric export when configured; later
/// calls set nothing up. Blocking (building an exporter may start a
/// thread): call it off the async runtime's threads, inside the runtime.
pub fn init(config: &Config) -> Result<Telemetry, TelemetryError> {
    init_with(config, ExportSettings::from_env()?)
}

/// [`init`] with the export settings given.
pub fn init_with(config: &Config, export: ExportSettings) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = resource();
    let tracer = match export.traces {
        Some(protocol) => {
            let exporter = match protocol {
                Protocol::Grpc => SpanExporter::builder().with_tonic().build(),
                Protocol::HttpProtobuf => SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .build(),
            }
            .map_err(|source| TelemetryError::Exporter {
                signal: "traces",
                source,
            })?;
            Some(
                SdkTracerProvider::builder()
                    .with_resource(resource.clone())
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
        None => None,
    };
    let meter = match export.metrics {
        Some(protocol) => {
            let exporter = match protocol {
                Protocol::Grpc => MetricExporter::builder().with_tonic().build(),
                Protocol::HttpProtobuf => MetricExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .build(),
            }
            .map_err(|source| TelemetryError::Exporter {
                signal: "metrics",
                source,
            })?;
            Some(crate::metrics::install(move |b| {
                b.with_resource(resource).with_periodic_exporter(exporter)
            })?)
        }
        // `/metrics` only.
        None => {
            crate::metrics::install(move |b| b.with_resource(resource))?;
            None
        }
    };
    let otel = tracer.as_ref().map(|provider| {
        // Spans of the gateway's own code, whatever the log level.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_filter(Targets::new().with_target("transcript_gateway", Level::INFO))
            .boxed()
    });
    let _ = tracing_subscriber::registry()
        .with(log_layer(config))
        .with(otel)
        .try_init();
    if let Some(provider) = &tracer {
        // Flushed and shut down by `Telemetry::shutdown`; the global one is
        // for code that asks for "the" tracer.
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry { tracer, meter })
}

/// Log lines: JSON objects (top-level `timestamp`, `level`, `message`,
/// `target`, the event's fields, and the current span's fields under
/// `span`) or text for a person, filtered by `TG_LOG`.
fn log_layer(config: &Config) -> Box<dyn Layer<Registry> + Send + Sync> {
    let mut filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // The OpenTelemetry SDK's own lines: only its warnings (a failed export).
    for quiet in [
        "opentelemetry=warn",
        "opentelemetry_sdk=warn",
        "opentelemetry_otlp=warn",
    ] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => layer
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        // Colour only for a person at a terminal, never into a file.
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
    }
}

/// The resource: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, the SDK itself), with this gateway's name
/// and version unless those name a service.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    match named {
        true => builder.build(),
        false => builder.with_service_name(SERVICE_NAME).build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<ExportSettings, TelemetryError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportSettings::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        assert_eq!(settings(&[]).unwrap(), ExportSettings::default());
        let protocol_alone = settings(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(protocol_alone, ExportSettings::default());
        let blank = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap();
        assert_eq!(blank, ExportSettings::default());
    }

    #[test]
    fn the_common_endpoint_exports_both_signals_over_http_protobuf_by_default() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).unwrap();
        assert_eq!(s.traces, Some(Protocol::HttpProtobuf));
        assert_eq!(s.metrics, Some(Protocol::HttpProtobuf));
    }

    #[test]
    fn a_signal_endpoint_and_protocol_apply_to_that_signal_only() {
        let s = settings(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://127.0.0.1:4317",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ])
        .unwrap();
        assert_eq!(s.traces, Some(Protocol::Grpc));
        assert_eq!(s.metrics, None);
    }

    #[test]
    fn an_exporter_set_to_none_turns_its_signal_off() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .unwrap();
        assert_eq!(s.traces, Some(Protocol::Grpc));
        assert_eq!(s.metrics, None);
    }

    #[test]
    fn the_sdk_disabled_switch_turns_everything_off() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert_eq!(s, ExportSettings::default());
    }

    #[test]
    fn unsupported_values_are_refused_naming_the_variable() {
        let err = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\""),
            "{err}"
        );
        assert!(err.contains("grpc or http/protobuf"), "{err}");
        let err = settings(&[("OTEL_TRACES_EXPORTER", "zipkin")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTEL_TRACES_EXPORTER=\"zipkin\""), "{err}");
    }
}
