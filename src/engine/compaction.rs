//! Compaction: fold a key's parts into one checksummed snapshot so a resume
//! reads one object instead of thousands.
//!
//! Compaction works inside the key's current incarnation (`incarnation.rs`);
//! a key in the layout before incarnations is compacted by migrating it.
//! Steps, each safe to die after:
//! 1. read the newest snapshot and every part after it, verified against
//!    their CRC32C and the hash chain (a sealed incarnation is left alone);
//! 2. create `snapshot-{through}` with create-if-absent (an identical
//!    snapshot from a racing compaction is as good as ours);
//! 3. record `compacted_through` in the catalog (a hint for the trigger and
//!    for dashboards; loads find snapshots by listing);
//! 4. after the grace period, delete the covered parts and older snapshots,
//!    only if the snapshot is still there.
//!
//! Loads read the newest snapshot and list parts after it, so from step 2 on
//! they never touch the covered parts. A crash before step 4 leaves covered
//! parts behind; the next compaction of the key schedules their deletion.
//! Compactions of one key run one at a time and never hold the append lock.

use std::collections::{BTreeSet, HashSet};

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt as _};
use serde::Serialize;

use super::part::{self, Chain, DecodedPart};
use super::snapshot::{ChunkRef, SnapshotHeader};
use super::{keys, Engine};
use crate::backend::PortError;
use crate::domain::{ProjectKey, Seq, SessionId, SessionKey, SessionRef, Subpath, TaskId};
use crate::error::Error;
use crate::metrics::METRICS;

/// Where a compaction stops early: a crash-injection point for tests and a
/// way to leave deletion to a later run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// Stop once the snapshot exists (before the catalog knows).
    AfterSnapshot,
    /// Stop once the catalog records it (before any deletion).
    AfterRecord,
    /// Delete only this many covered objects, then stop.
    AfterDeleting(usize),
}

/// How to run one compaction.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompactOptions {
    /// Compact whatever the threshold (on-demand compaction).
    pub force: bool,
    /// Stop early at this point.
    pub halt: Option<Halt>,
}

impl CompactOptions {
    /// Compact now, whatever the threshold, all the way through.
    pub const FORCED: CompactOptions = CompactOptions {
        force: true,
        halt: None,
    };
}

/// What one key's compaction did.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CompactionReport {
    /// The transcript, as `task/project/session[/subpath]`.
    pub key: String,
    /// The snapshot now covers parts up to this one.
    #[schema(value_type = u64)]
    pub through: Seq,
    /// Parts folded into the snapshot by this run.
    pub parts_folded: u64,
    /// Size of the snapshot in bytes.
    pub snapshot_bytes: u64,
    /// When the covered parts will be deleted, in seconds from now.
    pub delete_after_secs: u64,
}

/// What the catalog record says of the parts a compaction folds.
#[derive(Clone, Copy, Debug, Default)]
struct Recorded {
    /// The head it counts for certain.
    through: Seq,
    /// It counts an append ahead of its part (see
    /// [`crate::backend::SessionRecord::prior`]).
    ahead: bool,
}

