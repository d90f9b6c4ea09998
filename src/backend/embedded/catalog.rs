//! The catalog in an embedded redb database at `{data_dir}/catalog.redb`.
//!
//! Writes are group-committed (see `group.rs`): many concurrent appends share
//! one fsync, and compare-and-set checks run inside the batch transaction, so
//! they see every earlier write of the batch. Reads never wait for the writer.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::group::{Chore, GroupCommit, WRITE_QUEUE};
use crate::backend::{
    BindOutcome, CatalogPort, IdempotencyRecord, Page, PortError, SessionRecord, SessionWrite,
    StoredBinding, TaskActivity, TaskCursor, TaskRow, Versioned, WriterFence,
};
use crate::domain::{
    MirrorFailure, ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId,
};

/// `task \0 project \0 session \0 subpath` (empty subpath for the main key).
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// `task \0 idempotency-key`.
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// `task`: binding and writer epoch.
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// `{at_ms:013}#{id}`: recent mirror failures, oldest first.
const FAILURES: TableDefinition<&str, &[u8]> = TableDefinition::new("failures");
/// `{u64::MAX - active_ms:020}\0{task}` → nothing: tasks newest activity
/// first (see [`activity_row`]).
const ACTIVITY: TableDefinition<&str, &[u8]> = TableDefinition::new("task_activity");
/// `{minute:013}` (epoch minutes) → appends counted in that minute (JSON).
const APPENDS: TableDefinition<&str, &[u8]> = TableDefinition::new("appends");
/// How long per-minute append counters are kept.
const APPENDS_KEPT_MINUTES: u64 = 24 * 60;
/// Most mirror failures kept; the oldest go first.
pub const MAX_FAILURES: u64 = 10_000;

/// The catalog's file name inside the data directory.
pub const CATALOG_FILE: &str = "catalog.redb";

/// How often the writer thread drops expired idempotency records.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Serialize, Deserialize)]
struct StoredSession {
    version: u64,
    record: SessionRecord,
}

#[derive(Default, Serialize, Deserialize)]
struct TaskItem {
    #[serde(default)]
    binding: Option<StoredBinding>,
    #[serde(default)]
    epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activity: Option<TaskActivity>,
    #[serde(default)]
    failures: u64,
    #[serde(default)]
    drift: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erasing_ms: Option<u64>,
}

impl TaskItem {
    fn into_row(self, task_id: TaskId) -> TaskRow {
        TaskRow {
            task_id,
            activity: self.activity,
            binding: self.binding,
            epoch: self.epoch,
            failures: self.failures,
            drift: self.drift,
        }
    }
}

/// The listing row of a task active at `active_ms`: newer sorts first.
fn activity_row(active_ms: u64, task: &str) -> String {
    format!("{:020}\0{task}", u64::MAX - active_ms)
}

/// A transcript's key from its [`session_row`].
fn key_of_row(row: &str) -> Result<SessionKey, PortError> {
    let corrupt = |e: crate::domain::Invalid| {
        PortError::other(format!("corrupt session row {row:?} in catalog")).caused_by(e)
    };
    let mut parts = row.splitn(4, '\0');
    let (Some(task), Some(project), Some(session), Some(sub)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PortError::other(format!(
            "corrupt session row {row:?} in catalog"
        )));
    };
    let session = SessionRef {
        task_id: TaskId::new(task).map_err(corrupt)?,
        project_key: ProjectKey::new(project).map_err(corrupt)?,
        session_id: SessionId::new(session).map_err(corrupt)?,
    };
    let subpath = match sub {
        "" => None,
        sub => Some(Subpath::new(sub).map_err(corrupt)?),
    };
    Ok(SessionKey { session, subpath })
}

/// A table of this catalog opened for writing.
type WriteTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// Removes every row of `t` in `range`; returns how many.
fn remove_range<'a>(
    t: &mut WriteTable<'_>,
    range: impl std::ops::RangeBounds<&'a str> + 'a,
) -> Result<u64, PortError> {
    let doomed: Vec<String> = t
        .range(range)
        .map_err(storage_err)?
        .map(|row| row.map(|(k, _)| k.value().to_string()).map_err(storage_err))
        .collect::<Result<_, _>>()?;
    for row in &doomed {
        t.remove(row.as_str()).map_err(storage_err)?;
    }
    Ok(doomed.len() as u64)
}

