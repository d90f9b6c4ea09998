//! The OpenAPI document cannot drift from the router: both are built from one
//! list (`api::routes()`, each route registered from its handler's
//! `#[utoipa::path]`), nothing registers a route any other way, the gateway
//! answers exactly the described methods on every described path, and
//! `openapi/openapi.json` is the generated document. Swagger UI at `/docs`
//! needs no network.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use transcript_gateway::api::openapi::openapi_json;
use transcript_gateway::api::paths;

const REGENERATE: &str =
    "TG_TEST_UPDATE_OPENAPI=1 cargo test --features failpoints,conformance --test integration openapi";

/// Routes served outside the document, each with the reason.
const UNDESCRIBED: &[(&str, &str)] = &[
    (paths::OPENAPI, "the document itself"),
    (
        paths::DOCS,
        "Swagger UI, the document's viewer (its files live under /docs/)",
    ),
];

fn document() -> Value {
    serde_json::from_str(&openapi_json()).expect("the document is JSON")
}

#[test]
fn committed_openapi_document_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    let generated = openapi_json();
    if std::env::var("TG_TEST_UPDATE_OPENAPI").is_ok() {
        std::fs::write(path, &generated).expect("write openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date; regenerate it with `{REGENERATE}` \
         (or `scripts/openapi`)"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The router is `api::routes()` (every route from `utoipa_axum::routes!`,
/// so described by construction) plus the document and its viewer. A route
/// registered any other way would serve undescribed: none may be.
#[test]
fn every_route_is_registered_from_its_description() {
    let mut files = Vec::new();
    rust_files(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut files,
    );
    let mut handlers = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        for raw in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".fallback_service(",
        ] {
            assert!(
                !text.contains(raw),
                "{}: registers a route with `{raw}`, outside the described routes: \
                 use `.routes(routes!(handler))` with a #[utoipa::path] on the handler",
                file.display()
            );
        }
        for (at, _) in text.match_indices("#[utoipa::path(") {
            handlers += 1;
            let attr = &text[at..];
            let attr = &attr[..attr.find(")]").unwrap_or(attr.len())];
            assert!(
                attr.contains("path = paths::"),
                "{}: a #[utoipa::path] whose path is not an api::paths constant",
                file.display()
            );
        }
    }
    assert!(handlers >= 18, "found the described handlers ({handlers})");
}

fn concrete(template: &str) -> String {
    template
        .replace("{task_id}", "t-walk")
        .replace("{project_key}", "-walk")
        .replace("{session_id}", "s-walk")
        .replace("{file}", "app.js")
}

/// Walks the gateway: on every described path, every method. The described
/// ones are served (anything but 404 `no_such_route` or 405), the others are
/// 405, and the routes outside the document are the listed ones.
#[tokio::test]
async fn the_gateway_serves_exactly_the_described_methods_on_every_described_path() {
    let gw = crate::common::TestGateway::embedded().await;
    let doc = document();
    let mut described = BTreeSet::new();
    let mut served = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        assert!(
            !path.contains(':') && path.starts_with('/'),
            "{path}: a path template"
        );
        for method in ops.as_object().expect("item").keys() {
            described.insert((path.clone(), method.clone()));
        }
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"] {
            let resp = gw
                .http
                .request(method.parse().unwrap(), gw.url(&concrete(path)))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            let unrouted = status == 405 || (status == 404 && body.contains("no_such_route"));
            // HEAD is answered wherever GET is (axum), and described with it.
            if !unrouted && method != "HEAD" {
                served.insert((path.clone(), method.to_ascii_lowercase()));
            }
        }
    }
    assert!(described.len() >= 19, "walked the document: {described:?}");
    assert_eq!(
        served, described,
        "the router and the OpenAPI document disagree"
    );
    for (path, why) in UNDESCRIBED {
        assert!(
            !described.iter().any(|(p, _)| p == path),
            "{path} ({why}) is described after all: drop it from UNDESCRIBED"
        );
        let resp = gw.http.get(gw.url(path)).send().await.unwrap();
        assert!(
            resp.status().is_success() || resp.status().is_redirection(),
            "{path} ({why}): {}",
            resp.status()
        );
    }
    // What /openapi.json serves is the committed document's source.
    let served_doc: Value = gw
        .http
        .get(gw.url(paths::OPENAPI))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served_doc, doc, "/openapi.json serves another document");
    gw.stop().await;
}

