//! The operators' dashboard: one static page at `/admin` and its files under
//! `/admin/assets/`, compiled into the binary (no CDN, no build step). Both
//! load without a token; the page asks the operator for an admin token and
//! sends it itself on every `/admin/v1` and `/v1` call it makes. The files
//! live in `src/api/dashboard/`; the vendored Durable Streams client there is
//! refreshed by `scripts/vendor-dashboard.sh`.
//!
//! What this module does not own: any data. The page reads only the public
//! HTTP API, with the token the operator gives it.

use std::sync::OnceLock;

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{paths, AppState};
use crate::error::Error;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(asset))
}

/// One embedded file.
struct Asset {
    /// Its name under `/admin/assets/` (`None` for the page itself).
    name: Option<&'static str>,
    content_type: &'static str,
    body: &'static str,
}

const PAGE: usize = 0;

/// Every file the dashboard serves; the page first.
static ASSETS: &[Asset] = &[
    Asset {
        name: None,
        content_type: "text/html; charset=utf-8",
        body: include_str!("dashboard/index.html"),
    },
    Asset {
        name: Some("app.js"),
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/app.js"),
    },
    Asset {
        name: Some("style.css"),
        content_type: "text/css; charset=utf-8",
        body: include_str!("dashboard/style.css"),
    },
    Asset {
        name: Some("durable-streams-client.js"),
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("dashboard/vendor/durable-streams-client.js"),
    },
    Asset {
        name: Some("durable-streams-client.LICENSE.txt"),
        content_type: "text/plain; charset=utf-8",
        body: include_str!("dashboard/vendor/durable-streams-client.LICENSE.txt"),
    },
];

/// A strong validator per asset, computed once: the files only change with
/// the binary, so a browser revalidates cheaply (`no-cache` + 304) and never
/// runs a stale script after an upgrade.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    })
}

/// Locks the page down to its own origin: every script, style and call is
/// the gateway's own (the token sits in this page's sessionStorage).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn serve(index: usize, request: &HeaderMap) -> Response {
    let (asset, etag) = (&ASSETS[index], &etags()[index]);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// The operators' dashboard page.
///
/// Paste an admin token, list tasks, open one, tail a session live, download
/// a task's export. Loads without a token.
#[utoipa::path(
    get,
    path = paths::DASHBOARD,
    tag = "dashboard",
    operation_id = "dashboard_page",
    params(("if-none-match" = Option<String>, Header, description = "The ETag of a cached copy")),
    responses(
        (status = 200, description = "The page (`Cache-Control: no-cache`, with an ETag)",
            content_type = "text/html", body = String),
        (status = 304, description = "The cached copy is current"),
    )
)]
pub async fn page(headers: HeaderMap) -> Response {
    serve(PAGE, &headers)
}

/// One static file of the dashboard.
///
/// `app.js`, `style.css`, `durable-streams-client.js` (the vendored Durable
/// Streams client) and its licence. Loads without a token.
#[utoipa::path(
    get,
    path = paths::DASHBOARD_ASSET,
    tag = "dashboard",
    operation_id = "dashboard_asset",
    params(
        ("file" = String, Path, description = "The file's name", example = "app.js"),
        ("if-none-match" = Option<String>, Header, description = "The ETag of a cached copy"),
    ),
    responses(
        (status = 200, description = "The file (`Cache-Control: no-cache`, with an ETag)",
            content(
                (String = "text/javascript"),
                (String = "text/css"),
                (String = "text/plain"),
            )),
        (status = 304, description = "The cached copy is current"),
        (status = 404, description = "No such file", body = super::error::ErrorEnvelope),
    )
)]
pub async fn asset(
    file: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let missing = || Error::NotFound("no such dashboard file".into());
    let Path(file) = file.map_err(|_| missing())?;
    let index = ASSETS
        .iter()
        .position(|a| a.name == Some(file.as_str()))
        .ok_or_else(missing)?;
    Ok(serve(index, &headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_and_script_name_is_served() {
        let page = ASSETS[PAGE].body;
        let script = ASSETS
            .iter()
            .find(|a| a.name == Some("app.js"))
            .map(|a| a.body)
            .unwrap_or_default();
        for asset in &ASSETS[1..] {
            let name = asset.name.unwrap_or_default();
            if name.ends_with(".txt") {
                continue;
            }
            assert!(
                page.contains(&format!("admin/assets/{name}")) || script.contains(name),
                "{name} is served but nothing loads it"
            );
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn etags_are_quoted_and_distinct() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        for t in tags {
            assert!(t.starts_with('"') && t.ends_with('"'), "{t}");
        }
        let distinct: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len());
    }
}
