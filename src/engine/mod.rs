//! The engine: ordering, load, listing, deletion and summaries, written
//! against the two storage ports and knowing neither HTTP nor AWS.
//!
//! Appends to one key are serialised inside this process by a per-key async
//! mutex around a cached head (the last known sequence number), so an
//! instance never races itself; the object store's create-if-absent is what
//! keeps many instances correct. See `append.rs` and `load.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::value::RawValue;

use crate::backend::{
    CatalogPort, IdempotencyRecord, ObjectPort, Page, PortError, SessionRecord, SessionWrite,
    Versioned,
};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::{
    AppendReceipt, ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId,
};
use crate::error::Error;
use crate::metrics::METRICS;

mod activity;
mod admin;
mod append;
mod bindings;
mod catalog;
mod codec;
mod compaction;
mod dedup;
mod export;
mod failures;
mod head;
mod incarnation;
pub mod keys;
mod load;
pub mod part;
mod sessions;
pub mod snapshot;
mod tail;

pub use admin::{keys_digest, ErasureReceipt, FleetStats, TaskDetail};
pub use append::AppendRequest;
pub use bindings::validate_binding;
pub use codec::{check_summary, encode_entries, minify_json, EncodedBatch};
pub use compaction::{CompactOptions, CompactionReport, Halt};
pub use failures::ClientReport;
pub use load::{LoadStream, Loaded};
pub use sessions::{SessionListing, SummaryView};
pub use tail::{StreamOffset, StreamRead, StreamStart, StreamWatch};

/// How long an idempotency key's answer is replayed by default.
pub const IDEMPOTENCY_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// Tunables the engine needs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Parallel GETs per load.
    pub load_concurrency: usize,
    /// Most create attempts for one append before giving up with a conflict.
    pub max_append_attempts: usize,
    /// Loads up to this many bytes are read and verified before responding.
    pub prefetch_bytes: u64,
    /// Most bytes of parts a load holds in memory at once.
    pub load_memory_budget: usize,
    /// Compact a key once this many parts follow its last snapshot; 0: never
    /// automatically.
    pub compaction_threshold: u64,
    /// How long covered parts stay after a compaction, for loads in flight.
    pub compaction_grace: std::time::Duration,
    /// How long an idempotency key's answer is replayed.
    pub idempotency_retention: std::time::Duration,
    /// Most compactions running at once in this instance.
    pub compaction_concurrency: usize,
    /// Bytes of transcript this instance holds in memory at once, shared by
    /// loads (parts in flight) and compactions (the snapshot being built).
    pub memory_budget: usize,
    /// A snapshot larger than this is written as chunks of about this size
    /// as it is read, instead of built in memory as one object.
    pub snapshot_chunk_bytes: usize,
    /// How often a key with live readers has its catalog record read, for
    /// appends through other instances.
    pub tail_poll_interval: std::time::Duration,
    /// What the engine reads the time from.
    pub clock: Arc<dyn Clock>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            load_concurrency: 16,
            max_append_attempts: 64,
            prefetch_bytes: 4 * 1024 * 1024,
            load_memory_budget: 16 * 1024 * 1024,
            compaction_threshold: 256,
            compaction_grace: std::time::Duration::from_secs(300),
            idempotency_retention: IDEMPOTENCY_RETENTION,
            compaction_concurrency: 2,
            memory_budget: 512 * 1024 * 1024,
            snapshot_chunk_bytes: 4 * 1024 * 1024,
            tail_poll_interval: std::time::Duration::from_millis(200),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The transcript engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Arc<dyn ObjectPort>,
    catalog: Arc<dyn CatalogPort>,
    config: EngineConfig,
    /// Per-key head state. A std mutex is enough: it guards only map lookups,
    /// never an await. Entries nobody holds are pruned as the map grows.
    heads: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<Head>>>>,
    /// Per-session compaction locks: one compaction, deletion of compacted
    /// parts, or session delete at a time per session (main key and subkeys).
    compactions: Mutex<HashMap<SessionRef, Arc<tokio::sync::Mutex<()>>>>,
    /// Retired incarnations being deleted by this instance, so each is
    /// deleted once however often its key is touched meanwhile.
    purges: Mutex<std::collections::HashSet<(SessionKey, u64)>>,
    /// Work that outlives a request: compactions, deletions, loads'
    /// readers, kept failures. Shutdown waits for it.
    background: tokio_util::task::TaskTracker,
    /// Cancelled at shutdown: work that only waits (deletions after the
    /// grace period) stops, leaving what it would do to the next compaction.
    stopping: tokio_util::sync::CancellationToken,
    /// Compactions allowed to run at once.
    compaction_slots: Arc<tokio::sync::Semaphore>,
    /// The shared memory budget, in units of [`MEMORY_UNIT`] bytes.
    memory: Arc<tokio::sync::Semaphore>,
    /// Tasks' bound project keys, for the drift check.
    bindings: Mutex<failures::BindingCache>,
    /// Keys whose catalog record lags their durable parts (a catalog write
    /// failed after the part landed), until a record covers them again.
    lagging: Mutex<std::collections::HashSet<SessionKey>>,
    /// Tasks whose totals are due, and appends not yet counted.
    activity: activity::Activity,
    /// The keys live readers wait on, each polled once for all of them.
    watchers: tail::Watchers,
}

