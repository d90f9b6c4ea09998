//! What the admin listing knows of tasks: each task's totals over its
//! catalog records, stored in the catalog shortly after the task changes
//! (once per [`SETTLE`] per task and instance, off the request path), and
//! the fleet's appends counted per minute (flushed every few seconds).
//! Neither is on an append's path: an append only marks its task.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::Engine;
use crate::backend::{Page, SessionRecord, TaskActivity};
use crate::domain::{SessionKey, TaskId};
use crate::error::Error;

/// How long after a change a task's totals are taken: changes in between
/// share one refresh.
pub(super) const SETTLE: Duration = Duration::from_secs(1);
/// Records read per catalog page while totalling a task.
const PAGE: usize = 500;

/// Tasks waiting for their totals, and appends not yet counted in the catalog.
#[derive(Default)]
pub(super) struct Activity {
    /// Tasks with a refresh scheduled.
    pending: Mutex<HashSet<TaskId>>,
    /// Appends since the last flush.
    appends: AtomicU64,
    /// Held shared by a refresh and exclusively by an erasure, so a refresh
    /// here never writes totals read before an erasure after it.
    pub(super) gate: tokio::sync::RwLock<()>,
}

/// A task's totals over `records` (transcripts deleted since hold no parts
/// and are not counted).
pub(super) fn totals<'a>(
    records: impl Iterator<Item = (&'a SessionKey, &'a SessionRecord)>,
    now_ms: u64,
) -> TaskActivity {
    let mut t = TaskActivity {
        active_ms: now_ms,
        ..TaskActivity::default()
    };
    for (key, record) in records.filter(|(_, r)| r.parts > 0) {
        match key.subpath {
            None => t.sessions += 1,
            Some(_) => t.subkeys += 1,
        }
        t.parts += record.parts;
        t.bytes += record.bytes;
        t.entries += record.entries;
        t.last_append_ms = t.last_append_ms.max(record.mtime);
    }
    t
}

impl Engine {
    /// Marks `task` changed: its totals are taken again [`SETTLE`] from now.
    pub(super) fn note_activity(&self, task: &TaskId) {
        let fresh = {
            let mut pending =
                (self.inner.activity.pending.lock()).unwrap_or_else(|p| p.into_inner());
            pending.insert(task.clone())
        };
        if !fresh {
            return;
        }
        // A weak handle while waiting: an engine dropped meanwhile (and its
        // stores, which an embedded backend keeps locked) is not held open.
        let engine = std::sync::Arc::downgrade(&self.inner);
        let task = task.clone();
        let stopping = self.inner.stopping.clone();
        self.inner.background.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(SETTLE) => {}
                _ = stopping.cancelled() => {}
            }
            let Some(inner) = engine.upgrade() else {
                return;
            };
            let engine = Engine { inner };
            engine.forget_pending(&task);
            if let Err(e) = engine.refresh_activity(&task).await {
                tracing::warn!(task = %task, error = %crate::error::chain(&e), "could not store a task's totals; the next change stores them");
            }
        });
    }

    /// Counts one acknowledged append for the fleet's per-minute counter.
    pub(super) fn note_append(&self) {
        self.inner.activity.appends.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends counted here and not yet flushed to the catalog.
    pub(super) fn unflushed_appends(&self) -> u64 {
        self.inner.activity.appends.load(Ordering::Relaxed)
    }

    /// Drops `task`'s scheduled refresh (it runs anyway if already started).
    pub(super) fn forget_pending(&self, task: &TaskId) {
        let mut pending = (self.inner.activity.pending.lock()).unwrap_or_else(|p| p.into_inner());
        pending.remove(task);
    }

    /// Every transcript record of `task`, page by page.
    pub(super) async fn task_records(
        &self,
        task: &TaskId,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, Error> {
        let mut all = Vec::new();
        loop {
            let after = all
                .last()
                .map(|(k, _): &(SessionKey, SessionRecord)| k.clone());
            let Page { items, more } = self
                .inner
                .catalog
                .list_task_sessions(task, after.as_ref(), PAGE)
                .await?;
            all.extend(items);
            if !more {
                return Ok(all);
            }
        }
    }

    /// Takes `task`'s totals and stores them; a task that holds no
    /// transcript and has no binding leaves the listing.
    pub(super) async fn refresh_activity(&self, task: &TaskId) -> Result<(), Error> {
        let _gate = self.inner.activity.gate.read().await;
        let records = self.task_records(task).await?;
        let totals = totals(records.iter().map(|(k, r)| (k, r)), self.now_ms());
        let keep = totals.sessions + totals.subkeys > 0
            || self.inner.catalog.get_binding(task).await?.is_some();
        let activity = keep.then_some(&totals);
        self.inner.catalog.put_task_activity(task, activity).await?;
        Ok(())
    }

    /// Flushes the append counter every `every` until shutdown, and once more then.
    pub fn start_counters(&self, every: Duration) {
        let engine = self.clone();
        let stopping = self.inner.stopping.clone();
        self.inner.background.spawn(async move {
            loop {
                let stop = tokio::select! {
                    _ = tokio::time::sleep(every) => false,
                    _ = stopping.cancelled() => true,
                };
                engine.flush_appends().await;
                if stop {
                    return;
                }
            }
        });
    }

    /// Adds the appends counted since the last flush to the catalog's
    /// counter of this minute; a failed flush keeps them for the next.
    async fn flush_appends(&self) {
        let counted = self.inner.activity.appends.swap(0, Ordering::Relaxed);
        if counted == 0 {
            return;
        }
        if let Err(e) = self
            .inner
            .catalog
            .count_appends(self.now_ms(), counted)
            .await
        {
            tracing::debug!(error = %crate::domain::error_chain(&e), "could not count appends; retrying with the next flush");
            self.inner
                .activity
                .appends
                .fetch_add(counted, Ordering::Relaxed);
        }
    }
}
