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

#[test]
fn every_route_is_described() {
    let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/entries",
        "/v1/tasks/{task_id}/projects/{project_key}/sessions",
        "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}",
        "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/subkeys",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} missing from the OpenAPI document"
        );
    }
}