/// Removes every row of `table` whose key starts with `prefix`; returns how many.
fn remove_prefixed(
    txn: &WriteTransaction,
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    prefix: &str,
) -> Result<u64, PortError> {
    let mut t = txn.open_table(table).map_err(storage_err)?;
    let end = prefix_range_end(prefix);
    remove_range(&mut t, prefix..end.as_str())
}

/// The task item stored under `row`, if any.
fn read_task(
    tasks: &impl ReadableTable<&'static str, &'static [u8]>,
    row: &str,
) -> Result<Option<TaskItem>, PortError> {
    let stored = tasks.get(row).map_err(storage_err)?;
    stored.map(|v| decode(v.value())).transpose()
}

/// Reads (or starts) the task item under `row`, changes it and writes it
/// back, inside `txn`.
fn change_task<T>(
    txn: &WriteTransaction,
    row: &str,
    f: impl FnOnce(&mut TaskItem) -> T,
) -> Result<T, PortError> {
    let mut tasks = txn.open_table(TASKS).map_err(storage_err)?;
    let mut item = read_task(&tasks, row)?.unwrap_or_default();
    let out = f(&mut item);
    let bytes = encode(&item)?;
    tasks.insert(row, bytes.as_slice()).map_err(storage_err)?;
    Ok(out)
}

/// Moves `task`'s row in the activity index from `old` to `new` totals.
fn reindex_task(
    txn: &WriteTransaction,
    task: &str,
    old: Option<&TaskActivity>,
    new: Option<&TaskActivity>,
) -> Result<(), PortError> {
    let mut index = txn.open_table(ACTIVITY).map_err(storage_err)?;
    if let Some(old) = old {
        index
            .remove(activity_row(old.active_ms, task).as_str())
            .map_err(storage_err)?;
    }
    if let Some(new) = new {
        index
            .insert(activity_row(new.active_ms, task).as_str(), [].as_slice())
            .map_err(storage_err)?;
    }
    Ok(())
}

/// The embedded catalog.
#[derive(Clone)]
pub struct RedbCatalog {
    group: Arc<GroupCommit>,
}

const WHAT: &str = "embedded catalog";

fn storage_err(err: impl Into<redb::Error>) -> PortError {
    super::group::storage_err(WHAT, err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PortError> {
    serde_json::from_slice(bytes)
        .map_err(|e| PortError::other("corrupt catalog record").caused_by(e))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, PortError> {
    serde_json::to_vec(value).map_err(|e| PortError::other("encode catalog record").caused_by(e))
}

fn session_row(key: &SessionKey) -> String {
    let s = &key.session;
    format!(
        "{}\0{}\0{}\0{}",
        s.task_id,
        s.project_key,
        s.session_id,
        key.subpath.as_ref().map_or("", |p| p.as_str())
    )
}

fn idempotency_row(task: &TaskId, key: &str) -> String {
    format!("{task}\0{key}")
}

impl RedbCatalog {
    /// Opens (creating if needed) the catalog under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, PortError> {
        Self::open_with_queue(data_dir, WRITE_QUEUE)
    }

    /// [`RedbCatalog::open`] with room for `queue` writes in the writer's
    /// queue (at least 1).
    pub fn open_with_queue(data_dir: &Path, queue: usize) -> Result<Self, PortError> {
        std::fs::create_dir_all(data_dir).map_err(storage_err)?;
        let setup = |txn: &WriteTransaction| {
            for table in [SESSIONS, IDEMPOTENCY, TASKS, FAILURES, ACTIVITY, APPENDS] {
                txn.open_table(table).map_err(storage_err)?;
            }
            Ok(())
        };
        let prune = Chore {
            every: PRUNE_EVERY,
            run: Box::new(|db: &Database| {
                match prune_idempotency(db, crate::domain::clock::now_ms()) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(removed = n, "catalog: dropped expired idempotency records")
                    }
                    Err(e) => {
                        tracing::warn!(error = %crate::domain::error_chain(&e), "catalog: pruning idempotency records failed")
                    }
                }
            }),
        };
        let path = data_dir.join(CATALOG_FILE);
        let group = GroupCommit::open(&path, WHAT, None, queue, setup, Some(prune))?;
        Ok(Self {
            group: Arc::new(group),
        })
    }

    /// Runs `f` in the next group-commit batch and answers once it is durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, PortError> + Send + 'static,
    ) -> Result<T, PortError> {
        self.group.write(f).await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, PortError> + Send + 'static,
    ) -> Result<T, PortError> {
        self.group.read(f).await
    }

    /// One row, read in place rather than on a blocking thread: a point
    /// read of this small, hot database takes microseconds, less than the
    /// hand-off to a blocking thread and back that every append would pay
    /// (listings, which may read many pages, still go to one).
    async fn get_row<T: DeserializeOwned>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        row: String,
    ) -> Result<Option<T>, PortError> {
        let txn = self.group.db().begin_read().map_err(storage_err)?;
        let t = txn.open_table(table).map_err(storage_err)?;
        let value = t.get(row.as_str()).map_err(storage_err)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Reads, changes and writes a task's item in one batch.
    async fn update_task<T: Send + 'static>(
        &self,
        task: &TaskId,
        f: impl FnOnce(&mut TaskItem) -> T + Send + 'static,
    ) -> Result<T, PortError> {
        let row = task.to_string();
        self.write(move |txn| change_task(txn, &row, f)).await
    }
}

