//! `PUT`/`GET /v1/tasks/{task_id}/binding` (first writer wins) and
//! `POST /v1/tasks/{task_id}/lease` (a new writer epoch).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AppJson, TaskPath, WriterEpoch};
use super::{paths, AppState, DataEnvelope};
use crate::domain::{BindOutcome, Binding, StoredBinding};
use crate::error::Error;

/// Routes of this resource, each described by its handler's `#[utoipa::path]`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_binding, get_binding))
        .routes(routes!(lease))
}

/// The values to bind a task to, from the run's first `ResultMessage`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "claude_session_id": "8f14e45f-ceea-467f-a2b1-5b1f1c7e9d02",
    "project_key": "-workspace-01JD8X3Q6W7N5K2M4P9R0T1V3Y",
    "cwd": "/workspace/01JD8X3Q6W7N5K2M4P9R0T1V3Y"
}))]
pub struct BindingBody {
    /// The Claude session UUID: 1–128 of `[A-Za-z0-9._-]`.
    pub claude_session_id: String,
    /// The SDK project key of `cwd`: 1–255 of `[A-Za-z0-9-]`.
    pub project_key: String,
    /// The run's absolute working directory, at most 4096 bytes.
    pub cwd: String,
}

/// A task's binding.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "claude_session_id": "8f14e45f-ceea-467f-a2b1-5b1f1c7e9d02",
    "project_key": "-workspace-01JD8X3Q6W7N5K2M4P9R0T1V3Y",
    "cwd": "/workspace/01JD8X3Q6W7N5K2M4P9R0T1V3Y",
    "created_ms": 1764979200000u64
}))]
pub struct BindingView {
    /// The Claude session to resume.
    pub claude_session_id: String,
    /// The SDK project key of `cwd`.
    pub project_key: String,
    /// The working directory to resume in.
    pub cwd: String,
    /// When the first writer bound it, epoch ms.
    pub created_ms: u64,
}

impl From<StoredBinding> for BindingView {
    fn from(stored: StoredBinding) -> Self {
        Self {
            claude_session_id: stored.binding.claude_session_id,
            project_key: stored.binding.project_key,
            cwd: stored.binding.cwd,
            created_ms: stored.created_ms,
        }
    }
}

/// A writer lease.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LeaseView {
    /// Send as `X-Writer-Epoch` with every append; older epochs are refused.
    pub epoch: u64,
}

