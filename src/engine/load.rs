//! Loading a transcript: the newest snapshot, then the parts after it, read
//! with bounded parallel GETs and handed out in order as a stream. Memory
//! stays bounded (a byte budget for parts in flight, snapshots streamed)
//! whatever the transcript's size.
//!
//! A load never lists or reads parts a snapshot covers. If an object it
//! planned to read has vanished (compacted away meanwhile), it plans again
//! from the newest snapshot and carries on from the first part it has not
//! yet handed out, so nothing is lost, repeated or reordered.
//!
//! Every object is verified against its stored CRC32C; a mismatch (or no
//! checksum at all) is an error, never served. Small transcripts are read and
//! verified completely before the first byte is returned, so a bad part is a
//! clean error status; larger ones are streamed, and a later mismatch ends
//! the stream with an error (the client sees a broken transfer).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument as _;

use super::part::{self, Chain, ChainError, Digest};
use super::snapshot::{SnapshotError, SnapshotReader};
use super::{keys, Engine};
use crate::backend::{ObjectBody, ObjectPort, PortError, SessionRecord};
use crate::domain::{Seq, SessionKey};
use crate::error::Error;
use crate::metrics::METRICS;

/// A load's output: chunks of complete JSONL lines, one entry per line.
pub type LoadStream = BoxStream<'static, Result<Bytes, Error>>;

/// How often a load may re-plan after objects vanished under it.
const MAX_REPLANS: usize = 8;
/// Chunks buffered between the reading task and the response.
const CHANNEL_DEPTH: usize = 4;

/// A load ready to stream.
pub struct Loaded {
    /// The key's head when the load was planned: its last part (which may
    /// be before `after_seq`, when the load has nothing to send).
    pub head: Seq,
    /// The incarnation read (0: the layout from before incarnations).
    pub incarnation: u64,
    /// The entries, in order.
    pub stream: LoadStream,
}

/// One object to read.
#[derive(Clone, Debug)]
pub(super) struct Piece {
    pub(super) seq: Seq,
    pub(super) key: String,
    pub(super) size: u64,
}

/// What to read, in order: an optional snapshot, then parts.
#[derive(Clone, Debug, Default)]
struct Plan {
    snapshot: Option<Piece>,
    parts: Vec<Piece>,
}

impl Plan {
    fn head(&self) -> Seq {
        self.parts
            .last()
            .map(|p| p.seq)
            .or(self.snapshot.as_ref().map(|s| s.seq))
            .unwrap_or(Seq::ZERO)
    }

    fn bytes(&self) -> u64 {
        self.snapshot
            .iter()
            .chain(&self.parts)
            .map(|p| p.size)
            .sum()
    }

    /// Whether the plan can serve part `next` on.
    fn covers(&self, next: Seq) -> bool {
        self.snapshot.as_ref().is_some_and(|s| s.seq >= next)
            || self.parts.first().is_some_and(|p| p.seq == next)
    }
}

/// Why emitting a plan stopped early.
enum Stop {
    /// `next` is the first part not yet handed out; plan again from there.
    Vanished { next: Seq },
    /// The consumer went away, or the load failed (already reported).
    Done,
}

/// Which incarnation a load reads, and what the catalog says its chain ends in.
#[derive(Clone, Debug)]
struct Target {
    dir: String,
    incarnation: u64,
    /// The catalog's head and its digest, to check the chain reaches it.
    anchor: Option<(Seq, Digest)>,
    /// The snapshot the catalog says covers parts up to here (0: none), so
    /// a load can fetch it while it lists the parts after it.
    compacted_through: Seq,
    /// The head and digest of an append the record counts ahead of its
    /// part: the anchor instead once storage holds a part at that number.
    ahead: Option<(Seq, Digest)>,
}

impl Target {
    /// The target checked against the newest anchor storage can show:
    /// the catalog's pending head once a part at its number is listed
    /// (it must be the one the catalog recorded), else its confirmed one.
    fn anchored_within(mut self, head: Seq) -> Self {
        if let Some(ahead) = self.ahead.take().filter(|(at, _)| *at <= head) {
            self.anchor = Some(ahead);
        }
        self
    }

