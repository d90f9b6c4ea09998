//! Mirror failures: every way a transcript can end up with a gap is counted
//! (`tg.mirror.failures{reason}`), logged, and kept in the catalog's
//! bounded store of recent failures for the admin API, so an operator sees
//! the gap before an agent fails to resume from it. Kept: writes the gateway
//! failed, chains found broken, failures clients report (those never reached
//! the gateway), and appends whose project key drifted from the task's
//! binding (a resume elsewhere would look in the wrong place).
//!
//! Keeping a failure is best effort: a catalog that cannot take it is logged,
//! never the caller's error.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, TryStreamExt};

use super::Engine;
use crate::backend::Page;
use crate::domain::{
    FailureOrigin, MirrorFailure, ProjectKey, SessionId, SessionKey, Subpath, TaskId,
};
use crate::error::Error;
use crate::metrics::METRICS;

/// The reason a project-key drift is kept under.
const DRIFT: &str = MirrorFailure::DRIFT;
/// How long "this task has no binding" is believed before asking again.
const UNBOUND_TTL: Duration = Duration::from_secs(10);
/// Failures read per catalog page by [`Engine::kept_failures`].
const FAILURE_PAGE: usize = 500;
/// Most tasks whose binding (or drift) this instance remembers.
const REMEMBERED: usize = 4096;

/// What this instance knows of tasks' bindings, for the drift check.
#[derive(Default)]
pub(super) struct BindingCache {
    /// The bound project key, or `None` (unbound) with when that was read.
    projects: HashMap<TaskId, (Option<String>, Instant)>,
    /// Drifts already reported, so each is kept once.
    reported: HashSet<(TaskId, ProjectKey)>,
}

/// A failure the gateway saw on `key` at `at_ms`.
fn gateway_failure(
    at_ms: u64,
    key: &SessionKey,
    reason: &str,
    detail: &str,
    request_id: Option<String>,
) -> MirrorFailure {
    MirrorFailure {
        id: ulid::Ulid::new().to_string(),
        at_ms,
        task_id: key.task_id().to_string(),
        project_key: Some(key.session.project_key.to_string()),
        session_id: Some(key.session.session_id.to_string()),
        subpath: key.subpath.as_ref().map(|s| s.to_string()),
        reason: reason.to_string(),
        origin: FailureOrigin::Gateway,
        detail: truncate(detail),
        request_id,
    }
}

/// `detail` cut to [`MirrorFailure::MAX_DETAIL`] characters.
fn truncate(detail: &str) -> String {
    match detail.char_indices().nth(MirrorFailure::MAX_DETAIL) {
        Some((cut, _)) => format!("{}…", &detail[..cut]),
        None => detail.to_string(),
    }
}

/// A mirror failure a client saw and the gateway did not.
#[derive(Clone, Debug)]
pub struct ClientReport {
    /// The transcript's project key, when the failure was on one.
    pub project_key: Option<ProjectKey>,
    /// The transcript's session, when the failure was on one.
    pub session_id: Option<SessionId>,
    /// The subkey, when the failure was on one (needs `session_id`).
    pub subpath: Option<Subpath>,
    /// What the client saw: 1 to [`ClientReport::MAX_ERROR`] characters.
    pub error: String,
    /// When it happened, epoch ms (default: now); at most a day ahead.
    pub occurred_ms: Option<u64>,
}

impl ClientReport {
    /// The longest `error` accepted.
    pub const MAX_ERROR: usize = 4096;
    /// How far ahead of the gateway's clock `occurred_ms` may be.
    const MAX_AHEAD_MS: u64 = 24 * 3600 * 1000;
}

impl Engine {
    /// Validates, counts, logs and keeps a client's report; returns its id.
    pub async fn report_from_client(
        &self,
        task: &TaskId,
        report: ClientReport,
        request_id: Option<String>,
    ) -> Result<String, Error> {
        if report.subpath.is_some() && report.session_id.is_none() {
            return Err(Error::invalid("a subpath needs its session_id"));
        }
        let error = report.error.trim();
        if error.is_empty() || error.chars().count() > ClientReport::MAX_ERROR {
            return Err(Error::invalid(format!(
                "error must be 1 to {} characters",
                ClientReport::MAX_ERROR
            )));
        }
        let now = self.now_ms();
        let at_ms = report.occurred_ms.unwrap_or(now);
        if at_ms > now + ClientReport::MAX_AHEAD_MS {
            return Err(Error::invalid(
                "occurred_ms is more than a day in the future",
            ));
        }
        let failure = MirrorFailure {
            id: ulid::Ulid::new().to_string(),
            at_ms,
            task_id: task.to_string(),
            project_key: report.project_key.map(|p| p.to_string()),
            session_id: report.session_id.map(|s| s.to_string()),
            subpath: report.subpath.map(|s| s.to_string()),
            reason: "client_reported".into(),
            origin: FailureOrigin::Client,
            detail: truncate(error),
            request_id,
        };
        let id = failure.id.clone();
        self.report_failure(failure).await;
        Ok(id)
    }

