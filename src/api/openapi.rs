//! The OpenAPI document. Its paths come from [`super::routes`], the same
//! list the router is built from; [`ApiDoc`] adds what no route carries (the
//! title, the shared schemas, the tags) and [`finish`] the security scheme.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::{error, paths};

/// What the document says besides its paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "transcript-gateway",
        description = "Durable, portable Claude Agent SDK session transcripts over HTTP."
    ),
    components(schemas(error::ErrorEnvelope, error::ErrorBody, crate::error::ErrorCode)),
    tags(
        (name = "transcripts", description = "The SessionStore operations"),
        (name = "tasks", description = "Task bindings and writer leases, for cross-worker resume"),
        (name = "admin", description = "Operator endpoints"),
        (name = "operations", description = "Health, readiness and metrics"),
        (name = "dashboard", description = "The operators' web page and its static files (no token needed to load them; the page asks for one)"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme and marks every `/v1` and `/admin` route
/// (but the dashboard's page and files) with it and with its 401 and 403
/// answers (checked by [`crate::auth`]), and a 400 where none is described.
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

/// The operations of a path, each with whether it only reads (GET, HEAD).
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&mut Operation, bool)> {
    [
        (&mut item.get, true),
        (&mut item.head, true),
        (&mut item.put, false),
        (&mut item.post, false),
        (&mut item.delete, false),
        (&mut item.patch, false),
    ]
    .into_iter()
    .filter_map(|(op, read)| op.as_mut().map(|op| (op, read)))
}

fn protect(operation: &mut Operation, scope: &str) {
    operation.security = Some(vec![SecurityRequirement::new(SCHEME, [scope])]);
    let answers = &mut operation.responses.responses;
    // The guard validates the path's task id before the handler runs.
    answers.entry("400".into()).or_insert_with(|| {
        error_response("`invalid_request`: a path parameter, query parameter or body is malformed")
    });
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
            let admin = path.starts_with("/admin") && !paths::is_dashboard(path);
            if !admin && !path.starts_with("/v1") {
                continue;
            }
            for (op, read) in operations(item) {
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

/// The answers the layers in front of every handler can give (see
/// [`super::router`]), added to each operation that does not describe its own.
fn layer_answers(openapi: &mut utoipa::openapi::OpenApi) {
    let answers = [
        (
            "431",
            "`headers_too_large`: the request target and headers exceed the limit",
        ),
        (
            "500",
            "`internal`: a bug; the response's request id finds it in the logs",
        ),
        (
            "503",
            "`overloaded` (too many requests in flight), `draining` (the instance is \
             shutting down: retry, another instance answers), each with `Retry-After`, \
             or `backend_unavailable`",
        ),
        (
            "504",
            "`timeout`: no response started within the request timeout",
        ),
    ];
    for item in openapi.paths.paths.values_mut() {
        for (op, _) in operations(item) {
            for (code, description) in answers {
                op.responses
                    .responses
                    .entry(code.into())
                    .or_insert_with(|| error_response(description));
            }
            if op.request_body.is_some() {
                op.responses
                    .responses
                    .entry("413".into())
                    .or_insert_with(|| {
                        error_response("`payload_too_large`: the body exceeds the limit")
                    });
            }
        }
    }
}

/// The described routes completed with [`ApiDoc`], the bearer scheme and
/// the answers every route can give.
pub fn finish(described: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(described);
    BearerTokens.modify(&mut doc);
    layer_answers(&mut doc);
    doc
}

/// The whole document, as served at [`paths::OPENAPI`].
pub fn document() -> utoipa::openapi::OpenApi {
    finish(super::routes().into_openapi())
}

/// The document as pretty JSON, as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}
