//! Mirror failures: what clients report, what the gateway fails or finds
//! broken, and project-key drift are each counted by reason, logged and kept
//! where an operator can list them.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};
use transcript_gateway::backend::{Listed, ObjectBody, ObjectPort, Page, PortError};
use transcript_gateway::config::Config;
use transcript_gateway::domain::{FailureOrigin, MirrorFailure};
use transcript_gateway::metrics::METRICS;

use crate::common::{embedded_ports, fresh_id, mint, ChildGateway, Session, TestGateway, PROJECT};

async fn post(gw: &TestGateway, path: &str, body: Value) -> (u16, Value, Option<String>) {
    let resp = gw
        .http
        .request(Method::POST, gw.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.json().await.unwrap_or(Value::Null), id)
}

/// The kept failures of `task`, newest first.
async fn kept(gw: &TestGateway, task: &str) -> Vec<MirrorFailure> {
    let mut out = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = gw.engine.failures(before.as_deref(), 500).await.unwrap();
        out.extend(page.items.iter().filter(|f| f.task_id == task).cloned());
        match page.items.last() {
            Some(last) if page.more => before = Some(last.sort_key()),
            _ => return out,
        }
    }
}

#[tokio::test]
async fn client_reports_are_validated_counted_and_kept() {
    let gw = TestGateway::embedded().await;
    let task = fresh_id("task");
    let path = format!("/v1/tasks/{task}/mirror-failures");
    let before = METRICS.mirror_failures_of("client_reported");
    let (status, body, request_id) = post(
        &gw,
        &path,
        json!({"project_key": PROJECT, "session_id": "s1", "subpath": "subagents/a",
               "error": "append timed out after 60s", "occurred_ms": 1_700_000_000_000u64}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let (status, _, _) = post(&gw, &path, json!({"error": "no key known"})).await;
    assert_eq!(status, 201);
    assert_eq!(METRICS.mirror_failures_of("client_reported"), before + 2);
    let kept = kept(&gw, &task).await;
    assert_eq!(kept.len(), 2);
    let report = kept.iter().find(|f| f.id == id).unwrap();
    assert_eq!(report.origin, FailureOrigin::Client);
    assert_eq!(report.reason, "client_reported");
    assert_eq!(report.at_ms, 1_700_000_000_000);
    assert_eq!(report.subpath.as_deref(), Some("subagents/a"));
    assert_eq!(report.detail, "append timed out after 60s");
    assert_eq!(report.request_id, request_id);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("tg_mirror_failures_total{reason=\"client_reported\"}"),
        "{metrics}"
    );

    for (what, body, message) in [
        (
            "bad project key",
            json!({"project_key": "a_b", "error": "x"}),
            "project_key may contain only",
        ),
        (
            "subpath without session",
            json!({"subpath": "a", "error": "x"}),
            "a subpath needs its session_id",
        ),
        (
            "empty error",
            json!({"error": "  "}),
            "error must be 1 to 4096 characters",
        ),
        (
            "error too long",
            json!({"error": "x".repeat(4097)}),
            "error must be 1 to 4096 characters",
        ),
        (
            "in the future",
            json!({"error": "x", "occurred_ms": u64::MAX / 2}),
            "more than a day in the future",
        ),
        (
            "unknown field",
            json!({"error": "x", "severity": 3}),
            "unknown field `severity`",
        ),
        (
            "no error",
            json!({"project_key": PROJECT}),
            "missing field `error`",
        ),
    ] {
        let (status, got, _) = post(&gw, &path, body).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{what}: {got}"
        );
        assert!(
            got["error"]["message"].as_str().unwrap().contains(message),
            "{what}: {got}"
        );
    }
    assert_eq!(
        kept_count(&gw, &task).await,
        2,
        "refused reports keep nothing"
    );
    gw.stop().await;
}

async fn kept_count(gw: &TestGateway, task: &str) -> usize {
    kept(gw, task).await.len()
}

/// Objects whose writes fail as an unreachable store's would.
struct Unwritable(Arc<dyn ObjectPort>);

#[async_trait]
impl ObjectPort for Unwritable {
    async fn put_if_absent(&self, _: &str, _: Bytes, _: u32) -> Result<(), PortError> {
        Err(PortError::unavailable("injected: the store refuses writes"))
    }
    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError> {
        self.0.get(key).await
    }
    async fn list(
        &self,
        dir: &str,
        after: Option<&str>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError> {
        self.0.list(dir, after, recursive).await
    }
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.delete(key).await
    }
    async fn check(&self) -> Result<(), PortError> {
        Ok(())
    }
}

