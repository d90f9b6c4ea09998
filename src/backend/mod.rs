//! The two storage ports the engine is written against, and their adapters.
//!
//! - [`ObjectPort`]: transcript parts and snapshots (S3, or files on disk).
//! - [`CatalogPort`]: session index, summaries, idempotency records, task
//!   bindings and writer epochs (DynamoDB, or an embedded database).
//!
//! Each trait's doc comment is the contract; adapters only note where their
//! store needs a workaround. Ordering, compaction and load logic live in the
//! engine, never here, so every adapter shares them.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::{
    AppendReceipt, MirrorFailure, ProjectKey, Seq, SessionId, SessionKey, SessionRef, Subpath,
    TaskId,
};
// Shapes the ports share with the engine and the API.
pub use crate::domain::{BindOutcome, Binding, Page, StoredBinding};

pub mod aws;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod dynamo;
pub mod embedded;
pub mod s3;

/// Any error, boxed: the cause a [`PortError`] keeps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure, in storage words; the engine decides what it means.
/// Failures caused by another error keep it as their source, so a log line
/// shows the whole chain and code matches on types, never on text.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// A create-if-absent found something already there.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The named item does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A conditional update found a different version than expected.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The store could not be reached or refused service; retrying may work.
    #[error("unavailable: {context}")]
    Unavailable {
        /// What was being done, and where.
        context: String,
        /// Why, when another error says so.
        #[source]
        source: Option<BoxError>,
    },
    /// Stored bytes do not match their checksum, or carry none.
    #[error("checksum mismatch: {context}")]
    ChecksumMismatch {
        /// Which object, and what differs.
        context: String,
        /// The verifier's own error, if one reported it.
        #[source]
        source: Option<BoxError>,
    },
    /// Anything else: an answer the adapter did not expect, a corrupt record.
    #[error("{context}")]
    Other {
        /// What was being done.
        context: String,
        /// Why, when another error says so.
        #[source]
        source: Option<BoxError>,
    },
}