impl Engine {
    pub(super) fn compaction_lock(
        &self,
        session: &SessionRef,
    ) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .inner
            .compactions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if locks.len() >= super::PRUNE_AT {
            locks.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
        }
        locks.entry(session.clone()).or_default().clone()
    }

    /// Starts a background compaction of `key` if its parts since the last
    /// snapshot reached the threshold and none is running for it.
    pub(super) fn maybe_compact(&self, key: &SessionKey, parts_since_snapshot: u64) {
        let threshold = self.inner.config.compaction_threshold;
        if threshold == 0 || parts_since_snapshot < threshold {
            return;
        }
        let lock = self.compaction_lock(&key.session);
        if lock.try_lock().is_err() {
            return;
        }
        let engine = self.clone();
        let key = key.clone();
        self.inner.background.spawn(async move {
            match engine.compact(&key, CompactOptions::default()).await {
                Ok(_) => {}
                Err(Error::Draining) => {
                    tracing::info!(key = %key, "compaction stopped for shutdown; the next trigger starts over")
                }
                Err(e) => {
                    tracing::warn!(key = %key, error = %crate::error::chain(&e), "background compaction failed; the next trigger retries")
                }
            }
        });
    }

    /// Compacts one key. `Ok(None)` when there was nothing to do (no new
    /// parts, or fewer than the threshold without `force`).
    #[tracing::instrument(name = "engine.compact", skip_all)]
    pub async fn compact(
        &self,
        key: &SessionKey,
        opts: CompactOptions,
    ) -> Result<Option<CompactionReport>, Error> {
        let result = self.compact_once(key, opts).await;
        METRICS.compactions.add(match &result {
            Ok(Some(_)) => "completed",
            Ok(None) => "skipped",
            Err(_) => "failed",
        });
        result
    }

    async fn compact_once(
        &self,
        key: &SessionKey,
        opts: CompactOptions,
    ) -> Result<Option<CompactionReport>, Error> {
        let (report, covered) = {
            // At most `compaction_concurrency` run at once, each alone on its session.
            let _slot = (self.inner.compaction_slots.clone())
                .acquire_owned()
                .await
                .map_err(|_| Error::internal("compaction slots closed"))?;
            let lock = self.compaction_lock(&key.session);
            let _running = lock.lock().await;
            self.compact_locked(key, opts).await?
        };
        if let Some(through) = covered {
            self.schedule_deletion(key, through, opts.halt).await;
        }
        Ok(report)
    }

    /// Steps 1–3; returns the report and the snapshot whose covered objects
    /// should now be deleted.
    async fn compact_locked(
        &self,
        key: &SessionKey,
        opts: CompactOptions,
    ) -> Result<(Option<CompactionReport>, Option<Seq>), Error> {
        let record = self.inner.catalog.get_session(key).await?;
        if let Some(r) = &record {
            self.purge_due(key, &r.value);
        }
        let incarnation = match record.as_ref().map(|r| r.value.incarnation) {
            Some(n) if n > 0 => n,
            _ if self.has_objects(&keys::incarnation_dir(key, 1)).await? => 1,
            _ if self.has_objects(&keys::incarnation_dir(key, 0)).await? => {
                // The layout before incarnations: migrating it compacts it.
                let through = self.migrate(key, record.as_ref()).await?;
                let report = CompactionReport {
                    key: key.to_string(),
                    through,
                    parts_folded: through.0,
                    snapshot_bytes: 0,
                    delete_after_secs: self.inner.config.compaction_grace.as_secs(),
                };
                return Ok((Some(report), None));
            }
            _ => return Ok((None, None)),
        };
        let recorded = record
            .as_ref()
            .filter(|r| r.value.incarnation == incarnation)
            .map_or(Recorded::default(), |r| Recorded {
                through: r.value.confirmed().head,
                ahead: r.value.prior.is_some(),
            });
        let dir = keys::incarnation_dir(key, incarnation);
        let base = self.newest_snapshot(&dir).await?;
        let base_seq = base.as_ref().map_or(Seq::ZERO, |b| b.seq);
        let parts = self.parts_after(&dir, base_seq).await?;
        let threshold = self.inner.config.compaction_threshold;
        let enough = opts.force || (threshold > 0 && parts.len() as u64 >= threshold);
        if parts.is_empty() || !enough {
            // Leftovers of an interrupted run are deleted after the grace period.
            let leftovers = (base_seq > Seq::ZERO).then_some(base_seq);
            return Ok((None, leftovers));
        }
        // Fold only the contiguous run after the base: a part being created
        // while we listed may be missing from the listing.
        let contiguous = parts
            .iter()
            .enumerate()
            .take_while(|(i, part)| part.seq.0 == base_seq.0 + 1 + *i as u64)
            .count();
        let mut parts = parts;
        parts.truncate(contiguous);
        if parts.is_empty() {
            return Ok((None, (base_seq > Seq::ZERO).then_some(base_seq)));
        }
        let through = parts.last().map_or(base_seq, |part| part.seq);

        // Step 1: read everything the snapshot will hold. A small snapshot is
        // built in memory as one object (version 2); a large one (or one
        // after a large one) is written in chunks as it is read, and only
        // its header is built in memory (version 3, see `snapshot.rs`).
        let base_header = match &base {
            Some(b) => Some(
                self.snapshot_header(&b.key)
                    .await?
                    .ok_or_else(|| super::load::vanished(&b.key))?,
            ),
            None => None,
        };
        let hint =
            base.as_ref().map_or(0, |b| b.size) + parts.iter().map(|part| part.size).sum::<u64>();
        let chunked = base_header.as_ref().is_some_and(|h| !h.chunks.is_empty())
            || hint > self.chunk_bytes() as u64;
        let header_room = 192 + 21 * through.0 as usize;
        let mut sink = if chunked {
            let chunks = base_header.as_ref().map_or(0, |h| h.chunks.len());
            let room = header_room + 128 * (chunks + 1 + hint as usize / self.chunk_bytes());
            Sink::Chunks(ChunkWriter::new(
                self,
                &dir,
                through,
                self.chunk_bytes(),
                room,
            ))
        } else {
            // The header (per-part counts) is known only at the end, so room
            // for its longest form is kept in front and the unused part
            // sliced off: one buffer, no copy of the transcript.
            let mut buf = BytesMut::with_capacity(header_room + hint as usize);
            buf.resize(header_room, b' ');
            Sink::Memory(buf)
        };
        // The snapshot being built takes its share of the budget loads draw
        // from (all of it, for a transcript larger than that).
        let _memory = self.hold_memory(sink.memory()).await?;
        let folded = self
            .fold(key, recorded, base.as_ref(), base_header, &parts, &mut sink)
            .await;
        let (mut header, written) = match folded {
            Ok(Some(header)) => (header, sink.written()),
            // A deleted incarnation: its objects go with it.
            Ok(None) => {
                self.abandon(&mut sink).await;
                return Ok((None, None));
            }
            Err(e) => {
                self.abandon(&mut sink).await;
                return Err(e);
            }
        };
        let (body, size) = match sink {
            Sink::Memory(mut buf) => {
                let line = header.encode();
                let start = header_room.checked_sub(line.len()).ok_or_else(|| {
                    Error::internal("snapshot header longer than its reserved room")
                })?;
                buf[start..header_room].copy_from_slice(&line);
                let body = buf.freeze().slice(start..);
                let size = body.len() as u64;
                (body, size)
            }
            Sink::Chunks(writer) => {
                header.v = 3;
                header.chunks = writer.chunks;
                let size = header.chunks.iter().map(|c| c.size).sum::<u64>();
                (Bytes::from(header.encode()), size)
            }
        };

        fail::fail_point!("compaction::before_snapshot", |_| {
            // A crash after the chunks, before the header, for tests.
            std::process::abort()
        });

        // Step 2: the snapshot, created once.
        let crc = crc32c::crc32c(&body);
        match self
            .inner
            .objects
            .put_if_absent(&keys::snapshot_key(&dir, through), body, crc)
            .await
        {
            Ok(()) => {}
            // A racing compaction made it first: ours is as good, but its
            // chunks are not the ones listed.
            Err(PortError::AlreadyExists(_)) => self.discard(written).await,
            // The header may have landed all the same: its chunks stay (the
            // next compaction's clean-up drops them if it did not).
            Err(e) => return Err(e.into()),
        }
        let report = CompactionReport {
            key: key.to_string(),
            through,
            parts_folded: parts.len() as u64,
            snapshot_bytes: size,
            delete_after_secs: self.inner.config.compaction_grace.as_secs(),
        };
        if opts.halt == Some(Halt::AfterSnapshot) {
            return Ok((Some(report), None));
        }

        // Step 3: tell the catalog.
        self.record_compaction(key, through).await?;
        tracing::info!(key = %key, through = through.0, parts = parts.len(), bytes = size, "compacted");
        if opts.halt == Some(Halt::AfterRecord) {
            return Ok((Some(report), None));
        }
        // Step 4 (deleting what the snapshot covers) follows, unlocked.
        Ok((Some(report), Some(through)))
    }

    /// Chunk size of a large snapshot.
    fn chunk_bytes(&self) -> usize {
        self.inner.config.snapshot_chunk_bytes.max(1)
    }

    /// Reads the base snapshot and the parts after it into `sink`, checking
    /// the hash chain, and returns the new snapshot's header (version 2;
    /// the caller makes it 3 for chunks); `None` when a part is a seal.
    async fn fold(
        &self,
        key: &SessionKey,
        recorded: Recorded,
        base: Option<&super::load::Piece>,
        base_header: Option<SnapshotHeader>,
        parts: &[super::load::Piece],
        sink: &mut Sink<'_>,
    ) -> Result<Option<SnapshotHeader>, Error> {
        let through = parts.last().map_or(Seq::ZERO, |p| p.seq);
        let (mut counts, mut chain) = match (base, base_header) {
            // Chunks of a large base are listed again, never re-read.
            (Some(b), Some(h)) if !h.chunks.is_empty() => {
                let digest = h.digest.as_deref().and_then(part::from_hex);
                if let Sink::Chunks(writer) = sink {
                    writer.chunks = h.chunks;
                }
                (h.counts, Chain::after(b.seq, digest))
            }
            (Some(b), _) => {
                let read = self.read_base(b, sink).await?;
                (read.counts, Chain::after(b.seq, read.digest))
            }
            (None, _) => (Vec::new(), Chain::from_genesis()),
        };
        // Parts read ahead: as many as the load concurrency, but no more
        // bytes than about one chunk.
        let largest = parts.iter().map(|p| p.size).max().unwrap_or(1).max(1);
        let ahead = (self.chunk_bytes() as u64 / largest) as usize;
        let ahead = ahead.clamp(1, self.inner.config.load_concurrency.max(1));
        let objects = self.inner.objects.clone();
        let pieces: Vec<(Seq, String)> = parts.iter().map(|p| (p.seq, p.key.clone())).collect();
        let mut bodies = stream::iter(pieces)
            .map(move |(seq, k)| read_owned(objects.clone(), seq, k))
            .buffered(ahead);
        let mut repair = false;
        while let Some(decoded) = bodies.next().await {
            // Shutdown: stop between parts. Nothing is recorded yet, the
            // chunks written so far are discarded, and the next compaction
            // starts over.
            if self.inner.stopping.is_cancelled() {
                return Err(Error::Draining);
            }
            let (key_name, decoded) = decoded?;
            chain
                .part(&decoded)
                .map_err(|e| super::integrity_error(&key_name, e))?;
            if decoded.header.seal {
                return Ok(None);
            }
            if decoded.header.seq > recorded.through {
                repair |= decoded.header.idem.is_some() || recorded.ahead;
            }
            counts.push(decoded.header.count);
            sink.push(&decoded.entries).await?;
        }
        sink.finish().await?;
        if repair {
            // Parts the catalog never recorded carry idempotency keys that
            // only they hold, and an append the record counts ahead of its
            // part is settled by that part: both before the parts go.
            self.repair(key).await?;
        }
        Ok(Some(SnapshotHeader {
            v: 2,
            through,
            counts,
            digest: chain.digest().map(|d| part::to_hex(&d)),
            chunks: Vec::new(),
        }))
    }

    /// Streams a one-object base snapshot's entry lines into `sink`.
    async fn read_base(
        &self,
        base: &super::load::Piece,
        sink: &mut Sink<'_>,
    ) -> Result<super::load::SnapshotRead, Error> {
        // The reader hands out lines as it goes; the sink may wait for a
        // chunk to be written, so they meet over a short channel.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let read = async move {
            let forward = |lines: Bytes| {
                let tx = tx.clone();
                async move { tx.send(lines).await.is_ok() }
            };
            self.read_snapshot(&base.key, Seq::ZERO, Seq(u64::MAX), forward)
                .await
        };
        let write = async {
            while let Some(lines) = rx.recv().await {
                sink.push(&lines).await?;
            }
            Ok::<_, Error>(())
        };
        let (read, written) = tokio::join!(read, write);
        written?;
        read?.ok_or_else(|| super::load::vanished(&base.key))
    }

    /// Gives up a snapshot being built: waits for chunks still uploading,
    /// then deletes every chunk it wrote.
    async fn abandon(&self, sink: &mut Sink<'_>) {
        sink.settle().await;
        self.discard(sink.written()).await;
    }

    /// Deletes chunks no snapshot lists (best effort: the next compaction's
    /// clean-up finds what is left).
    async fn discard(&self, chunks: Vec<String>) {
        if chunks.is_empty() {
            return;
        }
        if let Err(e) = self.delete_objects(chunks).await {
            tracing::warn!(error = %crate::error::chain(&e), "deleting unlisted snapshot chunks failed; a later compaction retries");
        }
    }

    /// Compacts every transcript of a task, whatever the threshold.
    pub async fn compact_task(&self, task: &TaskId) -> Result<Vec<CompactionReport>, Error> {
        let mut reports = Vec::new();
        for key in self.task_keys(task).await? {
            if let Some(report) = self.compact(&key, CompactOptions::FORCED).await? {
                reports.push(report);
            }
        }
        Ok(reports)
    }

    /// Every transcript of a task (whatever incarnations it has), found by
    /// listing its objects.
    pub(super) async fn task_keys(&self, task: &TaskId) -> Result<Vec<SessionKey>, Error> {
        let root = keys::task_dir(task);
        let mut dirs = BTreeSet::new();
        let mut listing = self.inner.objects.list_all(&root, None, true);
        while let Some(item) = listing.try_next().await? {
            if let Some((dir, _)) = item.key.rsplit_once('/') {
                let dir = format!("{dir}/");
                dirs.insert(keys::split_incarnation(&dir).0.to_string());
            }
        }
        Ok(dirs.iter().filter_map(|d| key_of_dir(task, d)).collect())
    }

    async fn record_compaction(&self, key: &SessionKey, through: Seq) -> Result<(), Error> {
        // A key the catalog does not know yet (its record is being repaired)
        // gets the hint with its next append.
        self.update_record(key, |current| {
            Ok(current.filter(|r| r.compacted_through < through).map(|r| {
                let mut next = r.clone();
                next.change_both(|r| r.compacted_through = through);
                next
            }))
        })
        .await?;
        Ok(())
    }

    async fn schedule_deletion(&self, key: &SessionKey, through: Seq, halt: Option<Halt>) {
        let limit = match halt {
            Some(Halt::AfterDeleting(n)) => Some(n),
            Some(_) => return,
            None => None,
        };
        let grace = self.inner.config.compaction_grace;
        let engine = self.clone();
        let key = key.clone();
        let stopping = self.inner.stopping.clone();
        let run = async move {
            if !grace.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => {}
                    // Shutdown: the snapshot is recorded, so the next
                    // compaction of the key deletes what it covers.
                    _ = stopping.cancelled() => return,
                }
            }
            if let Err(e) = engine.delete_covered(&key, through, limit).await {
                tracing::warn!(key = %key, error = %crate::error::chain(&e), "deleting compacted parts failed; the next compaction retries");
            }
        };
        if grace.is_zero() || limit.is_some() {
            // With no grace period (or a test's halt) it is done before we return.
            run.await;
        } else {
            self.inner.background.spawn(run);
        }
    }

    /// Deletes parts up to `through` and snapshots before it, if the
    /// snapshot for `through` still exists. Returns how many were deleted.
    pub async fn delete_covered(
        &self,
        key: &SessionKey,
        through: Seq,
        limit: Option<usize>,
    ) -> Result<usize, Error> {
        let lock = self.compaction_lock(&key.session);
        let _running = lock.lock().await;
        let incarnation = match self.inner.catalog.get_session(key).await? {
            Some(r) if r.value.incarnation > 0 => r.value.incarnation,
            _ => 1,
        };
        let dir = keys::incarnation_dir(key, incarnation);
        let newest = match self.newest_snapshot(&dir).await? {
            Some(s) if s.seq >= through => s,
            // The key was deleted (or never compacted this far): touch nothing.
            _ => return Ok(0),
        };
        let mut doomed = Vec::new();
        let mut chunks = Vec::new();
        let mut listing = self.inner.objects.list_all(&dir, None, false);
        while let Some(item) = listing.try_next().await? {
            match keys::parse(&dir, &item.key) {
                Some(keys::ObjectKind::Part(seq)) if seq <= through => doomed.push(item.key),
                Some(keys::ObjectKind::Part(_)) => {}
                Some(keys::ObjectKind::Snapshot(seq)) if seq < through => doomed.push(item.key),
                Some(keys::ObjectKind::Snapshot(_)) => break,
                // Those of a newer snapshot may belong to a run in progress.
                Some(keys::ObjectKind::Chunk(seq)) if seq <= newest.seq => chunks.push(item.key),
                Some(keys::ObjectKind::Chunk(_)) | None => {}
            }
        }
        drop(listing);
        if !chunks.is_empty() {
            // Chunks the newest snapshot lists stay; the others are leftovers
            // of a run that lost its race or died before its header. An
            // unreadable header keeps every chunk.
            if let Some(header) = self.snapshot_header(&newest.key).await? {
                let keep: HashSet<String> = header.chunks.into_iter().map(|c| c.name).collect();
                doomed.extend(
                    chunks
                        .into_iter()
                        .filter(|k| !keep.contains(&k[dir.len()..])),
                );
            }
        }
        if let Some(n) = limit {
            doomed.truncate(n);
        }
        let count = doomed.len();
        self.delete_objects(doomed).await?;
        Ok(count)
    }
}