    /// Parts of the layout before incarnations have no headers and no chain.
    fn legacy(&self) -> bool {
        self.incarnation == 0
    }
}

/// The chain a load is walking, and whether it reached a seal.
struct Walk {
    chain: Chain,
    sealed: bool,
}

impl Walk {
    /// Checks one part and returns the entries to hand out; `None` at a seal
    /// (the incarnation ends there).
    fn step(
        &mut self,
        target: &Target,
        piece: &Piece,
        body: Bytes,
    ) -> Result<Option<Bytes>, Error> {
        if target.legacy() {
            if part::is_seal(piece.seq, &body) {
                self.sealed = true;
                return Ok(None);
            }
            return Ok(Some(body));
        }
        let decoded =
            part::decode(piece.seq, body).map_err(|e| super::integrity_error(&piece.key, e))?;
        self.chain
            .part(&decoded)
            .map_err(|e| super::integrity_error(&piece.key, e))?;
        if decoded.header.seal {
            self.sealed = true;
            return Ok(None);
        }
        Ok(Some(decoded.entries))
    }

    /// Moves past a snapshot through `through` that the load read from part
    /// `next` on: it must agree with the chain walked so far (if any) and
    /// with the catalog's anchor, and the chain continues from its digest.
    fn past_snapshot(
        &mut self,
        target: &Target,
        through: Seq,
        next: Seq,
        read: &SnapshotRead,
    ) -> Result<(), ChainError> {
        if target.legacy() {
            self.chain = Chain::after(through, None);
            return Ok(());
        }
        let walked = self.chain.digest().filter(|_| next > Seq(1));
        if walked.is_some() && walked != read.digest_at(Seq(next.0 - 1)) {
            return Err(ChainError::Broken(next));
        }
        if let Some((at, digest)) = self.chain.anchor().filter(|(at, _)| *at <= through) {
            if read.digest_at(at).is_some_and(|d| d != digest) {
                return Err(ChainError::Anchor(at));
            }
        }
        self.chain = Chain::after(through, read.digest).with_anchor(self.chain.anchor());
        Ok(())
    }
}

/// What reading a whole snapshot learned.
#[derive(Clone, Debug, Default)]
pub(super) struct SnapshotRead {
    /// Entries per part, for parts `1..=through`.
    pub(super) counts: Vec<u64>,
    /// The chain digest at `through` (version 2).
    pub(super) digest: Option<Digest>,
    /// Chain digests at the parts asked for.
    digests: Vec<(Seq, Digest)>,
}

impl SnapshotRead {
    fn digest_at(&self, seq: Seq) -> Option<Digest> {
        self.digests
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, d)| *d)
    }
}