/// Every operation carries a tag, a summary, an id, described parameters and
/// responses, the answers of the layers in front of it, error answers in the
/// envelope, and the bearer scheme exactly
/// where the gateway asks for a token; the main request bodies have examples.
#[test]
fn every_operation_is_fully_described() {
    let doc = document();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("item") {
            let at = format!("{method} {path}");
            let op_tags = op["tags"].as_array().map(Vec::len).unwrap_or(0);
            assert!(op_tags >= 1, "{at}: no tag");
            for t in op["tags"].as_array().into_iter().flatten() {
                assert!(
                    tags.contains(t.as_str().unwrap_or("")),
                    "{at}: tag {t} undeclared"
                );
            }
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: no summary"
            );
            assert!(op["operationId"].is_string(), "{at}: no operationId");
            for param in op["parameters"].as_array().into_iter().flatten() {
                assert!(
                    param["description"].as_str().is_some_and(|s| !s.is_empty()),
                    "{at}: parameter {} undescribed",
                    param["name"]
                );
            }
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                assert!(
                    op["parameters"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{at}: path parameter {name} undescribed"
                );
            }
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{at}: no success answer"
            );
            // The layers in front of every handler can answer these anywhere.
            for code in ["431", "500", "503", "504"] {
                assert!(responses.contains_key(code), "{at}: no {code} answer");
            }
            for (code, resp) in responses {
                assert!(
                    resp["description"].as_str().is_some_and(|s| !s.is_empty()),
                    "{at}: answer {code} undescribed"
                );
            }
            let protected = (path.starts_with("/v1") || path.starts_with("/admin"))
                && !paths::is_dashboard(path);
            assert_eq!(
                op["security"].is_array(),
                protected,
                "{at}: the bearer scheme must be on exactly the routes that need a token"
            );
            if protected {
                for code in ["400", "401", "403"] {
                    let schema = &responses
                        .get(code)
                        .unwrap_or_else(|| panic!("{at}: no {code} answer"))["content"]
                        ["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorEnvelope",
                        "{at}: {code} is not the error envelope"
                    );
                }
            }
            if let Some(body) = op.get("requestBody") {
                let content = &body["content"]["application/json"];
                let schema = content["schema"]["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or("");
                let component = &doc["components"]["schemas"][schema];
                let example = ["example", "examples"]
                    .iter()
                    .any(|k| content.get(k).is_some() || component.get(k).is_some());
                assert!(example, "{at}: the request body has no example");
            }
        }
    }
}

/// The attribute values (`src=`, `href=`) of `html`.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (at, _) in html.match_indices(attr) {
            let rest = &html[at + attr.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

/// Swagger UI is served from the binary: the page, every script and
/// stylesheet it names and the initializer's document URL all come from the
/// gateway, and nothing points to another host.
#[tokio::test]
async fn swagger_ui_loads_everything_from_the_gateway_itself() {
    let gw = crate::common::TestGateway::embedded().await;
    let base = format!("{}/", gw.url(paths::DOCS));
    let page = gw.http.get(&base).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    let refs = references(&html);
    assert!(
        refs.iter().any(|r| r.ends_with(".js")) && refs.iter().any(|r| r.ends_with(".css")),
        "the page names its scripts and stylesheets: {refs:?}"
    );
    let mut fetched = 0;
    for r in &refs {
        assert!(
            !r.contains("//"),
            "{r}: Swagger UI names another host, it would need the network"
        );
        let url = reqwest::Url::parse(&base).unwrap().join(r).unwrap();
        assert!(url.as_str().starts_with(&gw.base_url), "{url}");
        let resp = gw.http.get(url.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        let body = resp.text().await.unwrap_or_default();
        if r.contains("initializer") {
            assert!(
                body.contains(paths::OPENAPI),
                "{r} loads our document: {body}"
            );
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{r} names another host: {body}"
            );
            let compact: String = body.split_whitespace().collect();
            assert!(
                compact.contains("\"validatorUrl\":\"none\""),
                "{r}: the validator badge would call another host: {body}"
            );
        }
        fetched += 1;
    }
    assert!(fetched >= 4, "fetched every file of the page: {refs:?}");
    gw.stop().await;
}
