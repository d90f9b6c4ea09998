//! The OpenAPI document, built from the handlers' annotations.

use utoipa::OpenApi;

use super::{admin, bindings, entries, error, health, sessions};

/// The gateway's API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "transcript-gateway",
        description = "Durable, portable Claude Agent SDK session transcripts over HTTP."
    ),
    paths(
        entries::append,
        entries::load,
        sessions::list_sessions,
        sessions::delete_session,
        sessions::list_subkeys,
        sessions::get_summary,
        sessions::put_summary,
        bindings::put_binding,
        bindings::get_binding,
        bindings::lease,
        admin::compact_task,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(schemas(error::ErrorEnvelope, error::ErrorBody, crate::error::ErrorCode)),
    tags(
        (name = "transcripts", description = "The SessionStore operations"),
        (name = "tasks", description = "Task bindings and writer leases, for cross-worker resume"),
        (name = "admin", description = "Operator endpoints"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON, as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
