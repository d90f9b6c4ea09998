//! The OpenAPI document, built from the handlers' annotations.

use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{admin, bindings, entries, error, failures, health, sessions, stream};

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
        stream::read,
        sessions::list_sessions,
        sessions::delete_session,
        sessions::list_subkeys,
        sessions::get_summary,
        sessions::put_summary,
        bindings::put_binding,
        bindings::get_binding,
        bindings::lease,
        failures::report,
        admin::compact_task,
        admin::export_task,
        admin::list_failures,
        admin::list_tasks,
        admin::get_task,
        admin::erase_task,
        admin::stats,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(schemas(error::ErrorEnvelope, error::ErrorBody, crate::error::ErrorCode)),
    modifiers(&BearerTokens),
    tags(
        (name = "transcripts", description = "The SessionStore operations"),
        (name = "tasks", description = "Task bindings and writer leases, for cross-worker resume"),
        (name = "admin", description = "Operator endpoints"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme and marks every `/v1` and `/admin` route
/// with it and with its 401 and 403 answers (checked by [`crate::auth`]).
struct BearerTokens;

const SCHEME: &str = "bearer";

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let content = Content::new(Some(Ref::from_schema_name("ErrorEnvelope")));
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", content)
            .build(),
    )
}

fn protect(operation: &mut Operation, scope: &str) {
    operation.security = Some(vec![SecurityRequirement::new(SCHEME, [scope])]);
    let answers = &mut operation.responses.responses;
    answers.insert(
        "401".into(),
        error_response(
            "`unauthorized`: no bearer token, or one that is malformed, expired or wrongly signed",
        ),
    );
    answers.insert(
        "403".into(),
        error_response(&format!(
            "`forbidden`: the token is for another task or lacks `{scope}`"
        )),
    );
}

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with claims `task_id` (a task or `*`) and `scope` \
                         (`transcripts:read`, `transcripts:write`, `admin`); \
                         mint one with `transcript-gateway token mint`.",
                    ))
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            let admin = path.starts_with("/admin");
            if !admin && !path.starts_with("/v1") {
                continue;
            }
            for (operation, read) in [
                (&mut item.get, true),
                (&mut item.head, true),
                (&mut item.put, false),
                (&mut item.post, false),
                (&mut item.delete, false),
                (&mut item.patch, false),
            ] {
                if let Some(op) = operation.as_mut() {
                    let scope = match (admin, read) {
                        (true, _) => "admin",
                        (false, true) => "transcripts:read",
                        (false, false) => "transcripts:write",
                    };
                    protect(op, scope);
                }
            }
        }
    }
}

/// The document as pretty JSON, as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