/// Where a compaction puts the entry lines it folds.
enum Sink<'a> {
    /// One buffer, the header's room in front (a version-2 snapshot).
    Memory(BytesMut),
    /// Chunk objects written as they fill (a version-3 snapshot).
    Chunks(ChunkWriter<'a>),
}

impl Sink<'_> {
    async fn push(&mut self, lines: &[u8]) -> Result<(), Error> {
        match self {
            Sink::Memory(buf) => {
                buf.extend_from_slice(lines);
                Ok(())
            }
            Sink::Chunks(writer) => writer.push(lines).await,
        }
    }

    /// Writes what is left and waits until every chunk is written.
    async fn finish(&mut self) -> Result<(), Error> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::Chunks(writer) => {
                writer.flush().await?;
                writer.settle().await
            }
        }
    }

    /// Waits for a chunk still being written (after a failure, before its
    /// clean-up), whatever its outcome.
    async fn settle(&mut self) {
        if let Sink::Chunks(writer) = self {
            let _ = writer.settle().await;
        }
    }

    /// Bytes it holds at most.
    fn memory(&self) -> usize {
        match self {
            Sink::Memory(buf) => buf.capacity(),
            Sink::Chunks(writer) => 2 * writer.chunk_bytes + writer.room,
        }
    }

    /// Keys of the chunks written so far.
    fn written(&mut self) -> Vec<String> {
        match self {
            Sink::Memory(_) => Vec::new(),
            Sink::Chunks(writer) => std::mem::take(&mut writer.written),
        }
    }
}