/// Binds the task to a Claude session; the first binding wins.
#[utoipa::path(
    put,
    path = paths::BINDING,
    tag = "tasks",
    params(("task_id" = String, Path, description = "Task id")),
    request_body = BindingBody,
    responses(
        (status = 201, description = "Bound by this request", body = DataEnvelope<BindingView>),
        (status = 200, description = "Already bound to the same values", body = DataEnvelope<BindingView>),
        (status = 400, description = "Invalid input", body = super::error::ErrorEnvelope),
        (status = 409, description = "`binding_conflict`: already bound to different values", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn put_binding(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
    WriterEpoch(writer_epoch): WriterEpoch,
    AppJson(body): AppJson<BindingBody>,
) -> Result<(StatusCode, Json<DataEnvelope<BindingView>>), Error> {
    let binding = Binding {
        claude_session_id: body.claude_session_id,
        project_key: body.project_key,
        cwd: body.cwd,
    };
    let (status, stored) = match state.engine.bind(&task, binding, writer_epoch).await? {
        BindOutcome::Created(stored) => (StatusCode::CREATED, stored),
        BindOutcome::Existing(stored) => (StatusCode::OK, stored),
    };
    Ok((
        status,
        Json(DataEnvelope {
            data: stored.into(),
        }),
    ))
}

/// Reads the task's binding.
#[utoipa::path(
    get,
    path = paths::BINDING,
    tag = "tasks",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The binding", body = DataEnvelope<BindingView>),
        (status = 404, description = "The task is not bound", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn get_binding(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
) -> Result<Json<DataEnvelope<BindingView>>, Error> {
    let stored = state
        .engine
        .binding(&task)
        .await?
        .ok_or_else(|| Error::not_found(format!("task {task} is not bound")))?;
    Ok(Json(DataEnvelope {
        data: stored.into(),
    }))
}

/// Takes a new writer lease: an epoch higher than every earlier one.
#[utoipa::path(
    post,
    path = paths::LEASE,
    tag = "tasks",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The new epoch; appends with an older `X-Writer-Epoch` now get 409 `stale_writer`", body = DataEnvelope<LeaseView>),
        (status = 400, description = "Invalid task id", body = super::error::ErrorEnvelope),
        (status = 503, description = "Backend unavailable", body = super::error::ErrorEnvelope),
    )
)]
pub async fn lease(
    State(state): State<AppState>,
    TaskPath(task): TaskPath,
) -> Result<Json<DataEnvelope<LeaseView>>, Error> {
    let epoch = state.engine.lease(&task).await?;
    Ok(Json(DataEnvelope {
        data: LeaseView { epoch },
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use crate::api::{router, AppState, Readiness};
    use crate::backend::embedded::{FsObjects, RedbCatalog};
    use crate::domain::TaskId;
    use crate::engine::{Engine, EngineConfig};

    fn app(dir: &std::path::Path) -> (axum::Router, Engine) {
        let engine = Engine::new(
            Arc::new(FsObjects::open(dir).unwrap()),
            Arc::new(RedbCatalog::open(dir).unwrap()),
            EngineConfig::default(),
        );
        let state = AppState {
            engine: engine.clone(),
            readiness: Readiness::new(),
            appends: tokio_util::task::TaskTracker::new(),
            in_flight: Default::default(),
        };
        let config = crate::config::Config {
            body_limit_bytes: 1 << 20,
            request_timeout_secs: 10,
            ..crate::config::Config::default()
        };
        let open = crate::auth::Guard {
            verifier: None,
            metrics_require_auth: false,
        };
        let limits = config.http_limits(open);
        (router(state, &limits), engine)
    }

    async fn call(
        app: &axum::Router,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn body(id: &str) -> Value {
        json!({"claude_session_id": id, "project_key": "-workspace-t1", "cwd": "/workspace/t1"})
    }

    #[tokio::test]
    async fn first_binding_wins_and_the_same_binding_again_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app(dir.path());
        let uri = "/v1/tasks/t1/binding";
        let (status, got) = call(&app, Method::GET, uri, None).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (404, Some("not_found"))
        );
        let (status, created) = call(&app, Method::PUT, uri, Some(body("sess-a"))).await;
        assert_eq!(status, 201);
        assert_eq!(created["data"]["claude_session_id"], "sess-a");
        assert_eq!(created["data"]["cwd"], "/workspace/t1");
        let (status, again) = call(&app, Method::PUT, uri, Some(body("sess-a"))).await;
        assert_eq!(status, 200);
        assert_eq!(again, created, "a repeat returns the stored binding");
        let (status, conflict) = call(&app, Method::PUT, uri, Some(body("sess-b"))).await;
        assert_eq!(
            (status, conflict["error"]["code"].as_str()),
            (409, Some("binding_conflict"))
        );
        assert!(conflict["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sess-a"));
        let (status, got) = call(&app, Method::GET, uri, None).await;
        assert_eq!((status, &got), (200, &created));
    }

    #[tokio::test]
    async fn invalid_bindings_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (app, engine) = app(dir.path());
        let uri = "/v1/tasks/t1/binding";
        for bad in [
            json!({"claude_session_id": "a/b", "project_key": "p", "cwd": "/w"}),
            json!({"claude_session_id": "a", "project_key": "p.q", "cwd": "/w"}),
            json!({"claude_session_id": "a", "project_key": "p", "cwd": "relative"}),
            json!({"claude_session_id": "a", "project_key": "p"}),
        ] {
            let (status, got) = call(&app, Method::PUT, uri, Some(bad.clone())).await;
            assert_eq!(
                (status, got["error"]["code"].as_str()),
                (400, Some("invalid_request")),
                "{bad}"
            );
        }
        let (status, _) = call(
            &app,
            Method::PUT,
            "/v1/tasks/a..b%2Fc/binding",
            Some(body("s")),
        )
        .await;
        assert_eq!(status, 400);
        assert!(engine
            .binding(&TaskId::new("t1").unwrap())
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn leases_hand_out_increasing_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let (app, engine) = app(dir.path());
        for expected in 1..=3 {
            let (status, got) = call(&app, Method::POST, "/v1/tasks/t1/lease", None).await;
            assert_eq!(
                (status, got["data"]["epoch"].as_u64()),
                (200, Some(expected))
            );
        }
        let (_, other) = call(&app, Method::POST, "/v1/tasks/t2/lease", None).await;
        assert_eq!(other["data"]["epoch"], 1, "epochs are per task");
        assert_eq!(
            engine
                .current_epoch(&TaskId::new("t1").unwrap())
                .await
                .unwrap(),
            3
        );
    }
}
