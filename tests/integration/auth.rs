//! Bearer tokens end to end: every route of a task is closed to other tasks'
//! tokens, scopes decide what a token may do, admin routes (routed or not)
//! need `admin`, only the configured algorithms verify, and the binary
//! refuses to serve unprotected anywhere but loopback.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};
use transcript_gateway::auth::{AuthSettings, Minter, Scopes, Secret, TaskGrant};
use transcript_gateway::config::Config;

use crate::common::{
    auth_config, embedded_ports, free_port, fresh_id, mint, mint_with, run_binary,
    storage_fingerprint, ChildGateway, TestGateway, PROJECT, TEST_SECRET,
};

fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

/// One request with an optional bearer token; the status and JSON body.
async fn call(
    gw: &TestGateway,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = gw.http.request(method, gw.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// Every operation the OpenAPI document describes under `prefix`, with its
/// path filled in for `task` and a body that would be valid.
fn operations(prefix: &str, task: &str, session: &str) -> Vec<(Method, String, Option<Value>)> {
    let doc: Value =
        serde_json::from_str(&transcript_gateway::api::openapi::openapi_json()).expect("doc");
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        // The dashboard's page and files load without a token (tested below).
        if !template.starts_with(prefix) || transcript_gateway::api::paths::is_dashboard(template) {
            continue;
        }
        let path = template
            .replace("{task_id}", task)
            .replace("{project_key}", PROJECT)
            .replace("{session_id}", session);
        for method in item.as_object().expect("item").keys() {
            let body = match (method.as_str(), template.rsplit('/').next()) {
                ("post", Some("entries")) => Some(json!({"entries": [{"type": "x"}]})),
                ("put", Some("binding")) => Some(json!({
                    "claude_session_id": session, "project_key": PROJECT, "cwd": "/workspace/x"
                })),
                ("put", Some("summary")) => Some(json!({"data": {"t": 1}, "expected_version": 1})),
                _ => None,
            };
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            out.push((method, path.clone(), body));
        }
    }
    out
}

/// Writes a little of everything to `task`: entries, a subkey, a summary, a
/// binding and a lease.
async fn seed(gw: &TestGateway, task: &str, session: &str) {
    let token = mint(task, "transcripts:write");
    let base = format!("/v1/tasks/{task}/projects/{PROJECT}/sessions/{session}");
    let t = Some(token.as_str());
    for (method, path, body) in [
        (
            Method::POST,
            format!("{base}/entries"),
            json!({"entries": [{"type": "user", "uuid": "u1"}]}),
        ),
        (
            Method::POST,
            format!("{base}/entries?subpath=subagents/agent-1"),
            json!({"entries": [{"type": "user"}]}),
        ),
        (
            Method::PUT,
            format!("{base}/summary"),
            json!({"data": {"title": "seed"}, "expected_version": 0}),
        ),
        (
            Method::PUT,
            format!("/v1/tasks/{task}/binding"),
            json!({"claude_session_id": session, "project_key": PROJECT, "cwd": "/workspace/seed"}),
        ),
    ] {
        let (status, body, _) = call(gw, method, &path, t, Some(&body)).await;
        assert!(
            status == 200 || status == 201,
            "seed {path}: {status} {body}"
        );
    }
    let (status, _, _) = call(
        gw,
        Method::POST,
        &format!("/v1/tasks/{task}/lease"),
        t,
        None,
    )
    .await;
    assert_eq!(status, 200);
}

async fn auth_gateway(dir: &Path) -> TestGateway {
    let (objects, catalog) = embedded_ports(dir);
    TestGateway::over(objects, catalog, auth_config()).await
}

#[tokio::test]
async fn a_token_for_task_a_is_forbidden_on_every_route_of_task_b_and_b_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let gw = auth_gateway(dir.path()).await;
    let (a, b, never) = (fresh_id("task-a"), fresh_id("task-b"), fresh_id("task-c"));
    let session = fresh_id("sess");
    seed(&gw, &a, &session).await;
    seed(&gw, &b, &session).await;
    let before = storage_fingerprint(dir.path());
    let token_a = mint(&a, "transcripts:write");
    let ops = operations("/v1/tasks/", &b, &session);
    assert!(
        ops.len() >= 10,
        "the document lists every task route: {ops:?}"
    );
    for (method, path, body) in ops {
        let (status, got, _) =
            call(&gw, method.clone(), &path, Some(&token_a), body.as_ref()).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {got}"
        );
        let message = got["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("not valid for task {b}")),
            "{method} {path}: {message}"
        );
        // The same request for a task that never existed looks the same.
        let other = path.replace(&b, &never);
        let (status2, got2, _) =
            call(&gw, method.clone(), &other, Some(&token_a), body.as_ref()).await;
        assert_eq!(status2, status, "{method} {other}");
        assert_eq!(
            got2["error"]["message"]
                .as_str()
                .map(|m| m.replace(&never, &b)),
            Some(message.to_string()),
            "a 403 must not tell an existing task from an absent one"
        );
    }
    assert_eq!(
        storage_fingerprint(dir.path()),
        before,
        "task B's data changed"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_read_only_token_reads_its_task_but_cannot_write_any_route() {
    let dir = tempfile::tempdir().unwrap();
    let gw = auth_gateway(dir.path()).await;
    let (task, session) = (fresh_id("task"), fresh_id("sess"));
    seed(&gw, &task, &session).await;
    let before = storage_fingerprint(dir.path());
    let read = mint(&task, "transcripts:read");
    let mut writes = 0;
    for (method, path, body) in operations("/v1/tasks/", &task, &session) {
        let (status, got, _) = call(&gw, method.clone(), &path, Some(&read), body.as_ref()).await;
        if method == Method::GET {
            assert_eq!(status, 200, "{method} {path}: {got}");
        } else {
            writes += 1;
            assert_eq!(
                (status, got["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{method} {path}: {got}"
            );
            assert!(
                got["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("lacks the transcripts:write scope"),
                "{got}"
            );
        }
    }
    assert!(writes >= 5, "every mutating route was tried ({writes})");
    assert_eq!(storage_fingerprint(dir.path()), before);
    gw.stop().await;
}

#[tokio::test]
async fn requests_without_a_token_are_401_with_a_bearer_challenge_even_where_no_route_is() {
    let dir = tempfile::tempdir().unwrap();
    let gw = auth_gateway(dir.path()).await;
    let (task, session) = (fresh_id("task"), fresh_id("sess"));
    let mut paths: Vec<(Method, String)> = operations("/v1/", &task, &session)
        .into_iter()
        .chain(operations("/admin/", &task, &session))
        .map(|(m, p, _)| (m, p))
        .collect();
    for p in [
        "/admin/",
        "/admin/assets",
        "/admin/assets/",
        "/admin/assets/app.js/x",
        "/admin/assets/..%2Fv1%2Ffailures/x",
        "/admin/v1",
        "/admin/v1/tasks",
        "/admin/v1/failures",
        "/admin/v1/stats",
        "/admin/v2/anything",
        "/v1/tasks",
        "/v1/nothing",
    ] {
        paths.push((Method::GET, p.to_string()));
    }
    for (method, path) in &paths {
        let (status, got, headers) = call(&gw, method.clone(), path, None, None).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{method} {path}: {got}"
        );
        assert!(got["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("missing bearer token"));
        let challenge = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.starts_with("Bearer"),
            "{method} {path}: {challenge:?}"
        );
    }
    // With an operator token the unrouted admin paths are plain 404s.
    let operator = mint("*", "admin,transcripts:read");
    for path in ["/admin/v1/nothing-here", "/admin/v2/anything"] {
        let (status, got, _) = call(&gw, Method::GET, path, Some(&operator), None).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (404, Some("no_such_route")),
            "{path}"
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn the_dashboard_page_and_its_files_load_without_a_token_and_nothing_else_under_admin_does() {
    let dir = tempfile::tempdir().unwrap();
    let gw = auth_gateway(dir.path()).await;
    for path in [
        "/admin",
        "/admin/assets/app.js",
        "/admin/assets/style.css",
        "/admin/assets/durable-streams-client.js",
    ] {
        let resp = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    // An unknown file is a 404 of the dashboard, not a way around the token.
    let (status, got, _) = call(&gw, Method::GET, "/admin/assets/nope.js", None, None).await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for path in [
        "/admin/assets/..%2Fv1%2Ffailures",
        "/admin/assets/%2e%2e%2fv1%2ffailures",
    ] {
        let (status, got, _) = call(&gw, Method::GET, path, None, None).await;
        assert_eq!(status, 404, "{path}: {got}");
    }
    // The page is open, the API it calls is not.
    let (status, _, _) = call(&gw, Method::GET, "/admin/v1/failures", None, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = call(&gw, Method::POST, "/admin", None, None).await;
    assert_eq!(status, 405, "only GET is routed on the page");
    gw.stop().await;
}

#[tokio::test]
async fn admin_routes_need_the_admin_scope_and_the_task_or_every_task() {
    let dir = tempfile::tempdir().unwrap();
    let gw = auth_gateway(dir.path()).await;
    let (a, b) = (fresh_id("task-a"), fresh_id("task-b"));
    let compact = |t: &str| format!("/admin/v1/tasks/{t}/compact");
    let cases = [
        (
            mint(&a, "transcripts:write"),
            compact(&a),
            403,
            "lacks the admin scope",
        ),
        (
            mint("*", "transcripts:write,transcripts:read"),
            compact(&a),
            403,
            "lacks the admin scope",
        ),
        (mint(&a, "admin"), compact(&b), 403, "not valid for task"),
        (
            mint(&a, "admin"),
            "/admin/v1/stats".to_string(),
            403,
            "task_id '*'",
        ),
        (mint(&a, "admin"), compact(&a), 200, ""),
        (mint("*", "admin"), compact(&b), 200, ""),
    ];
    for (token, path, status, message) in cases {
        let (got_status, got, _) = call(&gw, Method::POST, &path, Some(&token), None).await;
        assert_eq!(got_status, status, "{path}: {got}");
        if status == 403 {
            assert_eq!(got["error"]["code"], "forbidden");
            assert!(
                got["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(message),
                "{path}: {got}"
            );
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn health_readiness_and_the_api_description_are_open_and_metrics_can_be_closed() {
    let dir = tempfile::tempdir().unwrap();
    let gw = auth_gateway(dir.path()).await;
    for path in ["/healthz", "/readyz", "/openapi.json", "/metrics", "/docs/"] {
        let resp = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    gw.stop().await;

    let config = Config {
        metrics_require_auth: true,
        ..auth_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, config).await;
    let (status, _, _) = call(&gw, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 401);
    let worker = mint(&fresh_id("task"), "transcripts:write");
    let (status, _, _) = call(&gw, Method::GET, "/metrics", Some(&worker), None).await;
    assert_eq!(status, 403);
    let resp = gw
        .http
        .get(gw.url("/metrics"))
        .bearer_auth(mint("*", "admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("tg_appends_total"));
    gw.stop().await;
}

fn public_key_config(public: &str, with_secret: bool) -> Config {
    Config {
        auth_public_key_file: Some(key_file(public)),
        auth_secret: with_secret.then(|| Secret::new(TEST_SECRET)),
        ..Config::default()
    }
}

fn mint_private(private: &str, task: &str) -> String {
    Minter::new(&AuthSettings::default(), Some(&key_file(private)))
        .expect("private key")
        .mint(
            &TaskGrant::parse(task).unwrap(),
            Scopes::parse_strict("transcripts:write").unwrap(),
            std::time::Duration::from_secs(60),
            "orchestrator",
        )
        .expect("mint")
}

/// An HS256 token signed with the bytes of a public key file as the secret:
/// the classic algorithm-confusion forgery.
fn confusion_token(public: &str, task: &str) -> String {
    let pem = std::fs::read(key_file(public)).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "sub": "forger", "task_id": task, "scope": "transcripts:write admin",
        "exp": now + 60, "iat": now, "jti": "x"
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&pem).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn only_the_configured_key_kinds_verify_tokens() {
    let task = fresh_id("task");
    let path = format!("/v1/tasks/{task}/projects/{PROJECT}/sessions/s1/entries");
    let body = json!({"entries": [{"type": "x"}]});
    // (gateway key, token, expected status, message part)
    let cases: Vec<(Config, String, u16, &str)> = vec![
        (
            public_key_config("ed25519-public.pem", false),
            mint_private("ed25519-private.pem", &task),
            200,
            "",
        ),
        (
            public_key_config("rsa-public.pem", false),
            mint_private("rsa-private.pem", &task),
            200,
            "",
        ),
        (
            public_key_config("ed25519-public.pem", false),
            mint(&task, "transcripts:write"),
            401,
            "algorithm HS256 is not accepted",
        ),
        (
            public_key_config("ed25519-public.pem", false),
            mint_private("rsa-private.pem", &task),
            401,
            "algorithm RS256 is not accepted",
        ),
        (
            public_key_config("rsa-public.pem", false),
            confusion_token("rsa-public.pem", &task),
            401,
            "algorithm HS256 is not accepted",
        ),
        (
            public_key_config("rsa-public.pem", true),
            confusion_token("rsa-public.pem", &task),
            401,
            "signature does not verify",
        ),
        (
            public_key_config("ed25519-public.pem", true),
            confusion_token("ed25519-public.pem", &task),
            401,
            "signature does not verify",
        ),
        (
            public_key_config("rsa-public.pem", true),
            mint(&task, "transcripts:write"),
            200,
            "",
        ),
    ];
    for (i, (config, token, status, message)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let (objects, catalog) = embedded_ports(dir.path());
        let gw = TestGateway::over(objects, catalog, config).await;
        let (got_status, got, _) = call(&gw, Method::POST, &path, Some(&token), Some(&body)).await;
        assert_eq!(got_status, status, "case {i}: {got}");
        if status == 401 {
            assert_eq!(got["error"]["code"], "unauthorized", "case {i}");
            assert!(
                got["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(message),
                "case {i}: {got}"
            );
        }
        gw.stop().await;
    }
}

#[tokio::test]
async fn issuer_and_audience_are_required_when_configured() {
    let task = fresh_id("task");
    let strict = Config {
        auth_issuer: Some("orchestrator".into()),
        auth_audience: Some("transcript-gateway".into()),
        ..auth_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, strict.clone()).await;
    let path = format!("/v1/tasks/{task}/binding");
    let other_issuer = Config {
        auth_issuer: Some("someone-else".into()),
        ..strict.clone()
    };
    let other_audience = Config {
        auth_audience: Some("another-service".into()),
        ..strict.clone()
    };
    for (what, token, status, message) in [
        (
            "iss and aud as configured",
            mint_with(&strict, &task, "transcripts:read"),
            404,
            "",
        ),
        (
            "neither iss nor aud",
            mint(&task, "transcripts:read"),
            401,
            "is missing",
        ),
        (
            "another issuer",
            mint_with(&other_issuer, &task, "transcripts:read"),
            401,
            "iss is not the configured issuer",
        ),
        (
            "another audience",
            mint_with(&other_audience, &task, "transcripts:read"),
            401,
            "aud is not the configured audience",
        ),
    ] {
        let (got_status, got, _) = call(&gw, Method::GET, &path, Some(&token), None).await;
        assert_eq!(got_status, status, "{what}: {got}");
        if status == 401 {
            assert!(
                got["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(message),
                "{what}: {got}"
            );
        } else {
            assert_eq!(
                got["error"]["code"], "not_found",
                "{what}: the task is unbound"
            );
        }
    }
    gw.stop().await;
}

#[test]
fn serve_refuses_to_start_unprotected_or_with_a_weak_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let loopback = format!("127.0.0.1:{}", free_port());
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (
            &["serve", "--listen", &loopback],
            &[],
            "authentication is not configured",
        ),
        (
            &["serve", "--listen", "0.0.0.0:1", "--insecure-no-auth"],
            &[],
            "only on a loopback address",
        ),
        (
            &["serve", "--listen", "192.0.2.1:1"],
            &[("TG_INSECURE_NO_AUTH", "true")],
            "only on a loopback address",
        ),
        (
            &["serve", "--listen", &loopback],
            &[("TG_AUTH_SECRET", "short-secret-value")],
            "at least 32 bytes",
        ),
        (
            &["serve", "--listen", &loopback, "--insecure-no-auth"],
            &[("TG_AUTH_SECRET", TEST_SECRET)],
            "choose one",
        ),
    ];
    for (args, env, message) in cases {
        let mut env = env.to_vec();
        env.push(("TG_DATA_DIR", data));
        let (code, _, stderr) = run_binary(args, &env);
        assert_ne!(code, Some(0), "{args:?} must not start");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("short-secret-value"),
            "a secret was echoed: {stderr}"
        );
    }
}

#[tokio::test]
async fn insecure_no_auth_on_loopback_serves_open() {
    let dir = tempfile::tempdir().unwrap();
    let gw = ChildGateway::start_with(&dir.path().join("data"), &[], &["--insecure-no-auth"]).await;
    let url = format!(
        "{}/v1/tasks/{}/projects/{PROJECT}/sessions/s1/entries",
        gw.base_url,
        fresh_id("task")
    );
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&json!({"entries": [{"type": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "no token needed when run open");
}

#[tokio::test]
async fn token_mint_prints_a_token_the_gateway_accepts_and_compact_mints_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let task = fresh_id("task");
    let secret = [("TG_AUTH_SECRET", TEST_SECRET)];
    let (code, stdout, stderr) = run_binary(
        &[
            "token",
            "mint",
            "--task",
            &task,
            "--scope",
            "transcripts:write",
            "--ttl",
            "10m",
        ],
        &secret,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "the token alone: {stdout:?}");
    let token = stdout.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");

    for (args, message) in [
        (
            vec!["--task", &task, "--scope", "transcripts:wirte"],
            "unknown scope",
        ),
        (vec!["--task", "../x", "--scope", "admin"], "--task"),
        (
            vec!["--task", &task, "--scope", "admin", "--ttl", "soon"],
            "invalid value 'soon'",
        ),
    ] {
        let mut full = vec!["token", "mint"];
        full.extend(args.iter().copied());
        let (code, stdout, stderr) = run_binary(&full, &secret);
        assert_ne!(code, Some(0));
        assert!(stdout.is_empty());
        assert!(stderr.contains(message), "{full:?}: {stderr}");
    }
    let (code, _, stderr) =
        run_binary(&["token", "mint", "--task", &task, "--scope", "admin"], &[]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("no signing key"), "{stderr}");
    let (_, help, _) = run_binary(&["serve", "--help"], &secret);
    assert!(!help.contains(TEST_SECRET), "--help shows no secret");

    // The gateway takes the minted token; `compact` mints its own admin token.
    let data = dir.path().join("data");
    let env: Vec<(&str, &str)> = secret.to_vec();
    let gw = ChildGateway::start(&data, &env).await;
    let http = reqwest::Client::new();
    let entries = format!(
        "{}/v1/tasks/{task}/projects/{PROJECT}/sessions/s1/entries",
        gw.base_url
    );
    let resp = http
        .post(&entries)
        .bearer_auth(token)
        .json(&json!({"entries": [{"type": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let without = http.get(&entries).send().await.unwrap();
    assert_eq!(without.status(), 401);
    let listen = gw.base_url.trim_start_matches("http://").to_string();
    let (code, stdout, stderr) = run_binary(
        &["compact", "--task", &task],
        &[("TG_AUTH_SECRET", TEST_SECRET), ("TG_LISTEN", &listen)],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("via the gateway at"), "{stdout}");
}
