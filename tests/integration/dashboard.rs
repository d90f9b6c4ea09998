//! The dashboard's files over HTTP: their content types, cache validators and
//! security headers, and the vendored Durable Streams client as one
//! self-contained module with its licence.

use crate::common::TestGateway;

const FILES: &[(&str, &str)] = &[
    ("/admin", "text/html"),
    ("/admin/assets/app.js", "text/javascript"),
    ("/admin/assets/style.css", "text/css"),
    ("/admin/assets/durable-streams-client.js", "text/javascript"),
    (
        "/admin/assets/durable-streams-client.LICENSE.txt",
        "text/plain",
    ),
];

#[tokio::test]
async fn dashboard_files_have_their_content_type_and_revalidate_with_an_etag() {
    let gw = TestGateway::embedded().await;
    for (path, kind) in FILES {
        let resp = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{path}: {csp}"
        );
        let etag = header("etag");
        assert!(etag.starts_with('"') && etag.len() > 10, "{path}: {etag}");
        assert!(!resp.bytes().await.unwrap().is_empty(), "{path}");

        let again = gw
            .http
            .get(gw.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
        let stale = gw
            .http
            .get(gw.url(path))
            .header("if-none-match", "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status().as_u16(), 200, "{path}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_vendored_stream_client_is_one_module_with_its_licence() {
    let gw = TestGateway::embedded().await;
    let text = |path: &'static str| {
        let request = gw.http.get(gw.url(path));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let client = text("/admin/assets/durable-streams-client.js").await;
    assert!(client.starts_with("/*!\n * @durable-streams/client "));
    assert!(client.contains("Permission is hereby granted"));
    assert!(client.contains("export {") && client.contains("stream,"));
    for line in client.lines() {
        let code = line.trim_start();
        assert!(
            !code.starts_with("import ") && !code.contains("import("),
            "the bundle imports something: {line}"
        );
    }
    let app = text("/admin/assets/app.js").await;
    assert!(app.contains("from \"./durable-streams-client.js\""));
    gw.stop().await;
}