/// Marks a failure as the catalog's (its source), so a report can tell a
/// catalog outage from an object store's.
#[derive(Debug, thiserror::Error)]
#[error("catalog")]
pub struct InCatalog(#[source] pub PortError);

/// Marks a failure as a timeout (its source): the store did not answer in
/// time, as opposed to refusing.
#[derive(Debug, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut(#[source] pub BoxError);

impl PortError {
    /// Whether this failure, or one it was caused by, is a [`TimedOut`].
    pub fn is_timeout(&self) -> bool {
        crate::domain::chain_has::<TimedOut>(self)
    }

    /// The same failure marked as the catalog's: an unavailable or
    /// unexpected answer keeps itself as the source of an [`InCatalog`];
    /// the outcome kinds (not found, exists, precondition) stay as they are.
    pub fn in_catalog(self) -> Self {
        match self {
            err @ PortError::Unavailable { .. } => PortError::Unavailable {
                context: "the catalog".into(),
                source: Some(Box::new(InCatalog(err))),
            },
            err @ PortError::Other { .. } => PortError::Other {
                context: "the catalog".into(),
                source: Some(Box::new(InCatalog(err))),
            },
            other => other,
        }
    }

    /// Whether [`PortError::in_catalog`] marked this failure.
    pub fn is_catalog(&self) -> bool {
        match self {
            PortError::Unavailable { source, .. } | PortError::Other { source, .. } => source
                .as_deref()
                .is_some_and(|s| s.downcast_ref::<InCatalog>().is_some()),
            _ => false,
        }
    }

    /// [`PortError::Unavailable`] without a source.
    pub fn unavailable(context: impl Into<String>) -> Self {
        PortError::Unavailable {
            context: context.into(),
            source: None,
        }
    }

    /// [`PortError::ChecksumMismatch`] without a source.
    pub fn checksum(context: impl Into<String>) -> Self {
        PortError::ChecksumMismatch {
            context: context.into(),
            source: None,
        }
    }

    /// [`PortError::Other`] without a source.
    pub fn other(context: impl Into<String>) -> Self {
        PortError::Other {
            context: context.into(),
            source: None,
        }
    }

    /// The same failure, caused by `cause` (kept as its source; the three
    /// kinds without one are returned unchanged).
    pub fn caused_by(self, cause: impl Into<BoxError>) -> Self {
        let cause = Some(cause.into());
        match self {
            PortError::Unavailable { context, .. } => PortError::Unavailable {
                context,
                source: cause,
            },
            PortError::ChecksumMismatch { context, .. } => PortError::ChecksumMismatch {
                context,
                source: cause,
            },
            PortError::Other { context, .. } => PortError::Other {
                context,
                source: cause,
            },
            other => other,
        }
    }
}

/// A stream of an object's bytes; an `Err` item ends it.
pub type ByteStream = BoxStream<'static, Result<Bytes, PortError>>;

/// An object being read.
pub struct ObjectBody {
    /// The CRC32C stored with the object, if the store has one.
    pub crc32c: Option<u32>,
    /// The object's size in bytes.
    pub size: u64,
    /// The bytes, in order.
    pub stream: ByteStream,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The object's full key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Object storage for parts and snapshots. Keys are `/`-separated paths.
#[async_trait]
pub trait ObjectPort: Send + Sync + 'static {
    /// Creates `key` holding `body` if and only if no object has that key.
    ///
    /// Atomic: of any number of concurrent calls for one key exactly one
    /// succeeds; the others fail with [`PortError::AlreadyExists`]. A reader
    /// never sees a partly written object. `crc32c` is stored with the object
    /// and, where the store can, verified on arrival. Durable once `Ok`.
    async fn put_if_absent(&self, key: &str, body: Bytes, crc32c: u32) -> Result<(), PortError>;

    /// Opens `key` for reading; `Ok(None)` when it does not exist. The stored
    /// checksum comes back unverified: the engine checks it.
    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError>;

    /// Lists keys under `dir` (which ends with `/`) strictly after
    /// `start_after`, ascending. With `recursive` false only the objects
    /// directly in `dir` are listed; with it true, everything below it.
    async fn list(
        &self,
        dir: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError>;

    /// Every key [`ObjectPort::list`] would give page by page, as one
    /// stream: pages are fetched as the stream is read, so a reader that
    /// stops early lists no further. An error ends the stream.
    fn list_all<'a>(
        &'a self,
        dir: &'a str,
        start_after: Option<String>,
        recursive: bool,
    ) -> BoxStream<'a, Result<Listed, PortError>> {
        // The state is the cursor of the next page; `None` once done.
        let pages = futures::stream::try_unfold(Some(start_after), move |cursor| async move {
            let Some(cursor) = cursor else {
                return Ok(None);
            };
            let page = self.list(dir, cursor.as_deref(), recursive).await?;
            let next = match page.items.last() {
                Some(last) if page.more => Some(Some(last.key.clone())),
                _ => None,
            };
            let items = futures::stream::iter(page.items.into_iter().map(Ok));
            Ok(Some((items, next)))
        });
        Box::pin(futures::TryStreamExt::try_flatten(pages))
    }

    /// Deletes `key`; deleting an absent key succeeds.
    async fn delete(&self, key: &str) -> Result<(), PortError>;

    /// Checks the store is reachable and usable, with a clear message if not.
    async fn check(&self) -> Result<(), PortError>;

    /// `key` as the store itself names it (relative to its bucket, with any
    /// configured prefix), for receipts and audit lines.
    fn stored_key(&self, key: &str) -> String {
        key.to_string()
    }
}