    /// What this instance knows of bindings (a poisoned lock still holds a
    /// usable cache).
    fn binding_cache(&self) -> std::sync::MutexGuard<'_, BindingCache> {
        self.inner
            .bindings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Counts, logs and keeps a mirror failure.
    pub async fn report_failure(&self, failure: MirrorFailure) {
        // A drift has its own counter (`tg.project_key.drift`): the write
        // landed, only under another project key than the binding's.
        if failure.reason != DRIFT {
            METRICS.mirror_failure(&failure.reason);
        }
        tracing::warn!(
            task_id = %failure.task_id,
            project_key = failure.project_key.as_deref().unwrap_or(""),
            session_id = failure.session_id.as_deref().unwrap_or(""),
            subpath = failure.subpath.as_deref().unwrap_or(""),
            reason = %failure.reason,
            origin = ?failure.origin,
            request_id = failure.request_id.as_deref().unwrap_or(""),
            detail = %failure.detail,
            "mirror failure"
        );
        if let Err(e) = self.inner.catalog.record_failure(&failure).await {
            tracing::warn!(error = %crate::error::chain(&e), "could not keep a mirror failure in the catalog");
        }
        if let Ok(task) = TaskId::new(failure.task_id.as_str()) {
            self.note_activity(&task);
        }
    }

    /// Keeps, in the background, a failure the gateway saw on `key`: an
    /// append it failed (`reason` is its error code) or a broken chain.
    pub fn report_gateway_failure(
        &self,
        key: &SessionKey,
        reason: &str,
        detail: &str,
        request_id: Option<String>,
    ) {
        let failure = gateway_failure(self.now_ms(), key, reason, detail, request_id);
        self.report_failure_later(failure);
    }

    /// [`Engine::report_failure`] without waiting for it.
    fn report_failure_later(&self, failure: MirrorFailure) {
        let engine = self.clone();
        self.inner
            .background
            .spawn(async move { engine.report_failure(failure).await });
    }

    /// Recent mirror failures, newest first, before the `before` cursor.
    pub async fn failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<MirrorFailure>, Error> {
        Ok(self.inner.catalog.list_failures(before, limit).await?)
    }

    /// Every kept failure, newest first, as one stream: pages are read as
    /// the stream is, so a reader that stops early reads no further.
    pub(super) fn kept_failures(&self) -> BoxStream<'_, Result<MirrorFailure, Error>> {
        // The state is the cursor of the next page; `None` once done.
        let pages = stream::try_unfold(Some(None::<String>), move |cursor| async move {
            let Some(before) = cursor else {
                return Ok::<_, Error>(None);
            };
            let page = self.failures(before.as_deref(), FAILURE_PAGE).await?;
            let next = match page.items.last() {
                Some(last) if page.more => Some(Some(last.sort_key())),
                _ => None,
            };
            let items = stream::iter(page.items.into_iter().map(Ok));
            Ok(Some((items, next)))
        });
        Box::pin(pages.try_flatten())
    }

    /// Checks an append's project key against its task's binding; a drift is
    /// never refused, but counted, logged and kept (once per task and key).
    pub(super) fn check_drift(&self, key: &SessionKey) {
        let task = key.task_id();
        let known = {
            let cache = self.binding_cache();
            cache
                .projects
                .get(task)
                .and_then(|(project, read)| match project {
                    Some(p) => Some(Some(p.clone())),
                    None if read.elapsed() < UNBOUND_TTL => Some(None),
                    None => None,
                })
        };
        match known {
            Some(bound) => self.note_drift(key, bound.as_deref()),
            None => {
                // Not known yet: ask the catalog without holding up the append.
                let engine = self.clone();
                let key = key.clone();
                self.inner.background.spawn(async move {
                    let bound = match engine.inner.catalog.get_binding(key.task_id()).await {
                        Ok(b) => b.map(|b| b.binding.project_key),
                        Err(_) => return,
                    };
                    {
                        let mut cache = engine.binding_cache();
                        if cache.projects.len() >= REMEMBERED {
                            cache.projects.clear();
                        }
                        cache
                            .projects
                            .insert(key.task_id().clone(), (bound.clone(), Instant::now()));
                    }
                    engine.note_drift(&key, bound.as_deref());
                });
            }
        }
    }

    fn note_drift(&self, key: &SessionKey, bound: Option<&str>) {
        let Some(bound) = bound else {
            return;
        };
        let project = &key.session.project_key;
        if bound == project.as_str() {
            return;
        }
        METRICS.project_key_drift.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut cache = self.binding_cache();
            if cache.reported.len() >= REMEMBERED {
                cache.reported.clear();
            }
            cache
                .reported
                .insert((key.task_id().clone(), project.clone()))
        };
        if first {
            let detail = format!(
                "task {} is bound to project key {bound:?} but appends under {:?}: the \
                 agent's working directory moved, so a resume from the binding would look \
                 in the wrong place",
                key.task_id(),
                project.as_str()
            );
            self.report_gateway_failure(key, DRIFT, &detail, None);
        }
    }

    /// Forgets what this instance knows of a task's binding (it was just bound).
    pub(super) fn forget_binding(&self, task: &TaskId) {
        let mut cache = self.binding_cache();
        cache.projects.remove(task);
    }
}
