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

use super::snapshot::SnapshotReader;
use super::{keys, Engine};
use crate::backend::{ObjectPort, PortError};
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
}

/// Why emitting a plan stopped early.
enum Stop {
    /// `next` is the first part not yet handed out; plan again from there.
    Vanished { next: Seq },
    /// The consumer went away, or the load failed (already reported).
    Done,
}

impl Engine {
    /// Opens a load of every entry in parts after `after` (0 for all), or
    /// `None` when the key has nothing at all.
    pub async fn load(&self, key: &SessionKey, after: Seq) -> Result<Option<Loaded>, Error> {
        let dir = keys::transcript_dir(key);
        let plan = self.plan(&dir, after).await?;
        let head = match plan.head() {
            // Nothing after `after`: the key's own head, at or before it.
            Seq::ZERO => match self.plan(&dir, Seq::ZERO).await?.head() {
                Seq::ZERO => return Ok(None),
                head => head,
            },
            head => head,
        };
        METRICS.loads.fetch_add(1, Ordering::Relaxed);
        let prefetch = plan.bytes() <= self.inner.config.prefetch_bytes;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let engine = self.clone();
        let last = head.max(after);
        tokio::spawn(async move { engine.produce(dir, after, last, plan, tx).await });
        // The producer ends a complete load with an empty chunk; a channel
        // that closes without it (the task died) is an error, never a clean end.
        let stream = stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Ok(chunk)) if chunk.is_empty() => None,
                Some(item) => Some((item, Some(rx))),
                None => Some((
                    Err(Error::internal("the load ended before its last entry")),
                    None,
                )),
            }
        });
        let stream: LoadStream = if prefetch {
            let chunks: Vec<Bytes> = stream.try_collect().await?;
            stream::iter(chunks.into_iter().map(Ok)).boxed()
        } else {
            stream.boxed()
        };
        Ok(Some(Loaded { head, stream }))
    }

    /// Reads plans until the transcript is handed out, re-planning when
    /// objects vanish under it.
    async fn produce(
        self,
        dir: String,
        after: Seq,
        head: Seq,
        mut plan: Plan,
        tx: mpsc::Sender<Result<Bytes, Error>>,
    ) {
        let mut next = after.next();
        for _ in 0..=MAX_REPLANS {
            match self.emit(&plan, next, head, &tx).await {
                Ok(()) => {
                    let _ = tx.send(Ok(Bytes::new())).await;
                    return;
                }
                Err(Stop::Done) => return,
                Err(Stop::Vanished { next: from }) => {
                    next = from;
                    match self.plan(&dir, Seq(from.0 - 1)).await {
                        Ok(p) => plan = p,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
        }
        let _ = tx
            .send(Err(Error::Conflict(
                "the transcript kept changing (compacted or deleted) during the load; retry".into(),
            )))
            .await;
    }

    /// Hands out `plan` from part `next` up to part `head`: a load serves
    /// what existed when it started, even if it had to re-plan.
    async fn emit(
        &self,
        plan: &Plan,
        mut next: Seq,
        head: Seq,
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
        if let Some(snapshot) = plan.snapshot.as_ref().filter(|s| s.seq >= next) {
            let sink = |lines| async move { tx.send(Ok(lines)).await.is_ok() };
            match self
                .read_snapshot(&snapshot.key, Seq(next.0 - 1), head, sink)
                .await
            {
                Ok(Some(_)) => next = snapshot.seq.next(),
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
        let mut fetched = stream::iter(parts)
            .map(move |piece| fetch_part(objects.clone(), budget.clone(), max_units, piece))
            .buffered(self.inner.config.load_concurrency.max(1));
        while let Some(result) = fetched.next().await {
            match result {
                Ok((piece, Some(bytes), _permit)) => {
                    if piece.seq != next {
                        // A gap in the listing: something changed under us.
                        return Err(Stop::Vanished { next });
                    }
                    send(tx, Ok(bytes)).await?;
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

    /// Reads a snapshot, verified against its CRC32C, handing `sink` whole
    /// lines of the entries of parts after `skip_through` up to `stop_after`.
    /// `sink` returns false to stop early (its reader went away). Returns the
    /// snapshot's per-part entry counts, or `None` when it no longer exists.
    pub(super) async fn read_snapshot<F, Fut>(
        &self,
        key: &str,
        skip_through: Seq,
        stop_after: Seq,
        mut sink: F,
    ) -> Result<Option<Vec<u64>>, Error>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let Some(mut body) = self.inner.objects.get(key).await? else {
            return Ok(None);
        };
        let Some(stored) = body.crc32c else {
            return Err(checksum_error(format!("{key}: no CRC32C stored")));
        };
        let mut reader = SnapshotReader::new(skip_through, stop_after);
        let mut crc = 0u32;
        while let Some(chunk) = body.stream.next().await {
            let chunk = chunk?;
            crc = crc32c::crc32c_append(crc, &chunk);
            let lines = reader
                .push(&chunk)
                .map_err(|e| Error::Internal(format!("{key}: {e}")))?;
            if let Some(lines) = lines {
                if !sink(lines).await {
                    return Ok(Some(Vec::new()));
                }
            }
        }
        if crc != stored {
            return Err(checksum_error(format!(
                "{key}: stored CRC32C {stored:08x}, computed {crc:08x}"
            )));
        }
        reader
            .finish()
            .map_err(|e| Error::Internal(format!("{key}: {e}")))?;
        Ok(Some(
            reader
                .header()
                .map(|h| h.counts.clone())
                .unwrap_or_default(),
        ))
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
        let mut start = keys::part_key(dir, after);
        loop {
            let page = self.inner.objects.list(dir, Some(&start), false).await?;
            for item in &page.items {
                match keys::parse(dir, &item.key) {
                    Some(keys::ObjectKind::Part(seq)) => parts.push(Piece {
                        seq,
                        key: item.key.clone(),
                        size: item.size,
                    }),
                    Some(keys::ObjectKind::Snapshot(_)) => return Ok(parts),
                    None => {}
                }
            }
            match page.items.last() {
                Some(last) if page.more => start = last.key.clone(),
                _ => return Ok(parts),
            }
        }
    }

    /// The newest snapshot in `dir`, if any.
    pub(super) async fn newest_snapshot(&self, dir: &str) -> Result<Option<Piece>, Error> {
        let mut newest = None;
        let mut start = keys::snapshots_start(dir);
        loop {
            let page = self.inner.objects.list(dir, Some(&start), false).await?;
            for item in &page.items {
                if let Some(keys::ObjectKind::Snapshot(seq)) = keys::parse(dir, &item.key) {
                    newest = Some(Piece {
                        seq,
                        key: item.key.clone(),
                        size: item.size,
                    });
                }
            }
            match page.items.last() {
                Some(last) if page.more => start = last.key.clone(),
                _ => return Ok(newest),
            }
        }
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
    budget: Arc<Semaphore>,
    max_units: usize,
    piece: Piece,
) -> Result<(Piece, Option<Bytes>, OwnedSemaphorePermit), Error> {
    // One part larger than the whole budget takes all of it.
    let units = budget_units(piece.size as usize + 1024).min(max_units) as u32;
    let permit = budget
        .acquire_many_owned(units)
        .await
        .map_err(|_| Error::internal("load budget closed"))?;
    match read_verified(objects.as_ref(), &piece.key).await? {
        Some(bytes) => Ok((piece, Some(bytes), permit)),
        None => Ok((piece, None, permit)),
    }
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
        Some(stored) => Err(checksum_error(format!(
            "{key}: stored CRC32C {stored:08x}, computed {actual:08x}"
        ))),
        None => Err(checksum_error(format!("{key}: no CRC32C stored"))),
    }
}

/// Like [`read_verified`], but an absent object is an error: it vanished.
pub(super) async fn read_object(objects: &dyn ObjectPort, key: &str) -> Result<Bytes, Error> {
    read_verified(objects, key)
        .await?
        .ok_or_else(|| Error::Conflict(format!("{key} vanished while being read; retry")))
}

pub(super) fn checksum_error(message: String) -> Error {
    METRICS.checksum_failures.fetch_add(1, Ordering::Relaxed);
    tracing::error!(%message, "checksum verification failed");
    PortError::ChecksumMismatch(message).into()
}
