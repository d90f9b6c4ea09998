//! Observability of a real gateway process: the spans and metrics it sends
//! to an OTLP receiver running in this test (gRPC and HTTP/protobuf), the
//! `traceparent` it continues, the mirror-failure counter when its S3 goes
//! away, the flush on SIGTERM, silence when no endpoint is set, and one
//! JSON log line per request that never carries a transcript's contents.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message as _;
use serde_json::{json, Value};

use crate::common::{free_port, fresh_id, ChildGateway, PrivateEmulator, Session};

/// What the receiver got, decoded.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

/// An OTLP receiver on loopback; `endpoint` is what `OTEL_EXPORTER_OTLP_ENDPOINT` takes.
#[derive(Clone)]
struct Receiver {
    endpoint: String,
    got: Arc<Mutex<Received>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.got.lock().unwrap().traces.push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.got.lock().unwrap().metrics.push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Receiver {
    /// OTLP/gRPC on a free loopback port.
    async fn grpc() -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let receiver = Self {
            endpoint: format!("http://{addr}"),
            got: Arc::default(),
        };
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver.clone()))
            .serve(addr);
        tokio::spawn(server);
        wait_listening(addr).await;
        receiver
    }

    /// OTLP/HTTP with protobuf bodies on a free loopback port.
    async fn http() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Self {
            endpoint: format!("http://{addr}"),
            got: Arc::default(),
        };
        let traces = receiver.got.clone();
        let metrics = receiver.got.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: bytes::Bytes| async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    traces.lock().unwrap().traces.push(req);
                    protobuf_ok()
                }),
            )
            .route(
                "/v1/metrics",
                axum::routing::post(move |body: bytes::Bytes| async move {
                    let req = ExportMetricsServiceRequest::decode(body).unwrap();
                    metrics.lock().unwrap().metrics.push(req);
                    protobuf_ok()
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    /// The environment pointing a gateway at this receiver over `protocol`,
    /// exporting quickly.
    fn env(&self, protocol: &str) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500".to_string()),
            ("OTEL_SERVICE_NAME", "tg-under-test".to_string()),
        ]
    }

    fn spans(&self) -> Vec<SpanRecord> {
        let got = self.got.lock().unwrap();
        let mut out = Vec::new();
        for req in &got.traces {
            for rs in &req.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map(|r| attributes(&r.attributes))
                    .unwrap_or_default();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(SpanRecord {
                            trace_id: hex::encode(&s.trace_id),
                            span_id: hex::encode(&s.span_id),
                            parent: hex::encode(&s.parent_span_id),
                            name: s.name.clone(),
                            kind: s.kind,
                            attributes: attributes(&s.attributes),
                            events: s.events.iter().map(|e| e.name.clone()).collect(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every data point of the latest export that has `name`.
    fn points(&self, name: &str) -> Vec<Point> {
        let got = self.got.lock().unwrap();
        for req in got.metrics.iter().rev() {
            let points = metric_points(req, Some(name));
            if !points.is_empty() {
                return points;
            }
        }
        Vec::new()
    }

    /// Every data point of every export.
    fn all_points(&self) -> Vec<Point> {
        let got = self.got.lock().unwrap();
        got.metrics
            .iter()
            .flat_map(|r| metric_points(r, None))
            .collect()
    }

    /// Everything received, as text, to search for what must not be there.
    fn dump(&self) -> String {
        let got = self.got.lock().unwrap();
        format!("{:?}{:?}", got.traces, got.metrics)
    }

    /// Waits (at most `limit`) until `check` holds of what was received.
    async fn wait_for(&self, limit: Duration, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{what}: not received within {limit:?}; spans: {:#?}",
            self.spans()
        );
    }
}

fn protobuf_ok() -> impl axum::response::IntoResponse {
    (
        [("content-type", "application/x-protobuf")],
        Vec::<u8>::new(),
    )
}

async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the OTLP receiver did not listen on {addr}");
}

#[derive(Clone, Debug)]
#[allow(dead_code)] // Read through Debug when an assertion fails.
struct SpanRecord {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
    events: Vec<String>,
    resource: BTreeMap<String, String>,
}

/// The span called `name`, or a failure listing them all.
fn named<'a>(spans: &'a [SpanRecord], name: &str) -> &'a SpanRecord {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {spans:#?}"))
}

/// OTLP span kinds.
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;

#[derive(Clone, Debug)]
struct Point {
    metric: String,
    unit: String,
    attributes: BTreeMap<String, String>,
    /// A sum's or gauge's value, a histogram's count.
    value: f64,
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn metric_points(req: &ExportMetricsServiceRequest, only: Option<&str>) -> Vec<Point> {
    let mut out = Vec::new();
    let number = |v: &Option<number_data_point::Value>| match v {
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        Some(number_data_point::Value::AsDouble(d)) => *d,
        None => f64::NAN,
    };
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in sm
                .metrics
                .iter()
                .filter(|m| only.is_none_or(|n| m.name == n))
            {
                let point = |attrs: &[KeyValue], value: f64| Point {
                    metric: m.name.clone(),
                    unit: m.unit.clone(),
                    attributes: attributes(attrs),
                    value,
                };
                match &m.data {
                    Some(metric::Data::Sum(s)) => out.extend(
                        s.data_points
                            .iter()
                            .map(|p| point(&p.attributes, number(&p.value))),
                    ),
                    Some(metric::Data::Gauge(g)) => out.extend(
                        g.data_points
                            .iter()
                            .map(|p| point(&p.attributes, number(&p.value))),
                    ),
                    Some(metric::Data::Histogram(h)) => out.extend(
                        h.data_points
                            .iter()
                            .map(|p| point(&p.attributes, p.count as f64)),
                    ),
                    _ => {}
                }
            }
        }
    }
    out
}

/// A gateway on the S3 at `endpoint` with the embedded catalog and `extra`
/// settings (where to export).
async fn gateway_on_s3(
    data: &std::path::Path,
    endpoint: &str,
    bucket: &str,
    extra: &[(&'static str, String)],
) -> ChildGateway {
    let prefix = fresh_id("otel");
    let mut env: Vec<(&str, String)> = vec![
        ("TG_STORAGE", "s3".into()),
        ("TG_S3_ENDPOINT_URL", endpoint.into()),
        ("TG_S3_BUCKET", bucket.into()),
        ("TG_S3_FORCE_PATH_STYLE", "true".into()),
        ("TG_S3_PREFIX", prefix),
        ("TG_LOG", "info".into()),
        // A stopped emulator answers nothing: fail fast, not after minutes.
        ("TG_AWS_MAX_ATTEMPTS", "2".into()),
        ("TG_AWS_ATTEMPT_TIMEOUT_MS", "2000".into()),
        ("TG_AWS_OPERATION_TIMEOUT_MS", "5000".into()),
    ];
    env.extend(extra.iter().cloned());
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ChildGateway::start(data, &borrowed).await
}

/// A receiver over `protocol` (`grpc` or `http/protobuf`) and a gateway on
/// the shared S3 exporting to it; `None` after saying why without S3.
async fn exporting_on_shared_s3(
    test: &str,
    protocol: &str,
) -> Option<(Receiver, ChildGateway, tempfile::TempDir)> {
    let (endpoint, bucket) = crate::s3::s3_target(test)?;
    let receiver = match protocol {
        "grpc" => Receiver::grpc().await,
        _ => Receiver::http().await,
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gw = gateway_on_s3(&data, &endpoint, &bucket, &receiver.env(protocol)).await;
    Some((receiver, gw, dir))
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn an_append_on_s3_continues_the_incoming_trace_through_engine_and_s3_spans() {
    let Some((receiver, gw, _dir)) = exporting_on_shared_s3("otel span tree", "grpc").await else {
        return;
    };
    let s = Session::fresh();
    let http = reqwest::Client::new();
    let resp = http
        .post(s.entries(&gw.base_url))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&json!({"entries": [{"type": "user", "uuid": fresh_id("u")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let traceresponse = resp.headers()["traceresponse"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        traceresponse.starts_with(&format!("00-{TRACE_ID}-")) && traceresponse.ends_with("-01"),
        "the response names the gateway's span in the caller's trace: {traceresponse}"
    );

    let route = "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/entries";
    let server_name = format!("POST {route}");
    receiver
        .wait_for(Duration::from_secs(15), "the append's S3 span", |r| {
            r.spans()
                .iter()
                .any(|s| s.trace_id == TRACE_ID && s.name == "S3.PutObject")
        })
        .await;
    let spans: Vec<SpanRecord> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id == TRACE_ID)
        .collect();
    let server = named(&spans, &server_name);
    assert_eq!(server.parent, PARENT_ID, "the incoming span is the parent");
    assert_eq!(server.kind, KIND_SERVER);
    assert_eq!(server.attributes["http.request.method"], "POST");
    assert_eq!(server.attributes["http.route"], route);
    assert_eq!(server.attributes["http.response.status_code"], "200");
    assert_eq!(server.resource["service.name"], "tg-under-test");
    assert_eq!(
        traceresponse,
        format!("00-{TRACE_ID}-{}-01", server.span_id),
        "traceresponse names the server span"
    );
    let engine = named(&spans, "engine.append");
    assert_eq!(
        engine.parent, server.span_id,
        "engine.append is under the server span"
    );
    let put = named(&spans, "S3.PutObject");
    assert_eq!(
        put.parent, engine.span_id,
        "the S3 call is under engine.append"
    );
    assert_eq!(put.kind, KIND_CLIENT);
    assert_eq!(put.attributes["rpc.system"], "aws-api");
    assert_eq!(put.attributes["rpc.service"], "S3");
    assert_eq!(put.attributes["rpc.method"], "PutObject");
    assert_eq!(put.attributes["http.response.status_code"], "200");

    // A load is traced the same way, its reads under engine.load.
    let resp = http.get(s.entries(&gw.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    receiver
        .wait_for(Duration::from_secs(15), "the load's spans", |r| {
            let spans = r.spans();
            let load = spans.iter().find(|s| s.name == "engine.load");
            load.is_some_and(|l| {
                spans
                    .iter()
                    .any(|s| s.name == "S3.GetObject" && s.parent == l.span_id)
            })
        })
        .await;
    gw.terminate();
}

#[tokio::test]
async fn the_metric_set_arrives_over_http_protobuf_with_only_the_allowed_attributes() {
    let Some((receiver, gw, _dir)) =
        exporting_on_shared_s3("otel metric set", "http/protobuf").await
    else {
        return;
    };
    let s = Session::fresh();
    let http = reqwest::Client::new();
    for i in 0..3 {
        let resp = http
            .post(s.entries(&gw.base_url))
            .json(&json!({"entries": [{"type": "user", "n": i}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = http.get(s.entries(&gw.base_url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();

    receiver
        .wait_for(Duration::from_secs(15), "three appends and a load", |r| {
            r.points("tg.append.duration")
                .iter()
                .any(|p| p.value >= 3.0)
                && r.points("tg.load.duration").iter().any(|p| p.value >= 1.0)
        })
        .await;
    let expected = [
        ("tg.append.duration", "s"),
        ("tg.load.duration", "s"),
        ("tg.append.bytes", "By"),
        ("tg.append.entries", "{entry}"),
        ("tg.load.parts", "{part}"),
        ("tg.part.conflicts", ""),
        ("tg.backend.retries", ""),
        ("tg.checksum.mismatches", ""),
        ("tg.compactions", ""),
        ("tg.requests.in_flight", ""),
        ("tg.stream.readers", ""),
        ("tg.mirror.failures", ""),
        ("tg.catalog.repair.backlog", ""),
        ("tg.project_key.drift", ""),
        ("tg.ready", ""),
    ];
    let points = receiver.all_points();
    for (name, unit) in expected {
        let found: Vec<&Point> = points.iter().filter(|p| p.metric == name).collect();
        assert!(!found.is_empty(), "{name} was not exported");
        assert!(
            found.iter().all(|p| p.unit == unit),
            "{name} unit: {found:?}"
        );
    }
    let allowed = ["reason", "outcome", "backend"];
    for p in &points {
        for key in p.attributes.keys() {
            assert!(
                allowed.contains(&key.as_str()),
                "{} carries attribute {key}: only {allowed:?} are allowed",
                p.metric
            );
        }
    }
    let appends = receiver.points("tg.append.entries");
    assert!(appends.iter().any(|p| p.value >= 3.0), "{appends:?}");
    let reasons: Vec<String> = receiver
        .points("tg.mirror.failures")
        .iter()
        .filter_map(|p| p.attributes.get("reason").cloned())
        .collect();
    for reason in [
        "backend_unavailable",
        "timeout",
        "checksum",
        "conflict_exhausted",
        "catalog",
        "client_reported",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "reason {reason} reported from zero: {reasons:?}"
        );
    }
    gw.terminate();
}

#[tokio::test]
async fn stopping_s3_raises_the_mirror_failure_counter_with_its_reason_within_20_s() {
    let Some(emu) = PrivateEmulator::start("otel mirror failure on S3 outage") else {
        return;
    };
    let receiver = Receiver::grpc().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_on_s3(
        &dir.path().join("data"),
        &emu.endpoint,
        &emu.bucket,
        &receiver.env("grpc"),
    )
    .await;
    let s = Session::fresh();
    let http = reqwest::Client::new();
    let append = |n: u32| {
        http.post(s.entries(&gw.base_url))
            .json(&json!({"entries": [{"type": "user", "n": n}]}))
            .send()
    };
    assert_eq!(append(0).await.unwrap().status(), 200);
    let failures = |r: &Receiver| {
        r.points("tg.mirror.failures")
            .iter()
            .filter(|p| {
                p.attributes.get("reason").map(String::as_str) == Some("backend_unavailable")
            })
            .map(|p| p.value)
            .sum::<f64>()
    };
    receiver
        .wait_for(Duration::from_secs(10), "a first metric export", |r| {
            !r.points("tg.mirror.failures").is_empty()
        })
        .await;
    assert_eq!(failures(&receiver), 0.0, "no failure before the outage");

    emu.run("stop-s3", &[]);
    let stopped = Instant::now();
    let resp = append(1).await.unwrap();
    assert_eq!(resp.status(), 503, "an append during the outage fails");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "backend_unavailable");
    receiver
        .wait_for(
            Duration::from_secs(20),
            "tg.mirror.failures{reason=backend_unavailable}",
            |r| failures(r) >= 1.0,
        )
        .await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "seen {took:?} after the stop"
    );
    eprintln!("mirror failure exported {took:?} after S3 stopped");
    // The SDK retried the refused connection: counted, and an event on the call's span.
    receiver
        .wait_for(
            Duration::from_secs(10),
            "tg.backend.retries{backend=s3}",
            |r| {
                r.points("tg.backend.retries").iter().any(|p| {
                    p.attributes.get("backend").map(String::as_str) == Some("s3") && p.value >= 1.0
                })
            },
        )
        .await;
    receiver
        .wait_for(
            Duration::from_secs(10),
            "a retry event on an S3 span",
            |r| {
                r.spans().iter().any(|s| {
                    s.name.starts_with("S3.")
                        && s.events
                            .iter()
                            .any(|e| e == "retrying after a failed attempt")
                })
            },
        )
        .await;
    gw.terminate();
}

#[tokio::test]
async fn sigterm_flushes_pending_spans_and_a_last_metric_export() {
    let receiver = Receiver::grpc().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = receiver.env("grpc");
    // Nothing would be sent for a minute: only the exit flush sends it.
    env.retain(|(k, _)| !k.starts_with("OTEL_BSP") && !k.starts_with("OTEL_METRIC"));
    env.push(("OTEL_BSP_SCHEDULE_DELAY", "60000".into()));
    env.push(("OTEL_METRIC_EXPORT_INTERVAL", "60000".into()));
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = ChildGateway::start(&dir.path().join("data"), &borrowed).await;
    let s = Session::fresh();
    let resp = reqwest::Client::new()
        .post(s.entries(&gw.base_url))
        .json(&json!({"entries": [{"type": "user"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.spans().is_empty(),
        "nothing is sent before the exit"
    );
    let asked = Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    let took = asked.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(12), "exit took {took:?}");
    let spans = receiver.spans();
    assert!(
        spans.iter().any(|s| s.name == "engine.append"),
        "the append's spans were flushed: {spans:#?}"
    );
    let appends = receiver.points("tg.appends");
    assert!(
        appends.iter().any(|p| p.value >= 1.0),
        "a last metric export carried the append: {appends:?}"
    );
}

#[tokio::test]
async fn with_no_endpoint_nothing_is_exported_and_nothing_is_logged_about_exporting() {
    // A receiver on the default OTLP ports would see any attempt.
    let defaults = ["127.0.0.1:4317", "127.0.0.1:4318"];
    let mut listeners = Vec::new();
    for addr in defaults {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => panic!("the default OTLP port {addr} is taken ({e}); this test needs it"),
        }
    }
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for listener in listeners {
        let connections = connections.clone();
        tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TG_LOG", "debug"),
        // Everything but an endpoint.
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_SERVICE_NAME", "quiet"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let gw = ChildGateway::start(&dir.path().join("data"), &env).await;
    let s = Session::fresh();
    let http = reqwest::Client::new();
    let resp = http
        .post(s.entries(&gw.base_url))
        .json(&json!({"entries": [{"type": "user"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("traceresponse"),
        "no trace, no traceresponse"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let log_path = gw.log.clone();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "something connected to a default OTLP port"
    );
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(
        log.contains("\"message\":\"request\""),
        "the log was written: {log}"
    );
    for line in log.lines() {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("otlp")
                && !lower.contains("export")
                && !lower.contains("opentelemetry"),
            "a line about exporting: {line}"
        );
    }
}

#[tokio::test]
async fn each_request_logs_one_json_line_and_no_contents_reach_logs_or_telemetry() {
    let Some((receiver, gw, _dir)) = exporting_on_shared_s3("otel log lines", "grpc").await else {
        return;
    };
    let marker = fresh_id("secret-marker");
    let s = Session::fresh();
    let http = reqwest::Client::new();
    let resp = http
        .post(s.entries(&gw.base_url))
        .header("authorization", format!("Bearer {marker}-token"))
        .json(&json!({
            "entries": [{"type": "user", "uuid": fresh_id("u"), "message": {"content": marker}}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let resp = http.get(s.entries(&gw.base_url)).send().await.unwrap();
    assert!(
        resp.text().await.unwrap().contains(&marker),
        "the entry was stored"
    );
    // A refused append whose body holds the marker.
    let resp = http
        .post(s.entries(&gw.base_url))
        .json(&json!({"entries": [{"type": "user", "x": marker}], "unexpected": marker}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let refusal = resp.text().await.unwrap();
    assert!(
        !refusal.contains(&marker),
        "the refusal repeats the body: {refusal}"
    );
    receiver
        .wait_for(Duration::from_secs(15), "the append's spans", |r| {
            r.spans().iter().any(|s| s.name == "S3.GetObject")
        })
        .await;
    let log_path = gw.log.clone();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .unwrap();
    assert!(status.success());

    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(!log.contains(&marker), "the marker reached the log:\n{log}");
    assert!(
        !receiver.dump().contains(&marker),
        "the marker reached the exported telemetry"
    );
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let mine: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request" && l["request_id"] == request_id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "one line for the request: {lines:#?}");
    let line = mine[0];
    for key in ["timestamp", "level", "message", "target"] {
        assert!(line.get(key).is_some(), "top-level {key}: {line}");
    }
    assert_eq!(line["method"], "POST");
    assert_eq!(
        line["route"],
        "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/entries"
    );
    assert_eq!(line["status"], 200);
    assert_eq!(line["task_id"], s.task.as_str());
    assert!(
        line["latency_ms"].as_f64().is_some_and(|l| l > 0.0),
        "{line}"
    );
    assert!(line["bytes"].as_u64().is_some_and(|b| b > 0), "{line}");
}

#[test]
fn an_unsupported_otlp_protocol_stops_the_gateway_at_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, _out, err) = crate::common::run_binary(
        &[
            "serve",
            "--insecure-no-auth",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/json\" is not supported (grpc or http/protobuf)"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_sampler_variable_is_honoured_always_off_exports_metrics_but_no_spans() {
    let receiver = Receiver::grpc().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = receiver.env("grpc");
    env.push(("OTEL_TRACES_SAMPLER", "always_off".into()));
    env.push((
        "OTEL_RESOURCE_ATTRIBUTES",
        "deployment.environment=test".into(),
    ));
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = ChildGateway::start(&dir.path().join("data"), &borrowed).await;
    let s = Session::fresh();
    let resp = reqwest::Client::new()
        .post(s.entries(&gw.base_url))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .json(&json!({"entries": [{"type": "user"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    receiver
        .wait_for(Duration::from_secs(10), "the append's metrics", |r| {
            r.points("tg.appends").iter().any(|p| p.value >= 1.0)
        })
        .await;
    // Well past the 100 ms batch delay: a sampled span would be here by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.spans().is_empty(), "always_off exported spans");
    let resource = {
        let got = receiver.got.lock().unwrap();
        got.metrics[0].resource_metrics[0]
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default()
    };
    assert_eq!(resource["deployment.environment"], "test");
    assert_eq!(resource["service.name"], "tg-under-test");
    gw.terminate();
}