/// What the catalog knows about one transcript. Persisted as JSON: add
/// fields with defaults, never rename one.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The highest sequence number written.
    pub head: Seq,
    /// How many parts were ever appended.
    pub parts: u64,
    /// How many bytes were ever appended.
    pub bytes: u64,
    /// How many entries were ever appended (0 in records from before it
    /// was counted).
    #[serde(default)]
    pub entries: u64,
    /// Last write time, epoch ms; strictly increases per key.
    pub mtime: u64,
    /// The newest snapshot covers parts up to and including this one.
    #[serde(default)]
    pub compacted_through: Seq,
    /// The client-folded summary, stored verbatim (main transcripts only).
    #[serde(default)]
    pub summary: Option<Box<RawValue>>,
    /// Bumped on every summary change (and when the session is deleted, so a
    /// version is never reused); 0 means no summary yet.
    #[serde(default)]
    pub summary_version: u64,
    /// When the summary was last stored, epoch ms, on the clock of `mtime`: a
    /// summary older than `mtime` has not yet folded the newest entries.
    #[serde(default)]
    pub summary_mtime: u64,
    /// The transcript's current incarnation: 1 for a new key, one more after
    /// every delete; 0 for a key in the layout from before incarnations.
    #[serde(default)]
    pub incarnation: u64,
    /// The hash-chain digest of part `head` (hex), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Earlier incarnations whose objects are deleted once the grace period
    /// after their seal has passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
    /// Set while the part at `head` may not exist yet: an append stores its
    /// record at the same time as its part, so this record counts that part
    /// (head, mtime, digest, summary) and `prior` is the record as it was
    /// before it. Listings and summaries read the record as it is; anything
    /// that must not run ahead of storage (a load's anchor, the next
    /// sequence number, compaction) reads [`SessionRecord::confirmed`] until
    /// the part is seen with this digest (the append landed) or another part
    /// holds its number (it never will).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<Box<SessionRecord>>,
}

/// An incarnation closed by a delete, waiting for its objects to go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// The incarnation.
    pub incarnation: u64,
    /// When it was sealed, epoch ms.
    pub sealed_ms: u64,
}

impl SessionRecord {
    /// The record without an append that may not have landed: `prior` when
    /// set, else the record itself.
    pub fn confirmed(&self) -> &SessionRecord {
        self.prior.as_deref().unwrap_or(self)
    }

    /// Applies `change` to the record and to its `prior`, for changes that
    /// hold whether or not the pending append lands (a summary stored by
    /// itself, a compaction, a purge).
    pub fn change_both(&mut self, change: impl Fn(&mut SessionRecord)) {
        change(self);
        if let Some(prior) = self.prior.as_deref_mut() {
            change(prior);
        }
    }

    /// Whether a summary update folded on `expected` may replace the stored
    /// one: 0 expects no summary at all (none ever, or none since a delete,
    /// whatever the version counter says), any other value that exact
    /// version of a stored summary.
    pub fn summary_matches(&self, expected: u64) -> bool {
        match (expected, &self.summary) {
            (0, summary) => summary.is_none(),
            (v, Some(_)) => v == self.summary_version,
            (_, None) => false,
        }
    }
}

impl PartialEq for SessionRecord {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head
            && self.parts == other.parts
            && self.bytes == other.bytes
            && self.entries == other.entries
            && self.mtime == other.mtime
            && self.compacted_through == other.compacted_through
            && self.summary.as_ref().map(|s| s.get()) == other.summary.as_ref().map(|s| s.get())
            && self.summary_version == other.summary_version
            && self.summary_mtime == other.summary_mtime
            && self.incarnation == other.incarnation
            && self.digest == other.digest
            && self.retired == other.retired
            && self.prior == other.prior
    }
}

/// A value with the catalog version it was read at (0 never occurs: absent
/// items are `None`).
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version, for a later compare-and-set.
    pub version: u64,
}

/// The remembered outcome of an append sent with an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// A digest of the request; a different request with the same key is refused.
    pub fingerprint: String,
    /// The first answer, replayed verbatim.
    pub receipt: AppendReceipt,
    /// When it was written, epoch ms.
    pub created_ms: u64,
    /// When the engine stops replaying it, epoch ms (0 in records written
    /// before it was stored: [`LEGACY_IDEMPOTENCY_RETENTION_MS`] after
    /// `created_ms`). Catalogs keep a record at least this long, return it
    /// as stored, and may drop it after.
    #[serde(default)]
    pub expires_ms: u64,
    /// Set when the record was stored at the same time as the part it
    /// answers for, before that part was known to exist: the part's
    /// directory. The record counts only once part `receipt.seq` there
    /// exists and carries this idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_dir: Option<String>,
}