/// Deletes idempotency records expired at `now_ms` (as DynamoDB's TTL
/// does); returns how many.
pub fn prune_idempotency(db: &Database, now_ms: u64) -> Result<usize, PortError> {
    let txn = db.begin_write().map_err(storage_err)?;
    let removed = {
        let mut t = txn.open_table(IDEMPOTENCY).map_err(storage_err)?;
        let mut doomed = Vec::new();
        for row in t.iter().map_err(storage_err)? {
            let (k, v) = row.map_err(storage_err)?;
            let expired =
                decode::<IdempotencyRecord>(v.value()).map_or(true, |r| r.expired(now_ms));
            if expired {
                doomed.push(k.value().to_string());
            }
        }
        for k in &doomed {
            t.remove(k.as_str()).map_err(storage_err)?;
        }
        doomed.len()
    };
    txn.commit().map_err(storage_err)?;
    Ok(removed)
}

fn prefix_range_end(prefix: &str) -> String {
    // Every key under `prefix` ends its last component with '\0'; '\u{1}'
    // sorts after it and before every id character.
    let mut end = prefix.trim_end_matches('\0').to_string();
    end.push('\u{1}');
    end
}

#[async_trait]
impl CatalogPort for RedbCatalog {
    async fn get_session(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Versioned<SessionRecord>>, PortError> {
        let stored: Option<StoredSession> = self.get_row(SESSIONS, session_row(key)).await?;
        Ok(stored.map(|s| Versioned {
            value: s.record,
            version: s.version,
        }))
    }

    async fn put_session(&self, write: SessionWrite<'_>) -> Result<u64, PortError> {
        let row = session_row(write.key);
        let expected = write.expected_version;
        let record = write.record.clone();
        let idempotency = write
            .idempotency
            .iter()
            .map(|(k, rec)| {
                Ok::<_, PortError>((idempotency_row(write.key.task_id(), k), encode(rec)?))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write(move |txn| {
            let mut sessions = txn.open_table(SESSIONS).map_err(storage_err)?;
            let current = match sessions.get(row.as_str()).map_err(storage_err)? {
                Some(v) => decode::<StoredSession>(v.value())?.version,
                None => 0,
            };
            if current != expected {
                return Err(PortError::PreconditionFailed(format!(
                    "session record is at version {current}, not {expected}"
                )));
            }
            let version = current + 1;
            let bytes = encode(&StoredSession { version, record })?;
            sessions
                .insert(row.as_str(), bytes.as_slice())
                .map_err(storage_err)?;
            if !idempotency.is_empty() {
                let mut t = txn.open_table(IDEMPOTENCY).map_err(storage_err)?;
                for (idem_row, idem_bytes) in &idempotency {
                    t.insert(idem_row.as_str(), idem_bytes.as_slice())
                        .map_err(storage_err)?;
                }
            }
            Ok(version)
        })
        .await
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<(), PortError> {
        let row = session_row(key);
        self.write(move |txn| {
            let mut t = txn.open_table(SESSIONS).map_err(storage_err)?;
            t.remove(row.as_str()).map_err(storage_err)?;
            Ok(())
        })
        .await
    }

    async fn list_sessions(
        &self,
        task: &TaskId,
        project: &ProjectKey,
        start_after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page<(SessionId, SessionRecord)>, PortError> {
        let prefix = format!("{task}\0{project}\0");
        let start = match start_after {
            Some(after) => format!("{prefix}{after}\u{1}"),
            None => prefix.clone(),
        };
        let end = prefix_range_end(&prefix);
        self.read(move |txn| {
            let t = txn.open_table(SESSIONS).map_err(storage_err)?;
            let mut items = Vec::new();
            let mut more = false;
            for row in t.range(start.as_str()..end.as_str()).map_err(storage_err)? {
                let (k, v) = row.map_err(storage_err)?;
                let Some(rest) = k.value().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                let Some(session) = rest.strip_suffix('\0') else {
                    continue;
                };
                if session.contains('\0') {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                let stored: StoredSession = decode(v.value())?;
                let id = SessionId::new(session)
                    .map_err(|e| PortError::other("corrupt session id in catalog").caused_by(e))?;
                items.push((id, stored.record));
            }
            Ok(Page { items, more })
        })
        .await
    }

    async fn list_subkeys(
        &self,
        session: &SessionRef,
        start_after: Option<&Subpath>,
        limit: usize,
    ) -> Result<Page<(Subpath, SessionRecord)>, PortError> {
        let prefix = format!(
            "{}\0{}\0{}\0",
            session.task_id, session.project_key, session.session_id
        );
        let start = match start_after {
            Some(after) => format!("{prefix}{after}\0"),
            None => format!("{prefix}\0"),
        };
        let end = prefix_range_end(&prefix);
        self.read(move |txn| {
            let t = txn.open_table(SESSIONS).map_err(storage_err)?;
            let mut items = Vec::new();
            let mut more = false;
            for row in t.range(start.as_str()..end.as_str()).map_err(storage_err)? {
                let (k, v) = row.map_err(storage_err)?;
                let Some(sub) = k.value().strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if sub.is_empty() {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                let stored: StoredSession = decode(v.value())?;
                let sub = Subpath::new(sub)
                    .map_err(|e| PortError::other("corrupt subpath in catalog").caused_by(e))?;
                items.push((sub, stored.record));
            }
            Ok(Page { items, more })
        })
        .await
    }

    async fn get_idempotency(
        &self,
        task: &TaskId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, PortError> {
        self.get_row(IDEMPOTENCY, idempotency_row(task, key)).await
    }

    async fn put_idempotency(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), PortError> {
        let row = idempotency_row(task, key);
        let bytes = encode(record)?;
        let created_ms = record.created_ms;
        self.write(move |txn| {
            let mut t = txn.open_table(IDEMPOTENCY).map_err(storage_err)?;
            // The first stays, unless it expired by the new one's time.
            let live = match t.get(row.as_str()).map_err(storage_err)? {
                Some(v) => {
                    decode::<IdempotencyRecord>(v.value()).is_ok_and(|r| !r.expired(created_ms))
                }
                None => false,
            };
            if !live {
                t.insert(row.as_str(), bytes.as_slice())
                    .map_err(storage_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn create_binding(
        &self,
        task: &TaskId,
        binding: &StoredBinding,
    ) -> Result<BindOutcome, PortError> {
        let binding = binding.clone();
        self.update_task(task, move |item| match &item.binding {
            Some(existing) => BindOutcome::Existing(existing.clone()),
            None => {
                item.binding = Some(binding.clone());
                BindOutcome::Created(binding)
            }
        })
        .await
    }

    async fn get_binding(&self, task: &TaskId) -> Result<Option<StoredBinding>, PortError> {
        let item: Option<TaskItem> = self.get_row(TASKS, task.to_string()).await?;
        Ok(item.and_then(|i| i.binding))
    }

    async fn bump_epoch(&self, task: &TaskId) -> Result<u64, PortError> {
        self.update_task(task, |item| {
            item.epoch += 1;
            item.epoch
        })
        .await
    }

    async fn record_failure(&self, failure: &MirrorFailure) -> Result<(), PortError> {
        let row = failure.sort_key();
        let bytes = encode(failure)?;
        let task_row = failure.task_id.clone();
        let drift = failure.is_drift();
        self.write(move |txn| {
            change_task(txn, &task_row, |item| {
                item.failures += 1;
                item.drift |= drift;
            })?;
            let mut t = txn.open_table(FAILURES).map_err(storage_err)?;
            t.insert(row.as_str(), bytes.as_slice())
                .map_err(storage_err)?;
            let len = t.len().map_err(storage_err)?;
            if len > MAX_FAILURES {
                let mut doomed = Vec::new();
                for row in t
                    .iter()
                    .map_err(storage_err)?
                    .take((len - MAX_FAILURES) as usize)
                {
                    doomed.push(row.map_err(storage_err)?.0.value().to_string());
                }
                for key in doomed {
                    t.remove(key.as_str()).map_err(storage_err)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn list_failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<MirrorFailure>, PortError> {
        let before = before.map(str::to_string);
        self.read(move |txn| {
            let t = txn.open_table(FAILURES).map_err(storage_err)?;
            let rows = match &before {
                Some(b) => t.range(..b.as_str()).map_err(storage_err)?,
                None => t.range::<&str>(..).map_err(storage_err)?,
            };
            let mut items = Vec::new();
            let mut more = false;
            for row in rows.rev() {
                let (_, v) = row.map_err(storage_err)?;
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(decode(v.value())?);
            }
            Ok(Page { items, more })
        })
        .await
    }

    async fn list_task_sessions(
        &self,
        task: &TaskId,
        start_after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Page<(SessionKey, SessionRecord)>, PortError> {
        use std::ops::Bound;
        let prefix = format!("{task}\0");
        let start = match start_after {
            Some(after) => Bound::Excluded(session_row(after)),
            None => Bound::Included(prefix.clone()),
        };
        let end = prefix_range_end(&prefix);
        self.read(move |txn| {
            let t = txn.open_table(SESSIONS).map_err(storage_err)?;
            let range = (
                start.as_ref().map(String::as_str),
                Bound::Excluded(end.as_str()),
            );
            let mut items = Vec::new();
            let mut more = false;
            for row in t.range::<&str>(range).map_err(storage_err)? {
                let (k, v) = row.map_err(storage_err)?;
                if items.len() == limit {
                    more = true;
                    break;
                }
                let stored: StoredSession = decode(v.value())?;
                items.push((key_of_row(k.value())?, stored.record));
            }
            Ok(Page { items, more })
        })
        .await
    }

    async fn put_task_activity(
        &self,
        task: &TaskId,
        activity: Option<&TaskActivity>,
    ) -> Result<(), PortError> {
        let row = task.to_string();
        let activity = activity.cloned();
        self.write(move |txn| {
            let tasks = txn.open_table(TASKS).map_err(storage_err)?;
            let old = match read_task(&tasks, &row)? {
                Some(item) => item.activity,
                // Out of the listing already: no item is created for it.
                None if activity.is_none() => return Ok(()),
                None => None,
            };
            drop(tasks);
            reindex_task(txn, &row, old.as_ref(), activity.as_ref())?;
            change_task(txn, &row, |item| item.activity = activity)
        })
        .await
    }

    async fn get_task(&self, task: &TaskId) -> Result<Option<TaskRow>, PortError> {
        let item: Option<TaskItem> = self.get_row(TASKS, task.to_string()).await?;
        Ok(item.map(|i| i.into_row(task.clone())))
    }

    async fn list_tasks(
        &self,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Page<TaskRow>, PortError> {
        use std::ops::Bound;
        let start = match after {
            Some(c) => Bound::Excluded(activity_row(c.active_ms, c.task_id.as_str())),
            None => Bound::Unbounded,
        };
        self.read(move |txn| {
            let index = txn.open_table(ACTIVITY).map_err(storage_err)?;
            let tasks = txn.open_table(TASKS).map_err(storage_err)?;
            let range = (start.as_ref().map(String::as_str), Bound::Unbounded);
            let mut items = Vec::new();
            let mut more = false;
            for row in index.range::<&str>(range).map_err(storage_err)? {
                let (k, _) = row.map_err(storage_err)?;
                if items.len() == limit {
                    more = true;
                    break;
                }
                let Some((_, task)) = k.value().split_once('\0') else {
                    return Err(PortError::other("corrupt task activity row in catalog"));
                };
                let Some(v) = tasks.get(task).map_err(storage_err)? else {
                    continue;
                };
                let task_id = TaskId::new(task)
                    .map_err(|e| PortError::other("corrupt task id in catalog").caused_by(e))?;
                items.push(decode::<TaskItem>(v.value())?.into_row(task_id));
            }
            Ok(Page { items, more })
        })
        .await
    }

    async fn writer_fence(&self, task: &TaskId) -> Result<WriterFence, PortError> {
        let item: Option<TaskItem> = self.get_row(TASKS, task.to_string()).await?;
        Ok(item.map_or_else(WriterFence::default, |i| WriterFence {
            epoch: i.epoch,
            erasing_ms: i.erasing_ms,
        }))
    }

    async fn begin_erasure(&self, task: &TaskId, at_ms: u64) -> Result<bool, PortError> {
        let task = task.to_string();
        self.write(move |txn| {
            let mut tasks = txn.open_table(TASKS).map_err(storage_err)?;
            let old = read_task(&tasks, &task)?;
            reindex_task(
                txn,
                &task,
                old.as_ref().and_then(|o| o.activity.as_ref()),
                None,
            )?;
            let marker = TaskItem {
                erasing_ms: Some(at_ms),
                ..TaskItem::default()
            };
            let bytes = encode(&marker)?;
            tasks
                .insert(task.as_str(), bytes.as_slice())
                .map_err(storage_err)?;
            // An item that was only another erasure's marker held nothing.
            Ok(old.is_some_and(|o| o.erasing_ms.is_none()))
        })
        .await
    }

    async fn end_erasure(&self, task: &TaskId, at_ms: u64) -> Result<(), PortError> {
        let task = task.to_string();
        self.write(move |txn| {
            let mut tasks = txn.open_table(TASKS).map_err(storage_err)?;
            let ours = read_task(&tasks, &task)?.is_some_and(|i| i.erasing_ms == Some(at_ms));
            if ours {
                tasks.remove(task.as_str()).map_err(storage_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn erase_task(&self, task: &TaskId) -> Result<u64, PortError> {
        let task = task.to_string();
        self.write(move |txn| {
            let prefix = format!("{task}\0");
            let mut removed = remove_prefixed(txn, SESSIONS, &prefix)?;
            removed += remove_prefixed(txn, IDEMPOTENCY, &prefix)?;
            let mut failures = txn.open_table(FAILURES).map_err(storage_err)?;
            let mut doomed = Vec::new();
            for row in failures.iter().map_err(storage_err)? {
                let (k, v) = row.map_err(storage_err)?;
                let failure: MirrorFailure = decode(v.value())?;
                if failure.task_id == task {
                    doomed.push(k.value().to_string());
                }
            }
            for row in &doomed {
                failures.remove(row.as_str()).map_err(storage_err)?;
            }
            Ok(removed + doomed.len() as u64)
        })
        .await
    }

    async fn count_appends(&self, at_ms: u64, count: u64) -> Result<(), PortError> {
        let minute = at_ms / 60_000;
        self.write(move |txn| {
            let mut t = txn.open_table(APPENDS).map_err(storage_err)?;
            let row = format!("{minute:013}");
            let before: u64 = match t.get(row.as_str()).map_err(storage_err)? {
                Some(v) => decode(v.value())?,
                None => 0,
            };
            let bytes = encode(&(before + count))?;
            t.insert(row.as_str(), bytes.as_slice())
                .map_err(storage_err)?;
            // Counters older than a day go, so the table stays small.
            let oldest = format!("{:013}", minute.saturating_sub(APPENDS_KEPT_MINUTES));
            remove_range(&mut t, ..oldest.as_str())?;
            Ok(())
        })
        .await
    }

    async fn appends_between(&self, from_ms: u64, to_ms: u64) -> Result<u64, PortError> {
        let from = format!("{:013}", from_ms / 60_000);
        let to = format!("{:013}", to_ms / 60_000);
        self.read(move |txn| {
            let t = txn.open_table(APPENDS).map_err(storage_err)?;
            let mut total = 0;
            for row in t.range(from.as_str()..=to.as_str()).map_err(storage_err)? {
                let (_, v) = row.map_err(storage_err)?;
                total += decode::<u64>(v.value())?;
            }
            Ok(total)
        })
        .await
    }

    async fn check(&self) -> Result<(), PortError> {
        self.read(|txn| {
            txn.open_table(SESSIONS).map_err(storage_err)?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppendReceipt, Seq};
    use std::sync::mpsc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_write_queue_makes_writers_wait_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(RedbCatalog::open_with_queue(dir.path(), 2).unwrap());
        // The writer thread is busy with a write that waits to be released.
        let (release, held) = mpsc::channel::<()>();
        let busy = {
            let catalog = catalog.clone();
            tokio::spawn(async move {
                catalog
                    .write(move |_| {
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            })
        };
        let task = TaskId::new("t").unwrap();
        // One more fits in the queue...
        let queued = {
            let (catalog, task) = (catalog.clone(), task.clone());
            tokio::spawn(async move { catalog.bump_epoch(&task).await })
        };
        while catalog.group.room.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        // ...the next waits for room: it cannot finish while the writer is held.
        let mut waiting = {
            let (catalog, task) = (catalog.clone(), task.clone());
            tokio::spawn(async move { catalog.bump_epoch(&task).await })
        };
        let submitted = || {
            catalog
                .group
                .submitted
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let early = tokio::time::timeout(Duration::from_millis(300), &mut waiting).await;
        assert!(early.is_err(), "a write went past a full queue");
        assert_eq!(submitted(), 2, "the third write waits outside the queue");
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        let epochs = [
            queued.await.unwrap().unwrap(),
            waiting.await.unwrap().unwrap(),
        ];
        assert_eq!(
            epochs.iter().copied().max(),
            Some(2),
            "both writes landed once room came"
        );
        assert_eq!(submitted(), 3);
        assert_eq!(
            catalog.group.room.available_permits(),
            2,
            "every permit returned"
        );
    }

    #[tokio::test]
    async fn expired_idempotency_records_are_pruned_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = RedbCatalog::open(dir.path()).unwrap();
        let key = SessionKey::main(SessionRef {
            task_id: TaskId::new("t").unwrap(),
            project_key: ProjectKey::new("p").unwrap(),
            session_id: SessionId::new("s").unwrap(),
        });
        let mut version = 0;
        for (idem, created_ms, expires_ms) in [("old", 1_000, 1_500), ("new", 5_000, 9_000)] {
            let rec = IdempotencyRecord {
                fingerprint: idem.into(),
                receipt: AppendReceipt {
                    seq: Seq(1),
                    skipped: 0,
                    count: 1,
                    mtime: 1,
                    summary: None,
                },
                created_ms,
                expires_ms,
                part_dir: None,
            };
            version = catalog
                .put_session(SessionWrite {
                    key: &key,
                    record: &SessionRecord::default(),
                    expected_version: version,
                    idempotency: vec![(idem, &rec)],
                    independent: false,
                })
                .await
                .unwrap();
        }
        assert_eq!(prune_idempotency(catalog.group.db(), 2_000).unwrap(), 1);
        assert!(catalog
            .get_idempotency(key.task_id(), "old")
            .await
            .unwrap()
            .is_none());
        assert!(catalog
            .get_idempotency(key.task_id(), "new")
            .await
            .unwrap()
            .is_some());
    }
}
