//! What operators ask of the fleet: tasks listed newest activity first, one
//! task in detail, fleet totals, and a task's compliance erasure.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{keys, Engine};
use crate::backend::{Page, SessionRecord, TaskCursor, TaskRow};
use crate::domain::{MirrorFailure, SessionKey, TaskId};
use crate::error::Error;

/// Most mirror failures read to find one task's (the catalog keeps the
/// recent ones; older ones are not shown).
const FAILURES_SCANNED: usize = 5_000;
/// Most failures shown for one task.
const FAILURES_SHOWN: usize = 100;
/// Most erasure rounds (each deletes what it finds, the last finds nothing).
const ERASE_ROUNDS: usize = 5;
/// Deletions in flight at once during an erasure.
const DELETES_AT_ONCE: usize = 16;

/// One task in detail.
#[derive(Debug)]
pub struct TaskDetail {
    /// Its catalog row (binding, epoch, counters); `None` when the catalog
    /// has no item for it yet.
    pub row: Option<TaskRow>,
    /// Every transcript record, ascending by key.
    pub transcripts: Vec<(SessionKey, SessionRecord)>,
    /// Its recent mirror failures (drifts excluded), newest first.
    pub failures: Vec<MirrorFailure>,
    /// Its recent project-key drifts, newest first.
    pub drift: Vec<MirrorFailure>,
}

/// Fleet totals.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct FleetStats {
    /// Tasks in the listing.
    pub tasks: u64,
    /// Main transcripts.
    pub sessions: u64,
    /// Subagent transcripts.
    pub subkeys: u64,
    /// Parts appended.
    pub parts: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// Entries appended.
    pub entries: u64,
    /// Appends acknowledged in the last 60 minutes (counted per minute,
    /// flushed by each instance every few seconds).
    pub appends_last_hour: u64,
    /// Mirror failures kept in the last hour.
    pub failures_last_hour: u64,
    /// When these were taken, epoch ms.
    pub at_ms: u64,
}

/// What an erasure removed.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ErasureReceipt {
    /// The task.
    pub task_id: String,
    /// Objects deleted (parts, snapshots, chunks, seals).
    pub objects_removed: u64,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Catalog rows deleted: transcript records, idempotency records, the
    /// task's item (binding, epoch, totals) and its kept mirror failures.
    pub catalog_rows_removed: u64,
    /// When the erasure finished, epoch ms.
    pub erased_ms: u64,
    /// `sha256:<hex>` over the removed objects' keys (relative to the
    /// bucket, sorted, each followed by a newline).
    pub digest: String,
}