/// How long records without `expires_ms` were kept.
pub const LEGACY_IDEMPOTENCY_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;

impl IdempotencyRecord {
    /// When it expires, epoch ms.
    pub fn expires_at_ms(&self) -> u64 {
        match self.expires_ms {
            0 => self.created_ms + LEGACY_IDEMPOTENCY_RETENTION_MS,
            at => at,
        }
    }

    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms() <= now_ms
    }
}

/// A task's totals over its catalog records, for the admin listing; the
/// engine stores them shortly after each change. Persisted: add fields with
/// defaults, never rename one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskActivity {
    /// When the task last changed (as its totals were taken), epoch ms: the
    /// listing's order, newest first.
    pub active_ms: u64,
    /// Main transcripts.
    pub sessions: u64,
    /// Subagent transcripts (subkeys).
    pub subkeys: u64,
    /// Parts appended, over every transcript.
    pub parts: u64,
    /// Bytes appended, over every transcript.
    pub bytes: u64,
    /// Entries appended, over every transcript.
    pub entries: u64,
    /// The newest transcript's last write, epoch ms; 0 when none.
    pub last_append_ms: u64,
}

/// A task as the catalog lists it: its totals, binding and counters.
#[derive(Clone, Debug)]
pub struct TaskRow {
    /// The task.
    pub task_id: TaskId,
    /// Its totals; `None` before the engine first stored them.
    pub activity: Option<TaskActivity>,
    /// Its binding, if bound.
    pub binding: Option<StoredBinding>,
    /// Its writer epoch; 0 before any lease.
    pub epoch: u64,
    /// Mirror failures kept for it, ever.
    pub failures: u64,
    /// Whether a project-key drift was kept for it.
    pub drift: bool,
}

/// What a write to a task must get past: its writer epoch and any erasure
/// in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterFence {
    /// The task's writer epoch; 0 before any lease.
    pub epoch: u64,
    /// When an erasure of the task began, epoch ms, while it runs.
    pub erasing_ms: Option<u64>,
}

/// Where a listing of tasks resumes: strictly after this task (newest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskCursor {
    /// The last listed task's [`TaskActivity::active_ms`].
    pub active_ms: u64,
    /// The last listed task.
    pub task_id: TaskId,
}

/// One compare-and-set write of a session record.
#[derive(Clone, Debug)]
pub struct SessionWrite<'a> {
    /// The transcript.
    pub key: &'a SessionKey,
    /// The new record.
    pub record: &'a SessionRecord,
    /// The version read before; 0 when the record must not exist yet.
    pub expected_version: u64,
    /// Idempotency records to store (replacing any under the same key) in
    /// the same atomic write: the append's own, and at most one that an
    /// earlier append stored before its part was seen, now confirmed.
    pub idempotency: Vec<(&'a str, &'a IdempotencyRecord)>,
    /// The idempotency records stand on their own: each was stored ahead of
    /// its part (and counts only once the part is seen) or confirms a part
    /// known to exist. A catalog may then store them apart from the record,
    /// at the same time, instead of in one transaction; any failure is
    /// still an error.
    pub independent: bool,
}

