//! Incarnations: each delete closes a transcript's current incarnation with a
//! seal and starts the next, so a load is always wholly one incarnation and a
//! writer that cached the old one can never add to it unnoticed.
//!
//! Closing incarnation `n` (a delete):
//! 1. create the seal at `n`'s next sequence number (create-if-absent, like
//!    any part): from then on every writer to `n` loses the race to it, finds
//!    it, and moves on;
//! 2. move the catalog record to `n + 1` (empty), remembering `n` as retired;
//! 3. once the grace period has passed (every instance has re-read its
//!    cached head by then), delete `n`'s objects and forget it.
//!
//! A writer that finds a seal the catalog does not know of yet (a delete that
//! stopped after step 1) does step 2 itself before writing to `n + 1`, so a
//! load, which reads the catalog's incarnation, never misses a part there.
//!
//! Incarnation 0 is the layout from before incarnations (no `~i` directory,
//! parts without headers). It is read as it is; the first write migrates it:
//! its entries become `~i1/snapshot-{head}` (with the hash chain computed
//! over them), then it is sealed and retired like any other.

use bytes::BytesMut;
use futures::TryStreamExt as _;

use super::head::fresh_incarnation;
use super::part::{self, Chain, NewPart};
use super::snapshot::SnapshotHeader;
use super::{keys, Engine};
use crate::backend::{PortError, Retired, SessionRecord, Versioned};
use crate::domain::{Seq, SessionKey};
use crate::error::Error;
use crate::metrics::METRICS;

/// Most attempts at placing a seal while writers keep taking the number.
const MAX_SEAL_ATTEMPTS: usize = 64;

/// Attempts at deleting a retired incarnation before leaving it to the
/// next write, load or compaction of the key.
const PURGE_ATTEMPTS: u32 = 5;
/// The first wait after a failed attempt; doubled after each.
const PURGE_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

