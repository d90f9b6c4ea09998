//! Route paths, shared by the router and the OpenAPI description.

/// Liveness.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: 503 while draining or when a backend is unreachable.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";
/// Interactive API docs.
pub const DOCS: &str = "/docs";

/// Append (POST) and load (GET) one transcript's entries.
pub const ENTRIES: &str =
    "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/entries";
/// One transcript read as a Durable Streams stream (catch-up, long-poll, SSE).
pub const STREAM: &str = "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/stream";
/// Delete a session (or one subkey).
pub const SESSION: &str = "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}";
/// A session's subkeys.
pub const SUBKEYS: &str =
    "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/subkeys";
/// A session's summary (GET, compare-and-set PUT).
pub const SUMMARY: &str =
    "/v1/tasks/{task_id}/projects/{project_key}/sessions/{session_id}/summary";
/// A project's sessions.
pub const SESSIONS: &str = "/v1/tasks/{task_id}/projects/{project_key}/sessions";
/// A task's binding to its Claude session.
pub const BINDING: &str = "/v1/tasks/{task_id}/binding";
/// Tasks, newest activity first.
pub const ADMIN_TASKS: &str = "/admin/v1/tasks";
/// One task in detail (GET), or its erasure (DELETE).
pub const ADMIN_TASK: &str = "/admin/v1/tasks/{task_id}";
/// Fleet totals.
pub const ADMIN_STATS: &str = "/admin/v1/stats";
/// Compact every transcript of a task now.
pub const ADMIN_COMPACT: &str = "/admin/v1/tasks/{task_id}/compact";
/// Every transcript of a task as one gzip JSON Lines download.
pub const ADMIN_EXPORT: &str = "/admin/v1/tasks/{task_id}/export";
/// Recent mirror failures of the whole fleet, newest first.
pub const ADMIN_FAILURES: &str = "/admin/v1/failures";
/// Mirror failures a client saw (failed appends that never reached the gateway).
pub const MIRROR_FAILURES: &str = "/v1/tasks/{task_id}/mirror-failures";
/// A new writer epoch for a task.
pub const LEASE: &str = "/v1/tasks/{task_id}/lease";

/// Every route path above, for tests that walk the router.
pub const ALL: &[&str] = &[
    HEALTHZ,
    READYZ,
    METRICS,
    OPENAPI,
    DOCS,
    ENTRIES,
    STREAM,
    SESSION,
    SUBKEYS,
    SUMMARY,
    SESSIONS,
    BINDING,
    ADMIN_TASKS,
    ADMIN_TASK,
    ADMIN_STATS,
    ADMIN_COMPACT,
    ADMIN_EXPORT,
    ADMIN_FAILURES,
    MIRROR_FAILURES,
    LEASE,
];