/// The catalog: small records with compare-and-set updates.
#[async_trait]
pub trait CatalogPort: Send + Sync + 'static {
    /// Reads one transcript's record.
    async fn get_session(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Versioned<SessionRecord>>, PortError>;

    /// Stores a record if its version is still `expected_version` (0: absent),
    /// together with the optional idempotency record, atomically. Returns the
    /// new version, or [`PortError::PreconditionFailed`] having written nothing.
    async fn put_session(&self, write: SessionWrite<'_>) -> Result<u64, PortError>;

    /// Deletes exactly this transcript's record; absent is fine.
    async fn delete_session(&self, key: &SessionKey) -> Result<(), PortError>;

    /// Lists main transcripts of a project, ascending by session id, after
    /// `start_after`, at most `limit`.
    async fn list_sessions(
        &self,
        task: &TaskId,
        project: &ProjectKey,
        start_after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page<(SessionId, SessionRecord)>, PortError>;

    /// Lists the subkeys recorded under a session with their records,
    /// ascending, after `start_after`, at most `limit` (records of deleted
    /// subkeys included: the engine tells them apart).
    async fn list_subkeys(
        &self,
        session: &SessionRef,
        start_after: Option<&Subpath>,
        limit: usize,
    ) -> Result<Page<(Subpath, SessionRecord)>, PortError>;

    /// Reads the idempotency record stored under `key` for `task`, expired
    /// or not: the engine decides.
    async fn get_idempotency(
        &self,
        task: &TaskId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, PortError>;

    /// Stores an idempotency record unless a live one exists under `key` for
    /// `task` (the first stays; one expired at `record.created_ms` is
    /// replaced); used for parts found written but never recorded.
    async fn put_idempotency(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), PortError>;

    /// Creates the task's binding unless one exists (first writer wins).
    async fn create_binding(
        &self,
        task: &TaskId,
        binding: &StoredBinding,
    ) -> Result<BindOutcome, PortError>;

    /// Reads the task's binding.
    async fn get_binding(&self, task: &TaskId) -> Result<Option<StoredBinding>, PortError>;

    /// Atomically increments the task's writer epoch and returns the new value
    /// (the first lease is 1).
    async fn bump_epoch(&self, task: &TaskId) -> Result<u64, PortError>;

    /// The task's writer epoch (0 before any lease) and erasure marker, in
    /// one read.
    async fn writer_fence(&self, task: &TaskId) -> Result<WriterFence, PortError>;

    /// Keeps a mirror failure. The catalog keeps the recent ones only
    /// (bounded by count or by age, as the store allows).
    async fn record_failure(&self, failure: &MirrorFailure) -> Result<(), PortError>;

    /// Recent mirror failures, newest first, strictly before `before` (the
    /// [`MirrorFailure::sort_key`] of the previous page's last), at most `limit`.
    async fn list_failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<MirrorFailure>, PortError>;

    /// Every transcript record of a task (main and subkeys, every project),
    /// ascending by key after `start_after`, at most `limit`.
    async fn list_task_sessions(
        &self,
        task: &TaskId,
        start_after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Page<(SessionKey, SessionRecord)>, PortError>;

    /// Stores a task's totals (its binding, epoch and counters stay);
    /// `None` takes the task out of the listing (it holds nothing), without
    /// creating its item when there is none.
    async fn put_task_activity(
        &self,
        task: &TaskId,
        activity: Option<&TaskActivity>,
    ) -> Result<(), PortError>;

    /// One task's row; `None` when the catalog holds no item for it.
    async fn get_task(&self, task: &TaskId) -> Result<Option<TaskRow>, PortError>;

    /// Tasks with totals, newest activity first, strictly after `after`, at
    /// most `limit`.
    async fn list_tasks(
        &self,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Page<TaskRow>, PortError>;

    /// Starts erasing a task: its item (binding, epoch, totals, counters)
    /// is replaced by an erasure marker begun at `at_ms`, which
    /// [`CatalogPort::writer_fence`] reports until
    /// [`CatalogPort::end_erasure`]. Returns whether the task had an item.
    async fn begin_erasure(&self, task: &TaskId, at_ms: u64) -> Result<bool, PortError>;

    /// Removes every other catalog row of a task: its transcript records,
    /// idempotency records and kept mirror failures. Returns how many went.
    async fn erase_task(&self, task: &TaskId) -> Result<u64, PortError>;

    /// Removes the marker of the erasure begun at `at_ms` (and the task's
    /// item with it), unless another erasure has replaced it.
    async fn end_erasure(&self, task: &TaskId, at_ms: u64) -> Result<(), PortError>;

    /// Adds `count` appends to the fleet's counter of the minute holding `at_ms`.
    async fn count_appends(&self, at_ms: u64, count: u64) -> Result<(), PortError>;

    /// The appends counted in the minutes from the one holding `from_ms` to
    /// the one holding `to_ms`, both included (at most 100 minutes apart).
    async fn appends_between(&self, from_ms: u64, to_ms: u64) -> Result<u64, PortError>;

    /// Checks the catalog is reachable and set up, with a clear message if not.
    async fn check(&self) -> Result<(), PortError>;
}