impl Engine {
    /// Opens a load of every entry in parts after `after` (0 for all), or
    /// `None` when the key has nothing at all.
    #[tracing::instrument(name = "engine.load", skip_all)]
    pub async fn load(&self, key: &SessionKey, after: Seq) -> Result<Option<Loaded>, Error> {
        let started = std::time::Instant::now();
        let Some(target) = self.target(key).await? else {
            return Ok(None);
        };
        let (plan, prefetched) = self.first_plan(&target, after).await?;
        let head = match plan.head() {
            // Nothing after `after`: the key's own head, at or before it.
            Seq::ZERO => match self.plan(&target.dir, Seq::ZERO).await?.head() {
                Seq::ZERO => return Ok(None),
                head => head,
            },
            head => head,
        };
        let target = target.anchored_within(head);
        let incarnation = target.incarnation;
        if let Some((at, _)) = target.anchor.filter(|(at, _)| *at > head) {
            // The catalog recorded parts storage no longer holds.
            let err = super::integrity_error(&target.dir, ChainError::Anchor(at));
            self.note_integrity(key, &err);
            return Err(err);
        }
        METRICS.loads.fetch_add(1, Ordering::Relaxed);
        let pieces = plan.snapshot.iter().count() as u64 + plan.parts.len() as u64;
        let prefetch = plan.bytes() <= self.inner.config.prefetch_bytes;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let engine = self.clone();
        let last = head.max(after);
        let producing = key.clone();
        // The reads are the load's: their spans belong under it.
        self.inner.background.spawn(
            async move {
                engine
                    .produce(producing, target, after, last, (plan, prefetched), tx)
                    .await
            }
            .in_current_span(),
        );
        // The producer ends a complete load with an empty chunk; a channel
        // that closes without it (the task died) is an error, never a clean end.
        let stream = stream::unfold(Some(rx), move |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Ok(chunk)) if chunk.is_empty() => {
                    METRICS.record_load(started.elapsed(), pieces);
                    None
                }
                Some(item) => Some((item, Some(rx))),
                None => Some((
                    Err(Error::internal("the load ended before its last entry")),
                    None,
                )),
            }
        });
        // A broken chain is a mirror failure too: kept for the admin API.
        let engine = self.clone();
        let failing = key.clone();
        let stream = stream.inspect_err(move |e| engine.note_integrity(&failing, e));
        let stream: LoadStream = if prefetch {
            // Read ahead while the transcript stays within the prefetch size
            // (a chunked snapshot's size is known only as it is read): a
            // short transcript is verified whole before the response starts,
            // a longer one streams on from where the read-ahead stopped.
            let limit = self.inner.config.prefetch_bytes;
            // Fused: polling it again after its end is harmless.
            let mut stream = stream.boxed().fuse();
            let (mut chunks, mut held) = (Vec::new(), 0u64);
            while held <= limit {
                let Some(chunk) = stream.next().await else {
                    break;
                };
                let chunk = chunk?;
                held += chunk.len() as u64;
                chunks.push(Ok(chunk));
            }
            stream::iter(chunks).chain(stream).boxed()
        } else {
            stream.boxed()
        };
        Ok(Some(Loaded {
            head,
            incarnation,
            stream,
        }))
    }

    /// Keeps an integrity violation of `key` as a mirror failure.
    fn note_integrity(&self, key: &SessionKey, err: &Error) {
        if let Error::IntegrityViolation { .. } = err {
            let detail = crate::error::chain(err);
            self.report_gateway_failure(key, "integrity", &detail, None);
        }
    }

    /// The incarnation a load reads: the catalog's; with no record (or one
    /// from before incarnations), `~i1` if it holds anything, else the older
    /// layout. `None` when the key has no record and nothing in storage.
    async fn target(&self, key: &SessionKey) -> Result<Option<Target>, Error> {
        let record = self.inner.catalog.get_session(key).await?;
        if let Some(r) = &record {
            // Deleted incarnations past their grace period go now.
            self.purge_due(key, &r.value);
        }
        let incarnation = match record.as_ref().map(|r| r.value.incarnation) {
            Some(n) if n > 0 => n,
            _ if self.has_objects(&keys::incarnation_dir(key, 1)).await? => 1,
            _ => 0,
        };
        let anchor_of = |r: &SessionRecord| {
            Some((r.head, part::from_hex(r.digest.as_deref()?)?))
                .filter(|(head, _)| *head > Seq::ZERO)
        };
        let current = record
            .as_ref()
            .map(|r| &r.value)
            .filter(|r| r.incarnation == incarnation && incarnation > 0);
        // An append the record counts ahead of its part anchors the chain
        // only once its part is there (see `anchored_within`).
        let anchor = current.and_then(|r| anchor_of(r.confirmed()));
        let ahead = current.filter(|r| r.prior.is_some()).and_then(anchor_of);
        let compacted_through = record
            .as_ref()
            .map(|r| r.value.confirmed())
            .filter(|r| r.incarnation == incarnation && incarnation > 0)
            .map_or(Seq::ZERO, |r| r.compacted_through);
        Ok(Some(Target {
            dir: keys::incarnation_dir(key, incarnation),
            incarnation,
            anchor,
            compacted_through,
            ahead,
        }))
    }

    /// Reads plans until the transcript is handed out, re-planning when
    /// objects vanish under it.
    async fn produce(
        self,
        key: SessionKey,
        target: Target,
        after: Seq,
        head: Seq,
        (mut plan, mut prefetched): (Plan, Option<ObjectBody>),
        tx: mpsc::Sender<Result<Bytes, Error>>,
    ) {
        let mut next = after.next();
        let mut walk = Walk {
            chain: Chain::after(after, (after == Seq::ZERO).then_some(part::GENESIS))
                .with_anchor(target.anchor),
            sealed: false,
        };
        for _ in 0..=MAX_REPLANS {
            let body = prefetched.take();
            match self
                .emit(&target, &plan, body, next, head, &mut walk, &tx)
                .await
            {
                Ok(()) => {
                    let last = Seq(walk.chain.next().0 - 1);
                    let end = match walk.chain.finish(last) {
                        Ok(()) => Ok(Bytes::new()),
                        Err(e) => Err(super::integrity_error(&target.dir, e)),
                    };
                    let _ = tx.send(end).await;
                    return;
                }
                Err(Stop::Done) => return,
                Err(Stop::Vanished { next: from }) => {
                    next = from;
                    let replanned = match self.plan(&target.dir, Seq(from.0 - 1)).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    if !replanned.covers(next) {
                        // Gone, and nothing newer holds it: deleted under the
                        // load, or removed behind the gateway's back.
                        let _ = tx.send(Err(self.missing(&key, &target, next).await)).await;
                        return;
                    }
                    plan = replanned;
                }
            }
        }
        let _ = tx
            .send(Err(Error::Conflict(
                "the transcript kept changing (compacted or deleted) during the load; retry".into(),
            )))
            .await;
    }

    /// The error for part `next` missing with nothing covering it.
    async fn missing(&self, key: &SessionKey, target: &Target, next: Seq) -> Error {
        match self.inner.catalog.get_session(key).await {
            Ok(Some(r)) if r.value.incarnation != target.incarnation => {
                Error::Conflict("the transcript was deleted during the load; load it again".into())
            }
            Ok(_) => super::integrity_error(&target.dir, ChainError::Broken(next)),
            Err(e) => e.into(),
        }
    }

    /// Hands out `plan` from part `next` up to part `head`, checking every
    /// link of the chain: a load serves what existed when it started, even
    /// if it had to re-plan, and stops at a seal.
    #[allow(clippy::too_many_arguments)]
    async fn emit(
        &self,
        target: &Target,
        plan: &Plan,
        prefetched: Option<ObjectBody>,
        mut next: Seq,
        head: Seq,
        walk: &mut Walk,
        tx: &mpsc::Sender<Result<Bytes, Error>>,
    ) -> Result<(), Stop> {
        async fn send(
            tx: &mpsc::Sender<Result<Bytes, Error>>,
            item: Result<Bytes, Error>,
        ) -> Result<(), Stop> {
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return Err(Stop::Done);
            }
            Ok(())
        }
        if walk.sealed {
            return Ok(());
        }
        if let Some(snapshot) = plan.snapshot.as_ref().filter(|s| s.seq >= next) {
            let sink = |lines| async move { tx.send(Ok(lines)).await.is_ok() };
            let mut wanted = vec![Seq(next.0 - 1)];
            wanted.extend(walk.chain.anchor().map(|(at, _)| at));
            // The body fetched while planning, if it is this snapshot's.
            let body = prefetched.filter(|_| snapshot.seq == target.compacted_through);
            match self
                .read_snapshot_with(&snapshot.key, body, Seq(next.0 - 1), head, &wanted, sink)
                .await
            {
                Ok(Some(read)) => {
                    if let Err(e) = walk.past_snapshot(target, snapshot.seq, next, &read) {
                        return send(tx, Err(super::integrity_error(&snapshot.key, e))).await;
                    }
                    next = snapshot.seq.next();
                }
                Ok(None) => return Err(Stop::Vanished { next }),
                Err(e) => return send(tx, Err(e)).await,
            }
        }
        let parts: Vec<Piece> = plan
            .parts
            .iter()
            .filter(|p| p.seq >= next && p.seq <= head)
            .cloned()
            .collect();
        let max_units = budget_units(self.inner.config.load_memory_budget);
        let budget = Arc::new(Semaphore::new(max_units));
        let objects = self.inner.objects.clone();
        let engine = self.clone();
        let mut fetched = stream::iter(parts)
            .map(move |piece| {
                let engine = engine.clone();
                fetch_part(objects.clone(), engine, budget.clone(), max_units, piece)
            })
            .buffered(self.inner.config.load_concurrency.max(1));
        while let Some(result) = fetched.next().await {
            match result {
                Ok((piece, Some(bytes), _permit)) => {
                    if piece.seq != next {
                        // A gap in the listing: something changed under us.
                        return Err(Stop::Vanished { next });
                    }
                    match walk.step(target, &piece, bytes) {
                        Ok(Some(entries)) => send(tx, Ok(entries)).await?,
                        Ok(None) => return Ok(()),
                        Err(e) => return send(tx, Err(e)).await,
                    }
                    next = piece.seq.next();
                }
                Ok((_, None, _)) => return Err(Stop::Vanished { next }),
                Err(e) => return send(tx, Err(e)).await,
            }
        }
        if next <= head {
            // Parts the load planned are gone and nothing newer covers them.
            return Err(Stop::Vanished { next });
        }
        Ok(())
    }

    /// Reads a snapshot, verified against its CRC32C and (version 2) its
    /// chain digest, handing `sink` whole lines of the entries of parts after
    /// `skip_through` up to `stop_after`. `sink` returns false to stop early
    /// (its reader went away). `None` when the snapshot no longer exists.
    pub(super) async fn read_snapshot<F, Fut>(
        &self,
        key: &str,
        skip_through: Seq,
        stop_after: Seq,
        sink: F,
    ) -> Result<Option<SnapshotRead>, Error>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        self.read_snapshot_with(key, None, skip_through, stop_after, &[], sink)
            .await
    }

    /// [`Engine::read_snapshot`] of `body` when given (already requested),
    /// also returning the chain digests at the parts in `wanted`.
    async fn read_snapshot_with<F, Fut>(
        &self,
        key: &str,
        body: Option<ObjectBody>,
        skip_through: Seq,
        stop_after: Seq,
        wanted: &[Seq],
        mut sink: F,
    ) -> Result<Option<SnapshotRead>, Error>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let body = match body {
            Some(body) => Some(body),
            None => self.inner.objects.get(key).await?,
        };
        let Some(mut body) = body else {
            return Ok(None);
        };
        let Some(stored) = body.crc32c else {
            return Err(checksum_error(format!("{key}: no CRC32C stored")));
        };
        let reader = SnapshotReader::new(skip_through, stop_after).with_digests_at(wanted);
        let malformed = |e: SnapshotError| match e {
            SnapshotError::Digest(through) => {
                super::integrity_error(key, ChainError::Content(through))
            }
            SnapshotError::Malformed(why) => Error::internal(format!("{key}: {why}")),
        };
        let mut feeder = Feeder {
            reader,
            sink: &mut sink,
            handed_out: false,
            malformed: &malformed,
        };
        if !feeder.feed(key, &mut body, stored).await? {
            // The reader went away: nothing more to hand out.
            return Ok(Some(SnapshotRead::default()));
        }
        // Version 3: the entry lines are in chunks, read in order (the next
        // one requested while the current one streams).
        let chunks = feeder
            .reader
            .header()
            .map(|h| h.chunks.clone())
            .unwrap_or_default();
        let dir = key.rsplit_once('/').map_or("", |(dir, _)| dir);
        let objects = self.inner.objects.clone();
        let mut gets = stream::iter(chunks)
            .map(move |c| {
                let (objects, chunk_key) = (objects.clone(), format!("{dir}/{}", c.name));
                async move { (objects.get(&chunk_key).await, c, chunk_key) }
            })
            .buffered(2);
        while let Some((got, listed, chunk_key)) = gets.next().await {
            let Some(mut body) = got? else {
                if !feeder.handed_out {
                    // Deleted with its snapshot: the load plans again.
                    return Ok(None);
                }
                return Err(Error::Conflict(format!(
                    "{chunk_key} vanished while being read (a load slower than the \
                     compaction grace period); retry"
                )));
            };
            if body.crc32c != Some(listed.crc32c) {
                return Err(checksum_error(format!(
                    "{chunk_key}: stored CRC32C {:?}, the snapshot lists {:08x}",
                    body.crc32c, listed.crc32c
                )));
            }
            if !feeder.feed(&chunk_key, &mut body, listed.crc32c).await? {
                return Ok(Some(SnapshotRead::default()));
            }
        }
        let reader = feeder.reader;
        let digest = reader.finish().map_err(malformed)?;
        let digests = wanted
            .iter()
            .filter_map(|&s| reader.digest_at(s).map(|d| (s, d)))
            .collect();
        Ok(Some(SnapshotRead {
            counts: reader
                .header()
                .map(|h| h.counts.clone())
                .unwrap_or_default(),
            digest,
            digests,
        }))
    }

    /// The plan a load starts from, with the snapshot's body already
    /// requested when the catalog names the snapshot the load needs: its
    /// GET and the listing of the parts after it run at once, instead of a
    /// listing for the snapshot, one for the parts, then the GET. A
    /// snapshot the catalog names but storage no longer holds (superseded
    /// and deleted) falls back to listing.
    async fn first_plan(
        &self,
        target: &Target,
        after: Seq,
    ) -> Result<(Plan, Option<ObjectBody>), Error> {
        let through = target.compacted_through;
        if through <= after || target.legacy() {
            return Ok((self.plan(&target.dir, after).await?, None));
        }
        let key = keys::snapshot_key(&target.dir, through);
        let (body, parts) = tokio::join!(
            self.inner.objects.get(&key),
            self.parts_after(&target.dir, through)
        );
        match body? {
            Some(body) => {
                let snapshot = Piece {
                    seq: through,
                    key,
                    size: body.size,
                };
                let plan = Plan {
                    snapshot: Some(snapshot),
                    parts: parts?,
                };
                Ok((plan, Some(body)))
            }
            None => Ok((self.plan(&target.dir, after).await?, None)),
        }
    }

    /// Lists what a load from part `after + 1` must read: the newest snapshot
    /// if it covers that part, and the parts after it (or after `after`).
    async fn plan(&self, dir: &str, after: Seq) -> Result<Plan, Error> {
        let snapshot = self.newest_snapshot(dir).await?;
        let from = snapshot.as_ref().map_or(after, |s| s.seq.max(after));
        let parts = self.parts_after(dir, from).await?;
        Ok(Plan {
            snapshot: snapshot.filter(|s| s.seq > after),
            parts,
        })
    }

    /// The parts in `dir` after part `after`, in order (snapshots sort after
    /// every part, so the listing stops at the first one).
    pub(super) async fn parts_after(&self, dir: &str, after: Seq) -> Result<Vec<Piece>, Error> {
        let mut parts = Vec::new();
        let start = keys::part_key(dir, after);
        let mut listing = self.inner.objects.list_all(dir, Some(start), false);
        while let Some(item) = listing.try_next().await? {
            match keys::parse(dir, &item.key) {
                Some(keys::ObjectKind::Part(seq)) => parts.push(Piece {
                    seq,
                    key: item.key,
                    size: item.size,
                }),
                Some(keys::ObjectKind::Snapshot(_)) => break,
                // Chunks sort before every part: never listed from one.
                Some(keys::ObjectKind::Chunk(_)) | None => {}
            }
        }
        Ok(parts)
    }

    /// The newest snapshot in `dir`, if any.
    pub(super) async fn newest_snapshot(&self, dir: &str) -> Result<Option<Piece>, Error> {
        let mut newest = None;
        let start = keys::snapshots_start(dir);
        let mut listing = self.inner.objects.list_all(dir, Some(start), false);
        while let Some(item) = listing.try_next().await? {
            if let Some(keys::ObjectKind::Snapshot(seq)) = keys::parse(dir, &item.key) {
                newest = Some(Piece {
                    seq,
                    key: item.key,
                    size: item.size,
                });
            }
        }
        Ok(newest)
    }
}