/// What this process knows of one key's tail, valid while `loaded` and fresh.
#[derive(Debug, Default)]
struct Head {
    /// False until read from storage, and again after anything went wrong.
    loaded: bool,
    /// When it was last read from storage. Another instance may compact the
    /// key and delete parts one grace period later, so a cached head is
    /// re-read well before that (after half the grace period).
    loaded_at: Option<std::time::Instant>,
    /// The catalog record as of our last read or write, if any.
    record: Option<Versioned<SessionRecord>>,
    /// The record as it should be (may be ahead of the catalog after a failed
    /// catalog write, until the next append repairs it).
    state: SessionRecord,
    /// The uuids stored in the key, once a batch with uuids needed them.
    uuids: Option<dedup::UuidIndex>,
    /// The idempotency record this instance stored with its last part
    /// before that part was seen (see [`IdempotencyRecord::part_dir`]); the
    /// part has landed since, so the next record write stores it confirmed.
    unconfirmed: Option<(String, IdempotencyRecord)>,
    /// The catalog's copy of `record` still counts an append ahead of its
    /// part, which this instance has since settled (see `head.rs`): a repair
    /// stores it settled.
    rewrite: bool,
    /// Set when that settled append was written by another attempt (one
    /// that may have died before its idempotency record was stored): parts
    /// after this one count as unrecorded until a record write stores their
    /// idempotency records.
    unverified_from: Option<crate::domain::Seq>,
}

impl Head {
    /// Whether the record as last read or written is exactly the head: no
    /// append counted ahead of its part that this instance has not seen
    /// land, and no part beyond it that the record does not count. Only then
    /// may an append store its record at the same time as its part.
    fn settled(&self) -> bool {
        match &self.record {
            None => self.state.head == crate::domain::Seq::ZERO,
            Some(r) => {
                r.value.prior.is_none()
                    && self.unverified_from.is_none()
                    && r.value.head == self.state.head
                    && r.value.incarnation == self.state.incarnation
            }
        }
    }

    /// The head the record counts for certain: an append counted ahead of
    /// its part that has not been seen to land is left out.
    fn recorded(&self) -> crate::domain::Seq {
        let recorded = self
            .record
            .as_ref()
            .map(|r| r.value.confirmed())
            .filter(|r| r.incarnation == self.state.incarnation)
            .map_or(crate::domain::Seq::ZERO, |r| {
                r.head.max(self.state.compacted_through)
            });
        match self.unverified_from {
            Some(from) => recorded.min(from.max(self.state.compacted_through)),
            None => recorded,
        }
    }

    /// Notes a record this instance has just stored at `version`: it is
    /// the head's record now, and the idempotency record awaiting
    /// confirmation went with it.
    fn stored(&mut self, value: SessionRecord, version: u64) {
        self.record = Some(Versioned { value, version });
        self.rewrite = false;
        self.unverified_from = None;
        self.unconfirmed = None;
    }