/// Writes a large snapshot's entry lines as chunk objects of about
/// `chunk_bytes` each, whole lines only.
struct ChunkWriter<'a> {
    engine: &'a Engine,
    dir: String,
    through: Seq,
    /// Unique to this run, so racing runs never collide.
    attempt: String,
    chunk_bytes: usize,
    /// Room kept for the header (counts and chunk list).
    room: usize,
    buf: BytesMut,
    /// The chunks the snapshot lists: the base's, then this run's.
    chunks: Vec<ChunkRef>,
    /// Keys this run created (or may have: a failed put can land).
    written: Vec<String>,
    /// The chunk being written.
    uploading: Option<tokio::task::JoinHandle<Result<(), PortError>>>,
}

impl<'a> ChunkWriter<'a> {
    fn new(engine: &'a Engine, dir: &str, through: Seq, chunk_bytes: usize, room: usize) -> Self {
        Self {
            engine,
            dir: dir.to_string(),
            through,
            attempt: ulid::Ulid::new().to_string().to_lowercase(),
            chunk_bytes,
            room,
            buf: BytesMut::new(),
            chunks: Vec::new(),
            written: Vec::new(),
            uploading: None,
        }
    }

    async fn push(&mut self, lines: &[u8]) -> Result<(), Error> {
        if self.buf.capacity() == 0 {
            self.buf.reserve(self.chunk_bytes);
        }
        self.buf.extend_from_slice(lines);
        if self.buf.len() >= self.chunk_bytes {
            self.flush().await?;
        }
        Ok(())
    }