impl Engine {
    /// Closes incarnation `n` of `key`: a seal after its last part (nothing
    /// when it holds nothing), then the catalog record moves to `n + 1`.
    pub(super) async fn close_incarnation(
        &self,
        key: &SessionKey,
        n: u64,
        drop_summary: bool,
    ) -> Result<(), Error> {
        let dir = keys::incarnation_dir(key, n);
        let mut state = SessionRecord {
            incarnation: n,
            ..SessionRecord::default()
        };
        if let Some(r) = self.inner.catalog.get_session(key).await? {
            if r.value.incarnation == n {
                // The seal goes after what storage holds: an append counted
                // ahead of its part is found by the listing if it landed.
                state = r.value.confirmed().clone();
            }
        }
        let mut empty = false;
        let mut sealed = false;
        for _ in 0..MAX_SEAL_ATTEMPTS {
            let outcome = self.catch_up(&dir, &mut state, None).await?;
            if outcome.sealed {
                sealed = true;
                break;
            }
            if state.head == Seq::ZERO {
                empty = true;
                sealed = true;
                break;
            }
            let prev = match state.digest.as_deref().and_then(part::from_hex) {
                Some(d) => d,
                None if n == 0 => part::GENESIS,
                None => {
                    return Err(Error::Conflict(format!(
                        "cannot read the last part of {key} to seal it; retry"
                    )))
                }
            };
            let seq = state.head.next();
            let (body, _) = NewPart {
                seq,
                mtime: self.now_ms().max(state.mtime + 1),
                prev,
                entries: b"",
                count: 0,
                idempotency: None,
                seal: true,
                skipped: 0,
            }
            .encode();
            let crc = crc32c::crc32c(&body);
            match self
                .inner
                .objects
                .put_if_absent(&keys::part_key(&dir, seq), body, crc)
                .await
            {
                Ok(()) => {
                    sealed = true;
                    break;
                }
                Err(PortError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if !sealed {
            return Err(Error::Conflict(format!(
                "{key} kept growing while it was being deleted; retry"
            )));
        }
        self.retire(key, n, drop_summary, empty).await
    }

    /// Moves the catalog record from incarnation `n` to `n + 1` (if it is not
    /// past `n` already), remembering `n` for deletion unless it held nothing.
    /// `drop_summary` for a deleted main transcript.
    async fn retire(
        &self,
        key: &SessionKey,
        n: u64,
        drop_summary: bool,
        empty: bool,
    ) -> Result<(), Error> {
        self.update_record(key, |current| {
            let base = current.cloned().unwrap_or_default();
            if base.incarnation > n {
                return Ok(None);
            }
            let mut next = fresh_incarnation(&base, n + 1);
            if drop_summary {
                // A deleted session has no summary; the version moves on, so
                // no version seen before the delete ever matches again.
                next.summary = None;
                next.summary_version = base.summary_version + 1;
                next.summary_mtime = 0;
            }
            if !empty || n == 0 {
                next.retired.push(Retired {
                    incarnation: n,
                    sealed_ms: self.now_ms(),
                });
            }
            Ok(Some(next))
        })
        .await?;
        Ok(())
    }

    /// Incarnation `n` was found sealed while the catalog still names it (a
    /// delete that stopped after its seal): finish that delete's catalog step.
    pub(super) async fn leave_sealed(&self, key: &SessionKey, n: u64) -> Result<(), Error> {
        self.retire(key, n, key.subpath.is_none(), false).await
    }

    /// Deletes, in the background, the retired incarnations of `state` whose
    /// grace period has passed.
    pub(super) fn purge_due(&self, key: &SessionKey, state: &SessionRecord) {
        let grace = self.inner.config.compaction_grace.as_millis() as u64;
        let now = self.now_ms();
        for retired in &state.retired {
            if retired.sealed_ms.saturating_add(grace) <= now {
                self.spawn_purge(key.clone(), retired.incarnation);
            }
        }
    }

    /// Deletes incarnation `n` of `key` after the grace period (at once when
    /// it has passed), unless a purge of it is already running here.
    pub(super) fn spawn_purge(&self, key: SessionKey, n: u64) {
        {
            let mut running = self.inner.purges.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert((key.clone(), n)) {
                return;
            }
        }
        let engine = self.clone();
        self.inner.background.spawn(async move {
            let grace = engine.inner.config.compaction_grace;
            let mut backoff = PURGE_BACKOFF;
            for attempt in 1..=PURGE_ATTEMPTS {
                let due = match engine.inner.catalog.get_session(&key).await {
                    Ok(record) => record.and_then(|r| {
                        let retired = r.value.retired.iter().find(|x| x.incarnation == n);
                        retired.map(|x| x.sealed_ms + grace.as_millis() as u64)
                    }),
                    Err(e) => {
                        tracing::warn!(key = %key, incarnation = n, attempt, error = %crate::error::chain(&e), "reading the record of a retired incarnation failed");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                        continue;
                    }
                };
                // Not (or no longer) retired: nothing to delete.
                let Some(due) = due else { break };
                let wait = due.saturating_sub(engine.now_ms());
                if wait > 0 {
                    let wait = std::time::Duration::from_millis(wait);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        // Shutdown: the catalog still names it retired, so the
                        // next touch of the key deletes it.
                        _ = engine.inner.stopping.cancelled() => break,
                    }
                }
                match engine.purge_incarnation(&key, n).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(key = %key, incarnation = n, attempt, error = %crate::error::chain(&e), "deleting a retired incarnation failed; retrying (and the next write to the key retries too)");
                        if engine.inner.stopping.is_cancelled() {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
            let mut running = engine.inner.purges.lock().unwrap_or_else(|p| p.into_inner());
            running.remove(&(key, n));
        });
    }

    /// Deletes every object of retired incarnation `n` and forgets it.
    pub(super) async fn purge_incarnation(&self, key: &SessionKey, n: u64) -> Result<(), Error> {
        let dir = keys::incarnation_dir(key, n);
        // A sealed incarnation takes no new objects: one listing finds them all.
        let mut doomed = Vec::new();
        let mut listing = self.inner.objects.list_all(&dir, None, false);
        while let Some(item) = listing.try_next().await? {
            if keys::parse(&dir, &item.key).is_some() {
                doomed.push(item.key);
            }
        }
        drop(listing);
        self.delete_objects(doomed).await?;
        self.update_record(key, |current| {
            Ok(current
                .filter(|r| r.retired.iter().any(|x| x.incarnation == n))
                .map(|r| {
                    let mut next = r.clone();
                    next.change_both(|r| r.retired.retain(|x| x.incarnation != n));
                    next
                }))
        })
        .await?;
        Ok(())
    }

    /// Moves a key from the layout before incarnations into `~i1`: one
    /// snapshot of every entry (the chain computed over them), then the old
    /// layout is sealed and retired. Safe to repeat and to race.
    pub(super) async fn migrate(
        &self,
        key: &SessionKey,
        record: Option<&Versioned<SessionRecord>>,
    ) -> Result<Seq, Error> {
        let legacy = keys::incarnation_dir(key, 0);
        let (body, through, digest) = self.read_legacy(&legacy).await?;
        if through > Seq::ZERO {
            let target = keys::incarnation_dir(key, 1);
            let crc = crc32c::crc32c(&body);
            match self
                .inner
                .objects
                .put_if_absent(&keys::snapshot_key(&target, through), body, crc)
                .await
            {
                Ok(()) | Err(PortError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Seal the old layout so no writer of an older version adds to it.
        self.close_incarnation(key, 0, false).await?;
        // `close_incarnation` moved the record to incarnation 1: fill it in.
        let base = record.map(|r| r.value.clone()).unwrap_or_default();
        self.update_record(key, |current| {
            let Some(cur) = current.filter(|c| c.incarnation == 1 && c.head == Seq::ZERO) else {
                return Ok(None);
            };
            let mut next = cur.clone();
            next.head = through;
            next.parts = through.0;
            next.compacted_through = through;
            next.digest = digest.map(|d| part::to_hex(&d));
            next.mtime = next.mtime.max(base.mtime);
            next.bytes = base.bytes;
            Ok(Some(next))
        })
        .await?;
        METRICS.compactions.add("migrated");
        tracing::info!(key = %key, through = through.0, "migrated to incarnation 1");
        Ok(through)
    }

    /// Every entry of the layout before incarnations, as a version-2 snapshot
    /// body, with the part it runs through and its chain digest.
    async fn read_legacy(
        &self,
        dir: &str,
    ) -> Result<(bytes::Bytes, Seq, Option<part::Digest>), Error> {
        let base = self.newest_snapshot(dir).await?;
        let base_seq = base.as_ref().map_or(Seq::ZERO, |b| b.seq);
        let mut entries = BytesMut::new();
        let mut counts = match &base {
            Some(b) => {
                let sink = |lines: bytes::Bytes| {
                    entries.extend_from_slice(&lines);
                    std::future::ready(true)
                };
                self.read_snapshot(&b.key, Seq::ZERO, Seq(u64::MAX), sink)
                    .await?
                    .map(|r| r.counts)
                    .ok_or_else(|| Error::Conflict(format!("{} vanished; retry", b.key)))?
            }
            None => Vec::new(),
        };
        let mut through = base_seq;
        for piece in self.parts_after(dir, base_seq).await? {
            if piece.seq != through.next() {
                break;
            }
            let body = super::load::read_object(self.inner.objects.as_ref(), &piece.key).await?;
            if part::is_seal(piece.seq, &body) {
                break;
            }
            counts.push(body.iter().filter(|&&b| b == b'\n').count() as u64);
            entries.extend_from_slice(&body);
            through = piece.seq;
        }
        if through == Seq::ZERO {
            return Ok((bytes::Bytes::new(), through, None));
        }
        let mut chain = Chain::from_genesis();
        let mut at = 0usize;
        for &count in &counts {
            let mut end = at;
            for _ in 0..count {
                end += entries[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(entries.len() - end, |p| p + 1);
            }
            chain
                .lines(&entries[at..end])
                .map_err(|e| super::integrity_error(dir, e))?;
            at = end;
        }
        let digest = chain.digest();
        let header = SnapshotHeader {
            v: 2,
            through,
            counts,
            digest: digest.map(|d| part::to_hex(&d)),
            chunks: Vec::new(),
        };
        let mut body = BytesMut::from(&header.encode()[..]);
        body.extend_from_slice(&entries);
        Ok((body.freeze(), through, digest))
    }
}