/// Feeds a snapshot's objects (its header object, then any chunks) to one
/// reader, handing the wanted whole lines to `sink`.
struct Feeder<'a, F, M> {
    reader: SnapshotReader,
    sink: &'a mut F,
    /// Whether any lines were handed out yet.
    handed_out: bool,
    malformed: &'a M,
}

impl<F, Fut, M> Feeder<'_, F, M>
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = bool>,
    M: Fn(SnapshotError) -> Error,
{
    /// Feeds one object's bytes and checks them against `expected`, its
    /// CRC32C; false when the sink's reader went away.
    async fn feed(
        &mut self,
        key: &str,
        body: &mut ObjectBody,
        expected: u32,
    ) -> Result<bool, Error> {
        let mut crc = 0u32;
        while let Some(chunk) = body.stream.next().await {
            let chunk = chunk?;
            crc = crc32c::crc32c_append(crc, &chunk);
            if let Some(lines) = self.reader.push(&chunk).map_err(self.malformed)? {
                self.handed_out = true;
                if !(self.sink)(lines).await {
                    return Ok(false);
                }
            }
        }
        if crc != expected {
            return Err(crc_mismatch(key, expected, crc));
        }
        Ok(true)
    }
}

/// The byte budget in semaphore units of 1 KiB.
fn budget_units(bytes: usize) -> usize {
    (bytes / 1024).max(1)
}