    /// Starts writing what is buffered as the next chunk, once the one
    /// before it is written: reading goes on while a chunk uploads, and at
    /// most two chunks are in memory.
    async fn flush(&mut self) -> Result<(), Error> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.settle().await?;
        let body = std::mem::take(&mut self.buf).freeze();
        let name = keys::chunk_name(self.through, &self.attempt, self.written.len());
        let key = format!("{}{name}", self.dir);
        let (crc32c, size) = (crc32c::crc32c(&body), body.len() as u64);
        self.written.push(key.clone());
        let objects = self.engine.inner.objects.clone();
        self.uploading = Some(tokio::spawn(async move {
            objects.put_if_absent(&key, body, crc32c).await
        }));
        self.chunks.push(ChunkRef { name, size, crc32c });
        Ok(())
    }

    /// Waits for the chunk being written, if any.
    async fn settle(&mut self) -> Result<(), Error> {
        match self.uploading.take() {
            Some(upload) => upload
                .await
                .map_err(|e| Error::internal(format!("a chunk upload failed: {e}")))?
                .map_err(Error::from),
            None => Ok(()),
        }
    }
}

/// Reads and decodes one part (its chain link is checked by the caller).
async fn read_owned(
    objects: std::sync::Arc<dyn crate::backend::ObjectPort>,
    seq: Seq,
    key: String,
) -> Result<(String, DecodedPart), Error> {
    let body = super::load::read_object(objects.as_ref(), &key).await?;
    let decoded = part::decode(seq, body).map_err(|e| super::integrity_error(&key, e))?;
    Ok((key, decoded))
}

/// The key whose objects live in `dir` (`task/project/session[/subpath]/`).
fn key_of_dir(task: &TaskId, dir: &str) -> Option<SessionKey> {
    let rest = dir
        .strip_prefix(task.as_str())?
        .strip_prefix('/')?
        .strip_suffix('/')?;
    let mut segments = rest.splitn(3, '/');
    let project = ProjectKey::new(segments.next()?).ok()?;
    let session = SessionId::new(segments.next()?).ok()?;
    let subpath = segments.next().map(Subpath::new).transpose().ok()?;
    Some(SessionKey {
        session: SessionRef {
            task_id: task.clone(),
            project_key: project,
            session_id: session,
        },
        subpath,
    })
}