    /// The idempotency records a record write stores: `own` (the append's,
    /// if any) and the one stored ahead of this instance's last part, now
    /// confirmed, unless `own` replaces it (a key reused past its retention).
    fn idempotency_with<'a>(
        &'a self,
        own: Option<(&'a str, &'a IdempotencyRecord)>,
    ) -> Vec<(&'a str, &'a IdempotencyRecord)> {
        let confirming = self
            .unconfirmed
            .iter()
            .map(|(k, r)| (k.as_str(), r))
            .filter(|(k, _)| own.is_none_or(|(o, _)| o != *k));
        confirming.chain(own).collect()
    }

    /// The idempotency records a record write of nothing else stores.
    fn confirming(&self) -> Vec<(&str, &IdempotencyRecord)> {
        self.idempotency_with(None)
    }
}

const PRUNE_AT: usize = 4096;
/// The memory budget's unit: permits are counted in KiB.
const MEMORY_UNIT: usize = 1024;

/// `bytes` in [`MEMORY_UNIT`]s, at least one (a semaphore's permit count).
fn memory_units(bytes: usize) -> usize {
    bytes
        .div_ceil(MEMORY_UNIT)
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
}

/// Most compare-and-set rounds on one catalog record before giving up.
pub(super) const CAS_ROUNDS: usize = 16;

// Every compare-and-set loop on a catalog record reads
// `for _ in 0..CAS_ROUNDS { ... match Round::of(put, ..)? { .. } }` and ends
// with `Err(cas_exhausted())`. (A helper taking the round as an async
// closure would be shorter, but its future cannot be proven `Send` today.)

/// What one compare-and-set round on a catalog record came to.
pub(super) enum Round<T> {
    /// Stored (or nothing to store): the answer.
    Done(T),
    /// Another writer moved the record first: read again and retry.
    Lost,
}

impl<T> Round<T> {
    /// A catalog write's outcome as a round: a lost compare-and-set is
    /// [`Round::Lost`], any other failure an error.
    fn of<V>(result: Result<V, PortError>, done: impl FnOnce(V) -> T) -> Result<Self, Error> {
        match result {
            Ok(v) => Ok(Round::Done(done(v))),
            Err(PortError::PreconditionFailed(_)) => Ok(Round::Lost),
            Err(e) => Err(e.into()),
        }
    }
}

/// The error once [`CAS_ROUNDS`] rounds were all lost to other writers.
pub(super) fn cas_exhausted() -> Error {
    Error::Conflict("the session record kept changing; retry".into())
}
/// Objects deleted at once by a delete or after a compaction.
const DELETE_CONCURRENCY: usize = 16;

/// Reports a broken hash chain: counted, logged, and a 502 for the client.
pub(crate) fn integrity_error(what: &str, err: part::ChainError) -> Error {
    METRICS
        .integrity_violations
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::error!(object = what, error = %crate::error::chain(&err), "integrity violation");
    Error::IntegrityViolation {
        object: what.to_string(),
        source: Box::new(err),
    }
}