/// `sha256:<hex>` over `keys`, each followed by a newline.
pub fn keys_digest<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    let mut hasher = Sha256::new();
    for key in keys {
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

impl Engine {
    /// Tasks newest activity first, after `after`, at most `limit`.
    pub async fn list_tasks(
        &self,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Page<TaskRow>, Error> {
        Ok(self.inner.catalog.list_tasks(after, limit).await?)
    }

    /// One task in detail; `None` when the catalog knows nothing of it.
    pub async fn task_detail(&self, task: &TaskId) -> Result<Option<TaskDetail>, Error> {
        let (row, transcripts) = tokio::try_join!(
            async { Ok::<_, Error>(self.inner.catalog.get_task(task).await?) },
            self.task_records(task),
        )?;
        let (failures, drift) = self.task_failures(task).await?;
        if row.is_none() && transcripts.is_empty() && failures.is_empty() && drift.is_empty() {
            return Ok(None);
        }
        Ok(Some(TaskDetail {
            row,
            transcripts,
            failures,
            drift,
        }))
    }

    /// The task's recent failures and drifts, newest first.
    async fn task_failures(
        &self,
        task: &TaskId,
    ) -> Result<(Vec<MirrorFailure>, Vec<MirrorFailure>), Error> {
        let (mut failures, mut drift) = (Vec::new(), Vec::new());
        let mut kept = self.kept_failures().take(FAILURES_SCANNED);
        while let Some(f) = kept.try_next().await? {
            if f.task_id != task.as_str() {
                continue;
            }
            let list = if f.is_drift() {
                &mut drift
            } else {
                &mut failures
            };
            if list.len() < FAILURES_SHOWN {
                list.push(f);
            }
        }
        Ok((failures, drift))
    }

    /// Fleet totals: the listing's totals summed, appends from the
    /// per-minute counters, failures from the kept ones.
    pub async fn fleet_stats(&self) -> Result<FleetStats, Error> {
        let now = self.now_ms();
        let hour_ago = now.saturating_sub(3_600_000);
        let mut stats = FleetStats {
            at_ms: now,
            ..FleetStats::default()
        };
        let mut after: Option<TaskCursor> = None;
        loop {
            let page = self.inner.catalog.list_tasks(after.as_ref(), 1000).await?;
            for row in &page.items {
                let Some(a) = &row.activity else { continue };
                stats.tasks += 1;
                stats.sessions += a.sessions;
                stats.subkeys += a.subkeys;
                stats.parts += a.parts;
                stats.bytes += a.bytes;
                stats.entries += a.entries;
            }
            after = page.items.last().and_then(|r| {
                r.activity.as_ref().map(|a| TaskCursor {
                    active_ms: a.active_ms,
                    task_id: r.task_id.clone(),
                })
            });
            if !page.more || after.is_none() {
                break;
            }
        }
        // This minute and the 59 before it.
        let (appends, failures) = tokio::try_join!(
            async {
                Ok::<_, Error>(
                    (self.inner.catalog)
                        .appends_between(now.saturating_sub(59 * 60_000), now)
                        .await?,
                )
            },
            self.failures_since(hour_ago),
        )?;
        stats.appends_last_hour = appends + self.unflushed_appends();
        stats.failures_last_hour = failures;
        Ok(stats)
    }

    /// Kept mirror failures at or after `since_ms` (at most [`FAILURES_SCANNED`]).
    async fn failures_since(&self, since_ms: u64) -> Result<u64, Error> {
        (self.kept_failures().take(FAILURES_SCANNED))
            .try_take_while(|f| std::future::ready(Ok(f.at_ms >= since_ms)))
            .try_fold(0, |count, _| std::future::ready(Ok(count + 1)))
            .await
    }

    /// Erases a task for compliance: every object under its directory and
    /// every catalog row of it, in rounds until a round finds nothing (an
    /// append racing the erasure lands in an earlier round and is erased,
    /// or finds its record gone and fails with `task_erased`, removing its
    /// own part). Idempotent: erasing an erased task removes nothing.
    pub async fn erase_task(&self, task: &TaskId) -> Result<ErasureReceipt, Error> {
        let _gate = self.inner.activity.gate.write().await;
        // From here on writes to the task are refused (every write reads
        // the fence before it writes); those already past it land in a
        // round below, or find their record gone and remove their part.
        let began = self.now_ms();
        let had_item = self.inner.catalog.begin_erasure(task, began).await?;
        let mut removed: BTreeMap<String, u64> = BTreeMap::new();
        let mut rows = u64::from(had_item);
        let mut settled = false;
        for _ in 0..ERASE_ROUNDS {
            let keys = self.forget_task_heads(task).await?;
            let objects = self.erase_objects(task).await?;
            let catalog = self.inner.catalog.erase_task(task).await?;
            rows += catalog;
            let found = !objects.is_empty() || catalog > 0 || !keys.is_empty();
            removed.extend(objects);
            if !found {
                settled = true;
                break;
            }
        }
        if !settled {
            return Err(Error::Conflict(format!(
                "task {task} kept changing through {ERASE_ROUNDS} erasure rounds; \
                 what was found is erased, run the erasure again"
            )));
        }
        self.inner.catalog.end_erasure(task, began).await?;
        self.forget_pending(task);
        let receipt = ErasureReceipt {
            task_id: task.to_string(),
            objects_removed: removed.len() as u64,
            bytes_removed: removed.values().sum(),
            catalog_rows_removed: rows,
            erased_ms: self.now_ms(),
            digest: keys_digest(removed.keys()),
        };
        tracing::info!(
            target: "audit",
            event = "task_erased",
            task_id = %receipt.task_id,
            objects_removed = receipt.objects_removed,
            bytes_removed = receipt.bytes_removed,
            catalog_rows_removed = receipt.catalog_rows_removed,
            digest = %receipt.digest,
            "task erased"
        );
        Ok(receipt)
    }

    /// Makes this instance read every known transcript of `task` again
    /// before its next write (waiting for appends in flight here), and
    /// returns those transcripts' keys that still have a catalog record.
    async fn forget_task_heads(&self, task: &TaskId) -> Result<Vec<SessionKey>, Error> {
        let recorded: Vec<SessionKey> = (self.task_records(task).await?)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let cached: Vec<SessionKey> = {
            let heads = self.inner.heads.lock().unwrap_or_else(|p| p.into_inner());
            heads
                .keys()
                .filter(|k| k.task_id() == task)
                .cloned()
                .collect()
        };
        for key in recorded.iter().chain(&cached) {
            let lock = self.head_lock(key);
            let mut head = lock.lock().await;
            *head = super::Head::default();
        }
        Ok(recorded)
    }

    /// Deletes every object under the task's directory; returns each
    /// removed object's stored key and size.
    async fn erase_objects(&self, task: &TaskId) -> Result<BTreeMap<String, u64>, Error> {
        let root = keys::task_dir(task);
        let listed: Vec<crate::backend::Listed> = (self.inner.objects)
            .list_all(&root, None, true)
            .try_collect()
            .await?;
        let objects = &self.inner.objects;
        stream::iter(listed)
            .map(|item| async move {
                objects.delete(&item.key).await?;
                Ok::<_, Error>((objects.stored_key(&item.key), item.size))
            })
            .buffer_unordered(DELETES_AT_ONCE)
            .try_collect()
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_no_keys_is_the_empty_sha256() {
        assert_eq!(
            keys_digest([]),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let keys = ["a/b".to_string(), "c".to_string()];
        let expected = format!("sha256:{}", hex::encode(Sha256::digest(b"a/b\nc\n")));
        assert_eq!(keys_digest(&keys), expected);
    }
}