#[tokio::test]
async fn an_append_the_gateway_fails_is_kept_with_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let gw = TestGateway::over(Arc::new(Unwritable(objects)), catalog, Config::default()).await;
    let s = Session::fresh();
    let before = METRICS.mirror_failures_of("backend_unavailable");
    let resp = gw
        .http
        .post(s.entries(&gw.base_url))
        .json(&json!({"entries": [{"type": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    // Kept in the background: wait for it.
    let mut found = Vec::new();
    for _ in 0..100 {
        found = kept(&gw, &s.task).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(f.origin, FailureOrigin::Gateway);
    assert_eq!(f.reason, "backend_unavailable");
    assert_eq!(f.session_id.as_deref(), Some(s.session.as_str()));
    assert_eq!(f.request_id.as_deref(), Some(request_id.as_str()));
    assert!(f.detail.contains("injected"), "{f:?}");
    assert!(METRICS.mirror_failures_of("backend_unavailable") > before);
    gw.stop().await;
}

#[tokio::test]
async fn an_append_under_another_project_key_than_the_binding_is_kept_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = [
        ("TG_AUTH_SECRET", crate::common::TEST_SECRET),
        ("TG_LOG", "warn"),
    ];
    let gw = ChildGateway::start(&data, &secret).await;
    let http = reqwest::Client::new();
    let task = fresh_id("task");
    let token = mint(&task, "transcripts:write");
    let bound = "-workspace-bound";
    let resp = http
        .put(format!("{}/v1/tasks/{task}/binding", gw.base_url))
        .bearer_auth(&token)
        .json(&json!({"claude_session_id": "s1", "project_key": bound, "cwd": "/workspace/bound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let metric = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("tg_project_key_drift_total "))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let metrics = || async {
        http.get(format!("{}/metrics", gw.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(metric(&metrics().await), 0);
    for project in [bound, "-workspace-moved", "-workspace-moved"] {
        let resp = http
            .post(format!(
                "{}/v1/tasks/{task}/projects/{project}/sessions/s1/entries",
                gw.base_url
            ))
            .bearer_auth(&token)
            .json(&json!({"entries": [{"type": "x"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "a drift is never refused");
    }
    // The binding is read in the background: wait for the counts.
    let mut drift = 0;
    for _ in 0..100 {
        drift = metric(&metrics().await);
        if drift >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(drift >= 1, "drift counted");
    let log = gw.log.clone();
    gw.terminate();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("project_key_drift") && l.contains(&task))
        .collect();
    assert_eq!(lines.len(), 1, "logged (and kept) once: {text}");
    assert!(
        lines[0].contains(bound) && lines[0].contains("-workspace-moved"),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn admins_list_the_fleets_mirror_failures_newest_first_page_by_page() {
    let test = "admins_list_the_fleets_mirror_failures_newest_first_page_by_page";
    let dir = tempfile::tempdir().unwrap();
    for (backend, objects, catalog) in crate::common::test_stores(test, dir.path()).await {
        let gw = TestGateway::over(objects, catalog, crate::common::auth_config()).await;
        // Three reports from three tasks, one after another.
        let tasks: Vec<String> = (0..3).map(|_| fresh_id("task")).collect();
        let mut ids = Vec::new();
        for (i, task) in tasks.iter().enumerate() {
            let resp = gw
                .http
                .post(gw.url(&format!("/v1/tasks/{task}/mirror-failures")))
                .bearer_auth(mint(task, "transcripts:write"))
                .json(&json!({"error": format!("dropped batch {i}"), "project_key": PROJECT}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "{backend}");
            let body: Value = resp.json().await.unwrap();
            ids.push(body["data"]["id"].as_str().unwrap().to_string());
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let fleet = mint("*", "admin");
        let page = |query: String| {
            let (http, url, token) = (
                gw.http.clone(),
                gw.url(&format!("/admin/v1/failures{query}")),
                fleet.clone(),
            );
            async move {
                let resp = http.get(url).bearer_auth(token).send().await.unwrap();
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
            }
        };
        let (status, first) = page("?limit=2".into()).await;
        assert_eq!(status, 200, "{backend}: {first}");
        let listed = |body: &Value| -> Vec<String> {
            body["data"]["failures"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            listed(&first),
            vec![ids[2].clone(), ids[1].clone()],
            "{backend}: newest first"
        );
        let failure = &first["data"]["failures"][0];
        assert_eq!(failure["task_id"], tasks[2].as_str(), "{backend}");
        assert_eq!(failure["reason"], "client_reported", "{backend}");
        assert_eq!(failure["detail"], "dropped batch 2", "{backend}");
        let token = first["next_token"]
            .as_str()
            .expect("a next page")
            .to_string();
        let (status, second) = page(format!("?limit=2&next_token={token}")).await;
        assert_eq!(status, 200, "{backend}");
        assert_eq!(listed(&second), vec![ids[0].clone()], "{backend}");
        assert!(second["next_token"].is_null(), "{backend}: the last page");

        // A bad limit is refused by name; a task's own admin token is not
        // enough for the fleet's failures.
        let (status, bad) = page("?limit=0".into()).await;
        assert_eq!(
            (status, bad["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{backend}"
        );
        assert!(
            bad["error"]["message"]
                .as_str()
                .unwrap()
                .contains("limit must be 1 to 1000"),
            "{backend}: {bad}"
        );
        let resp = gw
            .http
            .get(gw.url("/admin/v1/failures"))
            .bearer_auth(mint(&tasks[0], "admin"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{backend}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{backend}");
        gw.stop().await;
    }
}