/// Reads one whole part within the byte budget and checks its CRC32C;
/// `None` when it has vanished. The permit travels with the bytes.
async fn fetch_part(
    objects: Arc<dyn ObjectPort>,
    engine: Engine,
    budget: Arc<Semaphore>,
    max_units: usize,
    piece: Piece,
) -> Result<(Piece, Option<Bytes>, Held), Error> {
    // One part larger than the whole budget takes all of it.
    let units = budget_units(piece.size as usize + 1024).min(max_units) as u32;
    let load = budget
        .acquire_many_owned(units)
        .await
        .map_err(|_| Error::internal("load budget closed"))?;
    // And the same from the instance's budget, shared with other loads and
    // with compactions.
    let shared = engine.hold_memory(piece.size as usize + 1024).await?;
    let held = Held {
        _load: load,
        _shared: shared,
    };
    match read_verified(objects.as_ref(), &piece.key).await? {
        Some(bytes) => Ok((piece, Some(bytes), held)),
        None => Ok((piece, None, held)),
    }
}

/// A part's share of its load's budget and of the instance's, released
/// together once the part has been handed out.
struct Held {
    _load: OwnedSemaphorePermit,
    _shared: OwnedSemaphorePermit,
}

/// Reads one whole object and checks it against its stored CRC32C; `None`
/// when it does not exist.
pub(super) async fn read_verified(
    objects: &dyn ObjectPort,
    key: &str,
) -> Result<Option<Bytes>, Error> {
    let Some(mut body) = objects.get(key).await? else {
        return Ok(None);
    };
    let mut buf = BytesMut::with_capacity(body.size as usize);
    while let Some(chunk) = body.stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let actual = crc32c::crc32c(&buf);
    match body.crc32c {
        Some(stored) if stored == actual => Ok(Some(buf.freeze())),
        Some(stored) => Err(crc_mismatch(key, stored, actual)),
        None => Err(checksum_error(format!("{key}: no CRC32C stored"))),
    }
}

/// Like [`read_verified`], but an absent object is an error: it vanished.
pub(super) async fn read_object(objects: &dyn ObjectPort, key: &str) -> Result<Bytes, Error> {
    read_verified(objects, key)
        .await?
        .ok_or_else(|| vanished(key))
}

/// An object that was there when planned and gone when read.
pub(super) fn vanished(key: &str) -> Error {
    Error::Conflict(format!("{key} vanished while being read; retry"))
}

/// Bytes whose CRC32C is not the one stored (or listed) for them.
fn crc_mismatch(key: &str, stored: u32, computed: u32) -> Error {
    checksum_error(format!(
        "{key}: stored CRC32C {stored:08x}, computed {computed:08x}"
    ))
}

pub(super) fn checksum_error(message: String) -> Error {
    METRICS.checksum_failures.fetch_add(1, Ordering::Relaxed);
    tracing::error!(%message, "checksum verification failed");
    PortError::checksum(message).into()
}