impl Engine {
    /// Notes whether `key`'s catalog record lags its parts, for the repair
    /// backlog gauge.
    fn note_lagging(&self, key: &SessionKey, lagging: bool) {
        let mut keys = self.inner.lagging.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match lagging {
            true => keys.insert(key.clone()),
            false => keys.remove(key),
        };
        if changed {
            let delta = if lagging { 1 } else { -1 };
            METRICS
                .repair_backlog
                .fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Repairs, every `every`, the keys whose catalog record lags their
    /// durable parts (a catalog write failed after the part landed), until
    /// shutdown: listings catch up after a catalog outage without waiting
    /// for the next append to each key. A key whose repair fails is tried
    /// again on the next round.
    pub fn start_repairs(&self, every: std::time::Duration) {
        let engine = self.clone();
        let stopping = self.inner.stopping.clone();
        self.inner.background.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopping.cancelled() => return,
                }
                let keys: Vec<SessionKey> = {
                    let lagging = engine.inner.lagging.lock().unwrap_or_else(|p| p.into_inner());
                    lagging.iter().cloned().collect()
                };
                for key in keys {
                    if stopping.is_cancelled() {
                        return;
                    }
                    match engine.repair(&key).await {
                        Ok(_) => tracing::info!(key = %key, "catalog record repaired"),
                        Err(e) => {
                            tracing::debug!(key = %key, error = %crate::error::chain(&e), "catalog repair failed; retrying later")
                        }
                    }
                }
            }
        });
    }

    /// The engine clock's milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.config.clock.now_ms()
    }

    /// A new idempotency record, replayed until the retention has passed.
    fn idempotency_record(&self, fingerprint: String, receipt: AppendReceipt) -> IdempotencyRecord {
        let now = self.now_ms();
        IdempotencyRecord {
            fingerprint,
            receipt,
            created_ms: now,
            expires_ms: now + self.inner.config.idempotency_retention.as_millis() as u64,
            part_dir: None,
        }
    }

    /// An engine over the given ports.
    pub fn new(
        objects: Arc<dyn ObjectPort>,
        catalog: Arc<dyn CatalogPort>,
        config: EngineConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                objects,
                catalog: Arc::new(catalog::Marked(catalog)),
                heads: Mutex::new(HashMap::new()),
                compactions: Mutex::new(HashMap::new()),
                purges: Mutex::new(std::collections::HashSet::new()),
                background: tokio_util::task::TaskTracker::new(),
                stopping: tokio_util::sync::CancellationToken::new(),
                compaction_slots: Arc::new(tokio::sync::Semaphore::new(
                    config.compaction_concurrency.max(1),
                )),
                memory: Arc::new(tokio::sync::Semaphore::new(memory_units(
                    config.memory_budget,
                ))),
                config,
                bindings: Mutex::new(failures::BindingCache::default()),
                lagging: Mutex::new(std::collections::HashSet::new()),
                activity: activity::Activity::default(),
                watchers: tail::Watchers::default(),
            }),
        }
    }

    /// Holds `bytes` of the shared memory budget (all of it when `bytes` is
    /// larger) until the permit is dropped; waits while others hold it.
    async fn hold_memory(&self, bytes: usize) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let units = memory_units(bytes).min(memory_units(self.inner.config.memory_budget));
        self.inner
            .memory
            .clone()
            .acquire_many_owned(units as u32)
            .await
            .map_err(|_| Error::internal("the memory budget is closed"))
    }

    /// Bytes of the memory budget free now.
    pub fn memory_free(&self) -> usize {
        self.inner.memory.available_permits() * MEMORY_UNIT
    }

    /// Compactions running now.
    pub fn compactions_running(&self) -> usize {
        self.inner.config.compaction_concurrency.max(1)
            - self.inner.compaction_slots.available_permits()
    }

    /// Background tasks not yet finished.
    pub fn background_tasks(&self) -> usize {
        self.inner.background.len()
    }

    /// Stops background work: deletions waiting for their grace period end
    /// now (their work is recorded: the next compaction of the key does it),
    /// and running work gets `deadline` to finish. Returns how many tasks
    /// were still running at the deadline.
    pub async fn shutdown(&self, deadline: std::time::Duration) -> usize {
        self.inner.stopping.cancel();
        self.inner.background.close();
        let _ = tokio::time::timeout(deadline, self.inner.background.wait()).await;
        self.inner.background.len()
    }

    /// The object port.
    pub fn objects(&self) -> &Arc<dyn ObjectPort> {
        &self.inner.objects
    }

    /// The catalog port.
    pub fn catalog(&self) -> &Arc<dyn CatalogPort> {
        &self.inner.catalog
    }

    /// Checks both backends are reachable.
    pub async fn check(&self) -> Result<(), Error> {
        self.inner.objects.check().await?;
        self.inner.catalog.check().await?;
        Ok(())
    }

    fn head_lock(&self, key: &SessionKey) -> Arc<tokio::sync::Mutex<Head>> {
        let mut heads = self.inner.heads.lock().unwrap_or_else(|p| p.into_inner());
        if heads.len() >= PRUNE_AT {
            heads.retain(|_, h| Arc::strong_count(h) > 1);
        }
        heads.entry(key.clone()).or_default().clone()
    }

    /// Read-modify-write of one catalog record with compare-and-set, retried
    /// while other writers interleave. `change` sees the current record
    /// (`None` when absent) and returns the record to store, or `None` to
    /// store nothing. Returns what was stored.
    async fn update_record(
        &self,
        key: &SessionKey,
        mut change: impl FnMut(Option<&SessionRecord>) -> Result<Option<SessionRecord>, Error>,
    ) -> Result<Option<SessionRecord>, Error> {
        for _ in 0..CAS_ROUNDS {
            let current = self.inner.catalog.get_session(key).await?;
            let Some(next) = change(current.as_ref().map(|c| &c.value))? else {
                return Ok(None);
            };
            let write = SessionWrite {
                key,
                record: &next,
                expected_version: current.as_ref().map_or(0, |c| c.version),
                idempotency: Vec::new(),
                independent: false,
            };
            let stored = self.inner.catalog.put_session(write).await;
            if let Round::Done(()) = Round::of(stored, |_| ())? {
                return Ok(Some(next));
            }
        }
        Err(cas_exhausted())
    }

    /// Deletes objects, several at a time.
    async fn delete_objects(&self, keys: Vec<String>) -> Result<(), Error> {
        let objects = self.inner.objects.clone();
        stream::iter(keys)
            .map(move |key| {
                let objects = objects.clone();
                async move { objects.delete(&key).await }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The keys of a session whose heads this process has cached.
    fn cached_keys(&self, session: &SessionRef) -> Vec<SessionKey> {
        let heads = self.inner.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads
            .keys()
            .filter(|k| &k.session == session)
            .cloned()
            .collect()
    }

    /// Whether a cached head may be used without re-reading storage.
    fn is_fresh(&self, head: &Head) -> bool {
        let max_age = self.inner.config.compaction_grace / 2;
        head.loaded && head.loaded_at.is_some_and(|t| t.elapsed() < max_age)
    }

    /// Lists main transcripts of a project, one page.
    pub async fn list_sessions(
        &self,
        task: &TaskId,
        project: &ProjectKey,
        start_after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page<SessionListing>, Error> {
        sessions::list(self, task, project, start_after, limit).await
    }

    /// Lists the subkeys of a session, one page.
    pub async fn list_subkeys(
        &self,
        session: &SessionRef,
        start_after: Option<&Subpath>,
        limit: usize,
    ) -> Result<Page<Subpath>, Error> {
        let page = self
            .inner
            .catalog
            .list_subkeys(session, start_after, limit)
            .await?;
        // A deleted subkey keeps its record (its incarnation counter) with
        // nothing in it.
        Ok(Page {
            items: page
                .items
                .into_iter()
                .filter(|(_, record)| record.head > crate::domain::Seq::ZERO)
                .map(|(sub, _)| sub)
                .collect(),
            more: page.more,
        })
    }

    /// Reads a session's summary and its version; `None` when it has none.
    pub async fn summary(&self, session: &SessionRef) -> Result<Option<SummaryView>, Error> {
        sessions::summary(self, session).await
    }

    /// Stores a summary if its version is still `expected_version` (0: no
    /// summary stored); fenced like every write.
    pub async fn put_summary(
        &self,
        session: &SessionRef,
        data: Box<RawValue>,
        expected_version: u64,
        writer_epoch: Option<u64>,
    ) -> Result<u64, Error> {
        sessions::put_summary(self, session, data, expected_version, writer_epoch).await
    }

    /// Deletes a transcript: a main key with every subkey and its summary, or
    /// exactly one subkey. Deleting what is absent succeeds. Fenced like
    /// every write.
    pub async fn delete(&self, key: &SessionKey, writer_epoch: Option<u64>) -> Result<(), Error> {
        sessions::delete(self, key, writer_epoch).await?;
        self.note_activity(key.task_id());
        Ok(())
    }
}
