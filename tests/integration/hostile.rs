//! The hostile corpus: requests sent byte for byte over a raw socket (so
//! `..`, `%2e%2e`, overlong UTF-8 and bad headers reach the server as
//! written) to a gateway with authentication on. Each case names the one
//! thing wrong with it and asserts the exact status, error code and what the
//! message says, so it cannot pass because it was refused for something
//! else; afterwards every stored byte (objects and catalog) is unchanged.

use base64::Engine as _;
use serde_json::{json, Value};
use transcript_gateway::auth::Secret;
use transcript_gateway::config::Config;

use crate::common::{
    embedded_ports, fresh_id, mint, raw_request, storage_fingerprint, TestGateway, PROJECT,
    TEST_SECRET,
};

struct Case {
    what: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
    message: String,
}

impl Case {
    /// A request that would succeed with `token`, until a defect is added.
    fn new(what: &str, method: &'static str, path: String, token: &str) -> Self {
        Self {
            what: what.to_string(),
            method,
            path,
            headers: vec![
                ("authorization", format!("Bearer {token}")),
                ("content-type", "application/json".into()),
            ],
            body: Vec::new(),
            status: 0,
            code: "",
            message: String::new(),
        }
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a header, replacing any of that name.
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a header line even if one of that name is there.
    fn extra(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    fn expect(mut self, status: u16, code: &'static str, message: impl Into<String>) -> Self {
        self.status = status;
        self.code = code;
        self.message = message.into();
        self
    }

    fn invalid(self, message: impl Into<String>) -> Self {
        self.expect(400, "invalid_request", message)
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256-family token over arbitrary claims, signed with `secret`.
fn signed(alg: jsonwebtoken::Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn claims(task: &str, scope: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"sub": "corpus", "task_id": task, "scope": scope, "exp": now + 600, "iat": now, "jti": "j1"})
}

/// The token with its payload changed after signing (signature kept).
fn tampered(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    change(&mut payload);
    format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.to_string().as_bytes()),
        parts[2]
    )
}

fn key_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

/// Builds the corpus for task `a` (seeded), session `s`; `b` is another task.
fn corpus(a: &str, b: &str, s: &str) -> Vec<Case> {
    let p = PROJECT;
    let write = mint(a, "transcripts:write");
    let entries =
        |t: &str, pk: &str, se: &str| format!("/v1/tasks/{t}/projects/{pk}/sessions/{se}/entries");
    let main = entries(a, p, s);
    let session = format!("/v1/tasks/{a}/projects/{p}/sessions/{s}");
    let ok = br#"{"entries":[{"type":"x"}]}"#.to_vec();
    let append = |what: &str, path: String| Case::new(what, "POST", path, &write).body(ok.clone());
    let with_body =
        |what: &str, body: &[u8]| Case::new(what, "POST", main.clone(), &write).body(body.to_vec());
    let get = |what: &str, path: String| Case::new(what, "GET", path, &write);
    let long = "a".repeat(129);
    let deep = |levels: usize| {
        // `levels` levels inside the entry: the entry object holds levels - 1 arrays.
        format!(
            "{{\"entries\":[{{\"type\":\"x\",\"d\":{}1{}}}]}}",
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    };
    let deep_objects = |levels: usize| {
        format!(
            "{{\"entries\":[{}{{}}{}]}}",
            "{\"a\":".repeat(levels - 1),
            "}".repeat(levels - 1)
        )
    };
    let mut cases = vec![
        // Traversal and foreign characters in ids.
        append("task id '..' raw", entries("..", p, s)).invalid("task_id must not be '.' or '..'"),
        append("task id '.' raw", entries(".", p, s)).invalid("task_id must not be '.' or '..'"),
        append("task id %2e%2e", entries("%2e%2e", p, s)).invalid("task_id must not be '.' or '..'"),
        append("task id %2E%2e", entries("%2E%2e", p, s)).invalid("task_id must not be '.' or '..'"),
        append("task id with %2F", entries("a%2Fb", p, s)).invalid("task_id may contain only"),
        append("task id with %00", entries("a%00b", p, s)).invalid("task_id may contain only"),
        append("task id overlong UTF-8 dots", entries("%C0%AE%C0%AE", p, s)).invalid("task_id in the path is not valid UTF-8"),
        append("task id with a Cyrillic a", entries("t%D0%B0sk", p, s)).invalid("task_id may contain only"),
        append("task id with a fullwidth dot", entries("a%EF%BC%8E", p, s)).invalid("task_id may contain only"),
        append("task id too long", entries(&long, p, s)).invalid("task_id must be 1 to 128 characters"),
        append("task id with a space", entries("a%20b", p, s)).invalid("task_id may contain only"),
        append("session id '..' raw", entries(a, p, "..")).invalid("session_id must not be '.' or '..'"),
        append("session id %2e%2e", entries(a, p, "%2e%2e")).invalid("session_id must not be '.' or '..'"),
        append("session id with %2F", entries(a, p, "a%2Fb")).invalid("session_id may contain only"),
        append("session id with %5C", entries(a, p, "a%5Cb")).invalid("session_id may contain only"),
        append("session id with %00", entries(a, p, "a%00")).invalid("session_id may contain only"),
        append("session id overlong UTF-8", entries(a, p, "%C0%AE")).invalid("UTF-8"),
        append("session id with a zero-width space", entries(a, p, "s%E2%80%8Bx")).invalid("session_id may contain only"),
        append("session id too long", entries(a, p, &long)).invalid("session_id must be 1 to 128 characters"),
        append("project key with '_'", entries(a, "a_b", s)).invalid("project_key may contain only"),
        append("project key with '.'", entries(a, "a.b", s)).invalid("project_key may contain only"),
        append("project key %2e%2e", entries(a, "%2e%2e", s)).invalid("project_key may contain only"),
        append("project key too long", entries(a, &"a".repeat(256), s)).invalid("project_key must be 1 to 255 characters"),
        // Subpaths.
        append("empty subpath", format!("{main}?subpath=")).invalid("subpath must not be empty"),
        append("trailing-slash subpath", format!("{main}?subpath=a/")).invalid("empty segments"),
        append("absolute subpath", format!("{main}?subpath=/a")).invalid("subpath must be relative"),
        append("double-slash subpath", format!("{main}?subpath=a//b")).invalid("empty segments"),
        append("dot-dot subpath", format!("{main}?subpath=a/../b")).invalid("subpath must not be '.' or '..'"),
        append("encoded dot-dot subpath", format!("{main}?subpath=..%2Fetc")).invalid("subpath must not be '.' or '..'"),
        append("encoded dots subpath", format!("{main}?subpath=%2e%2e/x")).invalid("subpath must not be '.' or '..'"),
        append("dot subpath segment", format!("{main}?subpath=a/./b")).invalid("subpath must not be '.' or '..'"),
        append("subpath too deep", format!("{main}?subpath=a/b/c/d/e")).invalid("at most 4 segments"),
        append("subpath too long", format!("{main}?subpath={}", vec!["a".repeat(128); 5].join("/"))).invalid("at most 512 characters"),
        append("subpath segment too long", format!("{main}?subpath={}", "a".repeat(129))).invalid("subpath must be 1 to 128 characters"),
        append("subpath with a space", format!("{main}?subpath=a%20b")).invalid("subpath may contain only"),
        append("subpath with %00", format!("{main}?subpath=a%00b")).invalid("subpath may contain only"),
        append("subpath naming a part file", format!("{main}?subpath=x.jsonl")).invalid("must not end in '.jsonl'"),
        append("subpath overlong UTF-8", format!("{main}?subpath=%C0%AE")).invalid("subpath may contain only"),
        // Raw `..` segments never climb out of a task: no route matches.
        get("raw '..' climbing to another task", format!("{session}/../../../../{b}/binding")).expect(404, "no_such_route", "no such route"),
        get("raw '..' after the task id", format!("/v1/tasks/{a}/../{b}/binding")).expect(404, "no_such_route", "no such route"),
        // Oversized heads.
        append("one header of 20 KiB", main.clone()).header("x-pad", "p".repeat(20 * 1024)).expect(431, "headers_too_large", "at most 16384"),
        (0..40).fold(append("40 headers of 500 bytes", main.clone()), |c, _| c.extra("x-pad", "p".repeat(500))).expect(431, "headers_too_large", "at most 16384"),
        append("query string of 17 KiB", format!("{main}?pad={}", "q".repeat(17 * 1024))).expect(431, "headers_too_large", "at most 16384"),
        // Bodies.
        with_body("body over the limit", format!("{{\"entries\":[{{\"pad\":\"{}\"}}]}}", "x".repeat(70 * 1024)).as_bytes()).expect(413, "payload_too_large", "length limit exceeded"),
        append("text/plain body", main.clone()).header("content-type", "text/plain").expect(415, "unsupported_media_type", "application/json"),
        append("no content type", main.clone()).without("content-type").expect(415, "unsupported_media_type", "application/json"),
        append("form content type", main.clone()).header("content-type", "application/x-www-form-urlencoded").expect(415, "unsupported_media_type", "application/json"),
        append("application/jsonx", main.clone()).header("content-type", "application/jsonx").expect(415, "unsupported_media_type", "application/json"),
        with_body("not JSON", b"hello").invalid("Failed to parse the request body as JSON"),
        with_body("truncated JSON", br#"{"entries":[{"a":1}"#).invalid("EOF while parsing"),
        with_body("trailing garbage", br#"{"entries":[{"a":1}]} x"#).invalid("trailing characters"),
        with_body("NaN", br#"{"entries":[{"a":NaN}]}"#).invalid("expected value"),
        with_body("Infinity", br#"{"entries":[{"a":Infinity}]}"#).invalid("expected value"),
        with_body("UTF-8 byte order mark", b"\xEF\xBB\xBF{\"entries\":[{\"a\":1}]}").invalid("expected value"),
        with_body("invalid UTF-8 in a string", b"{\"entries\":[{\"a\":\"\xff\xfe\"}]}").invalid("invalid unicode code point"),
        with_body("lone surrogate escape", br#"{"entries":[{"a":"\ud800"}]}"#).invalid("entries[0] holds a lone UTF-16 surrogate escape"),
        with_body("lone trailing surrogate escape", br#"{"entries":[{"a":"x\udc00"}]}"#).invalid("entries[0] holds a lone UTF-16 surrogate escape"),
        with_body("duplicate top-level key", br#"{"entries":[{"a":1}],"entries":[{"b":2}]}"#).invalid("duplicate field `entries`"),
        with_body("duplicate key inside an entry", br#"{"entries":[{"a":1,"b":{"c":1,"c":2}}]}"#).invalid("entries[0] has an object key more than once (again at byte 18)"),
        with_body("misspelt field", br#"{"entires":[{"a":1}]}"#).invalid("unknown field `entires`"),
        with_body("entries missing", b"{}").invalid("missing field `entries`"),
        with_body("entries empty", br#"{"entries":[]}"#).invalid("entries must be a non-empty array"),
        with_body("entries not an array", br#"{"entries":{"a":1}}"#).invalid("invalid type: map, expected a sequence"),
        with_body("entry a number", br#"{"entries":[1]}"#).invalid("entries[0] must be a JSON object"),
        with_body("entry an array", br#"{"entries":[{"a":1},[]]}"#).invalid("entries[1] must be a JSON object"),
        with_body("entry a string", br#"{"entries":["x"]}"#).invalid("entries[0] must be a JSON object"),
        with_body("entry null", br#"{"entries":[null]}"#).invalid("entries[0] must be a JSON object"),
        with_body("nesting 129 deep inside an entry (arrays)", deep(129).as_bytes()).invalid("entries[0] nests deeper than 128 levels"),
        with_body("nesting 129 deep inside an entry (objects)", deep_objects(129).as_bytes()).invalid("entries[0] nests deeper than 128 levels"),
        with_body("nesting 10,000 deep inside an entry", deep(10_000).as_bytes()).invalid("entries[0] nests deeper than 128 levels"),
        with_body("a number beyond a double", br#"{"entries":[{"n":1e400}]}"#).invalid("entries[0] holds a number too large for a double (at byte 5)"),
        with_body("a negative number beyond a double", br#"{"entries":[{"n":-1e999}]}"#).invalid("number too large for a double"),
        with_body("a 400-digit integer", format!("{{\"entries\":[{{\"n\":{}}}]}}", "9".repeat(400)).as_bytes()).invalid("number too large for a double"),
        // Summaries.
        with_body("summary data not an object", br#"{"entries":[{"a":1}],"summary":{"data":[1],"expected_version":0}}"#).invalid("summary data must be a JSON object"),
        with_body("summary data nested 129 deep", format!("{{\"entries\":[{{\"a\":1}}],\"summary\":{{\"data\":{{\"d\":{}1{}}},\"expected_version\":0}}}}", "[".repeat(128), "]".repeat(128)).as_bytes()).invalid("summary data nests deeper than 128 levels"),
        with_body("summary without expected_version", br#"{"entries":[{"a":1}],"summary":{"data":{}}}"#).invalid("missing field `expected_version`"),
        with_body("summary with a negative version", br#"{"entries":[{"a":1}],"summary":{"data":{},"expected_version":-1}}"#).invalid("invalid value: integer `-1`"),
        Case::new("PUT summary nested 10,000 deep", "PUT", format!("{session}/summary"), &write).body(format!("{{\"data\":{{\"d\":{}1{}}},\"expected_version\":1}}", "[".repeat(10_000), "]".repeat(10_000))).invalid("summary data nests deeper than 128 levels"),
        Case::new("PUT summary with duplicate keys", "PUT", format!("{session}/summary"), &write).body(br#"{"data":{"t":1,"t":2},"expected_version":1}"#.to_vec()).invalid("summary data has an object key more than once"),
        Case::new("PUT summary with an unknown field", "PUT", format!("{session}/summary"), &write).body(br#"{"data":{},"expected_version":1,"force":true}"#.to_vec()).invalid("unknown field `force`"),
        // Bindings.
        Case::new("binding with a deep unknown field", "PUT", format!("/v1/tasks/{a}/binding"), &write).body(format!("{{\"claude_session_id\":\"s\",\"project_key\":\"p\",\"cwd\":\"/w\",\"x\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000))).invalid("unknown field `x`"),
        Case::new("binding session id with a slash", "PUT", format!("/v1/tasks/{a}/binding"), &write).body(br#"{"claude_session_id":"a/b","project_key":"p","cwd":"/w"}"#.to_vec()).invalid("claude_session_id may contain only"),
        Case::new("binding cwd relative", "PUT", format!("/v1/tasks/{a}/binding"), &write).body(br#"{"claude_session_id":"s","project_key":"p","cwd":"w"}"#.to_vec()).invalid("cwd must be an absolute path"),
        Case::new("binding cwd with a control character", "PUT", format!("/v1/tasks/{a}/binding"), &write).body(br#"{"claude_session_id":"s","project_key":"p","cwd":"/w\u0007"}"#.to_vec()).invalid("cwd must not contain control characters"),
        // Headers the gateway reads.
        append("idempotency key too long", main.clone()).header("idempotency-key", "k".repeat(256)).invalid("Idempotency-Key must be 1 to 255 characters"),
        append("idempotency key not ASCII", main.clone()).header("idempotency-key", "cl\u{e9}").invalid("Idempotency-Key must be visible ASCII"),
        append("writer epoch a word", main.clone()).header("x-writer-epoch", "soon").invalid("X-Writer-Epoch must be a non-negative integer"),
        append("writer epoch negative", main.clone()).header("x-writer-epoch", "-1").invalid("X-Writer-Epoch must be a non-negative integer"),
        // Queries of reads.
        get("negative after_seq", format!("{main}?after_seq=-1")).invalid("Failed to deserialize query string"),
        get("list limit 0", format!("/v1/tasks/{a}/projects/{p}/sessions?limit=0")).invalid("limit must be 1 to 1000"),
        get("list limit 1001", format!("/v1/tasks/{a}/projects/{p}/sessions?limit=1001")).invalid("limit must be 1 to 1000"),
        get("forged next_token", format!("/v1/tasks/{a}/projects/{p}/sessions?next_token=%25%25%25")).invalid("next_token is not a token this gateway issued"),
        get("next_token naming '..'", format!("/v1/tasks/{a}/projects/{p}/sessions?next_token=Li4")).invalid("session_id must not be '.' or '..'"),
        get("subkeys limit 0", format!("{session}/subkeys?limit=0")).invalid("limit must be 1 to 1000"),
        Case::new("PATCH on entries", "PATCH", main.clone(), &write).body(ok.clone()).expect(405, "method_not_allowed", "method not allowed"),
    ];

    // Every token defect, on an append that is otherwise fine.
    let now = jsonwebtoken::get_current_timestamp();
    let secret = TEST_SECRET.as_bytes();
    let hs = jsonwebtoken::Algorithm::HS256;
    let read = mint(a, "transcripts:read");
    let expired = {
        let mut c = claims(a, "transcripts:write");
        c["exp"] = json!(now - 60);
        c["iat"] = json!(now - 120);
        signed(hs, &c, secret)
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(a, "transcripts:write").to_string().as_bytes())
    );
    let rsa_pem = std::fs::read(key_file("rsa-public.pem")).unwrap();
    let ed_token = transcript_gateway::auth::Minter::new(
        &Default::default(),
        Some(&key_file("ed25519-private.pem")),
    )
    .unwrap()
    .mint(
        &transcript_gateway::auth::TaskGrant::parse(a).unwrap(),
        transcript_gateway::auth::Scopes::parse_strict("transcripts:write").unwrap(),
        std::time::Duration::from_secs(60),
        "corpus",
    )
    .unwrap();
    let without_jti = {
        let mut c = claims(a, "transcripts:write");
        c.as_object_mut().unwrap().remove("jti");
        signed(hs, &c, secret)
    };
    let bad_task_claim = signed(hs, &claims("../x", "transcripts:write"), secret);
    let future_iat = {
        let mut c = claims(a, "transcripts:write");
        c["iat"] = json!(now + 3600);
        signed(hs, &c, secret)
    };
    let exp_string = {
        let mut c = claims(a, "transcripts:write");
        c["exp"] = json!("tomorrow");
        signed(hs, &c, secret)
    };
    let tok = |what: &str, authorization: Option<String>| {
        let c = append(what, main.clone());
        match authorization {
            Some(v) => c.header("authorization", v),
            None => c.without("authorization"),
        }
    };
    cases.extend([
        tok("no token", None).expect(401, "unauthorized", "missing bearer token"),
        tok("Basic credentials", Some("Basic dXNlcjpwdw==".into())).expect(
            401,
            "unauthorized",
            "expected 'Bearer <token>'",
        ),
        tok("Bearer with no token", Some("Bearer".into())).expect(
            401,
            "unauthorized",
            "expected 'Bearer <token>'",
        ),
        tok("one-segment token", Some("Bearer abc".into())).expect(
            401,
            "unauthorized",
            "malformed bearer token",
        ),
        tok("three segments of garbage", Some("Bearer not.a.jwt".into())).expect(
            401,
            "unauthorized",
            "malformed bearer token",
        ),
        tok("non-ASCII authorization", Some("Bearer t\u{f6}ken".into())).expect(
            401,
            "unauthorized",
            "not visible ASCII",
        ),
        tok("two authorization headers", Some(format!("Bearer {write}")))
            .extra("authorization", format!("Bearer {write}"))
            .expect(401, "unauthorized", "more than one Authorization header"),
        tok(
            "another task's token",
            Some(format!("Bearer {}", mint(b, "transcripts:write"))),
        )
        .expect(403, "forbidden", format!("not valid for task {a}")),
        tok(
            "read-only token for a write",
            Some(format!("Bearer {read}")),
        )
        .expect(403, "forbidden", "lacks the transcripts:write scope"),
        tok(
            "admin-only token for a write",
            Some(format!("Bearer {}", mint("*", "admin"))),
        )
        .expect(403, "forbidden", "lacks the transcripts:write scope"),
        tok("expired token", Some(format!("Bearer {expired}"))).expect(
            401,
            "unauthorized",
            "token has expired",
        ),
        tok(
            "wrong signature",
            Some(format!(
                "Bearer {}",
                signed(
                    hs,
                    &claims(a, "transcripts:write"),
                    b"another-secret-of-at-least-32-bytes!"
                )
            )),
        )
        .expect(401, "unauthorized", "signature does not verify"),
        tok("alg none", Some(format!("Bearer {alg_none}"))).expect(
            401,
            "unauthorized",
            "alg: none is refused",
        ),
        tok(
            "HS256 signed with the RSA public key",
            Some(format!(
                "Bearer {}",
                signed(hs, &claims(a, "transcripts:write"), &rsa_pem)
            )),
        )
        .expect(401, "unauthorized", "signature does not verify"),
        tok(
            "HS512 with the right secret",
            Some(format!(
                "Bearer {}",
                signed(
                    jsonwebtoken::Algorithm::HS512,
                    &claims(a, "transcripts:write"),
                    secret
                )
            )),
        )
        .expect(401, "unauthorized", "algorithm HS512 is not accepted"),
        tok(
            "EdDSA when no Ed25519 key is configured",
            Some(format!("Bearer {ed_token}")),
        )
        .expect(401, "unauthorized", "algorithm EdDSA is not accepted"),
        tok(
            "scope widened after signing",
            Some(format!(
                "Bearer {}",
                tampered(&read, |c| c["scope"] = json!("transcripts:write admin"))
            )),
        )
        .expect(401, "unauthorized", "signature does not verify"),
        tok(
            "task changed after signing",
            Some(format!(
                "Bearer {}",
                tampered(&mint(b, "transcripts:write"), |c| c["task_id"] = json!(a))
            )),
        )
        .expect(401, "unauthorized", "signature does not verify"),
        tok(
            "expiry extended after signing",
            Some(format!(
                "Bearer {}",
                tampered(&expired, |c| c["exp"] = json!(now + 3600))
            )),
        )
        .expect(401, "unauthorized", "signature does not verify"),
        tok("token without jti", Some(format!("Bearer {without_jti}"))).expect(
            401,
            "unauthorized",
            "token claims are not valid",
        ),
        tok(
            "token naming task '../x'",
            Some(format!("Bearer {bad_task_claim}")),
        )
        .expect(401, "unauthorized", "task_id"),
        tok(
            "token issued in the future",
            Some(format!("Bearer {future_iat}")),
        )
        .expect(401, "unauthorized", "iat is in the future"),
        tok(
            "token with a string exp",
            Some(format!("Bearer {exp_string}")),
        )
        .expect(401, "unauthorized", "token claims are not valid"),
        Case::new(
            "admin route with a write token",
            "POST",
            format!("/admin/v1/tasks/{a}/compact"),
            &write,
        )
        .expect(403, "forbidden", "lacks the admin scope"),
        Case::new(
            "unrouted admin path without a token",
            "GET",
            "/admin/v1/tasks".into(),
            &write,
        )
        .without("authorization")
        .expect(401, "unauthorized", "missing bearer token"),
        Case::new(
            "another task's binding",
            "GET",
            format!("/v1/tasks/{b}/binding"),
            &write,
        )
        .expect(403, "forbidden", format!("not valid for task {b}")),
        Case::new(
            "another task's lease",
            "POST",
            format!("/v1/tasks/{b}/lease"),
            &write,
        )
        .expect(403, "forbidden", format!("not valid for task {b}")),
    ]);
    cases
}

#[tokio::test]
async fn the_hostile_corpus_is_refused_exactly_and_changes_no_stored_byte() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        body_limit_bytes: 64 * 1024,
        auth_secret: Some(Secret::new(TEST_SECRET)),
        auth_public_key_file: Some(key_file("rsa-public.pem")),
        ..Config::default()
    };
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, config).await;
    let (a, b, s) = (fresh_id("task-a"), fresh_id("task-b"), fresh_id("sess"));
    for task in [&a, &b] {
        let token = mint(task, "transcripts:write");
        let url = gw.url(&format!("/v1/tasks/{task}/projects/{PROJECT}/sessions/{s}"));
        for (method, path, body) in [
            (
                "POST",
                format!("{url}/entries"),
                json!({"entries": [{"type": "user", "n": 1}]}),
            ),
            (
                "POST",
                format!("{url}/entries?subpath=subagents/x"),
                json!({"entries": [{"type": "user"}]}),
            ),
            (
                "PUT",
                format!("{url}/summary"),
                json!({"data": {"t": 1}, "expected_version": 0}),
            ),
            (
                "PUT",
                gw.url(&format!("/v1/tasks/{task}/binding")),
                json!({"claude_session_id": s, "project_key": PROJECT, "cwd": "/workspace/t"}),
            ),
        ] {
            let resp = gw
                .http
                .request(method.parse().unwrap(), &path)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "seed {path}: {}", resp.status());
        }
    }
    let before = storage_fingerprint(dir.path());
    let cases = corpus(&a, &b, &s);
    assert!(cases.len() >= 80, "the corpus has {} requests", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let (status, headers, body) =
            raw_request(&gw.base_url, c.method, &c.path, &c.headers, &c.body).await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let message = body["error"]["message"].as_str().unwrap_or("");
        let request_id = headers.get("x-request-id").map(String::as_str);
        if status >= 500
            || status != c.status
            || body["error"]["code"] != c.code
            || !message.contains(&c.message)
            || request_id.is_none()
            || body["error"]["request_id"].as_str() != request_id
        {
            failures.push(format!(
                "{}: expected {} {} containing {:?}, got {status} {body}",
                c.what, c.status, c.code, c.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        storage_fingerprint(dir.path()),
        before,
        "a refused request changed stored data"
    );
    gw.stop().await;
}
