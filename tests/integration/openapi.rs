//! `openapi/openapi.json` is generated from the code and must not drift.

use transcript_gateway::api::openapi::openapi_json;

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
        "openapi/openapi.json is out of date; regenerate with `scripts/openapi` \
         (or TG_TEST_UPDATE_OPENAPI=1 cargo test openapi)"
    );
}

/// Every `.route(` in the HTTP layer names its path by a constant of
/// `api::paths`, so `paths::ALL` is the whole router's list of paths.
#[test]
fn every_route_names_its_path_by_a_constant() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut routes = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (at, _) in text.match_indices(".route(") {
            routes += 1;
            let arg = text[at + ".route(".len()..].trim_start();
            assert!(
                arg.starts_with("paths::"),
                "{}: a route whose path is not an api::paths constant",
                path.display()
            );
        }
    }
    assert!(routes >= 10, "found the routes ({routes})");
}

/// Walks the router: every path of `paths::ALL` with every method. What it
/// answers (anything but 404 `no_such_route` or 405) is exactly what the
/// OpenAPI document describes, besides the document and its viewer.
#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_router_serves() {
    use std::collections::BTreeSet;
    use transcript_gateway::api::paths;

    let gw = crate::common::TestGateway::embedded().await;
    let mut served = BTreeSet::new();
    for path in paths::ALL {
        let url = path
            .replace("{task_id}", "t-walk")
            .replace("{project_key}", "-walk")
            .replace("{session_id}", "s-walk");
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            let resp = gw
                .http
                .request(method.parse().unwrap(), gw.url(&url))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            let unrouted = status == 405 || (status == 404 && body.contains("no_such_route"));
            if !unrouted {
                served.insert((path.to_string(), method.to_ascii_lowercase()));
            }
        }
    }
    let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (path.clone(), m.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = served
        .into_iter()
        .filter(|(p, _)| p != paths::OPENAPI && p != paths::DOCS)
        .collect();
    assert!(served.len() >= 15, "walked the router: {served:?}");
    assert_eq!(
        served, described,
        "the router and openapi/openapi.json disagree"
    );
    gw.stop().await;
}
