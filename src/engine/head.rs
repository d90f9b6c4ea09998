//! What this instance knows of a key's tail (its head) and how it learns it:
//! the catalog record first, then storage beyond it. The record is an index
//! that may lag; the parts are the truth, so every step here ends by
//! listing the incarnation's directory from the recorded head on.
//!
//! A head names the key's current incarnation. An incarnation found sealed
//! (deleted while this instance cached it) is left for the next one, and the
//! catalog is moved on first, so a load never misses what is written there.

use futures::TryStreamExt as _;

use super::part::{self, Digest, PartHeader};
use super::{cas_exhausted, keys, Engine, Head, Round, CAS_ROUNDS};
use crate::backend::{SessionRecord, SessionWrite, Versioned};
use crate::domain::{AppendReceipt, Seq, SessionKey};
use crate::error::Error;

/// How often one reload may follow incarnations that close under it.
const MAX_INCARNATION_STEPS: usize = 8;

/// A part found in storage that carries the idempotency key being looked for.
#[derive(Clone, Debug)]
pub(super) struct Found {
    pub(super) seq: Seq,
    pub(super) count: u64,
    pub(super) skipped: u64,
    pub(super) mtime: u64,
    pub(super) fingerprint: Option<String>,
}

impl Found {
    fn from_header(h: &PartHeader) -> Self {
        Self {
            seq: h.seq,
            count: h.count,
            skipped: h.skipped,
            mtime: h.mtime,
            fingerprint: h.fp.clone(),
        }
    }
}

/// What a catch-up learned beyond the head it started from.
#[derive(Debug, Default)]
pub(super) struct CatchUp {
    /// Storage holds something backing the starting head.
    pub(super) anchored: bool,
    /// The newest part is a seal: the incarnation is closed.
    pub(super) sealed: bool,
    /// A part carrying the idempotency key looked for.
    pub(super) found: Option<Found>,
}

/// The record of incarnation `n` as it starts: nothing written, the summary
/// state, mtime and retired incarnations carried over.
pub(super) fn fresh_incarnation(from: &SessionRecord, n: u64) -> SessionRecord {
    SessionRecord {
        incarnation: n,
        mtime: from.mtime,
        summary: from.summary.clone(),
        summary_version: from.summary_version,
        summary_mtime: from.summary_mtime,
        retired: from.retired.clone(),
        ..SessionRecord::default()
    }
}

impl Engine {
    /// Re-reads the catalog record and catches up from storage.
    pub(super) async fn reload_head(&self, key: &SessionKey, head: &mut Head) -> Result<(), Error> {
        for _ in 0..MAX_INCARNATION_STEPS {
            let record = self.inner.catalog.get_session(key).await?;
            // An append counted ahead of its part counts once it is seen.
            let mut state = record
                .as_ref()
                .map(|r| r.value.confirmed().clone())
                .unwrap_or_default();
            if state.incarnation == 0 {
                match self.unnumbered(key, record.as_ref()).await? {
                    Some(n) => state = fresh_incarnation(&state, n),
                    // The layout from before incarnations was migrated: read again.
                    None => continue,
                }
            }
            let dir = keys::incarnation_dir(key, state.incarnation);
            let outcome = self.catch_up(&dir, &mut state, None).await?;
            if outcome.sealed {
                self.leave_sealed(key, state.incarnation).await?;
                continue;
            }
            if !outcome.anchored {
                // The record names parts that no longer exist: the key starts
                // over. The summary version moves on so no old version matches.
                state = SessionRecord {
                    summary_version: state.summary_version + 1,
                    ..fresh_incarnation(&state, state.incarnation)
                };
                state.summary = None;
                head.uuids = None;
            }
            self.purge_due(key, &state);
            head.record = record;
            head.rewrite = false;
            head.unverified_from = None;
            head.state = state;
            head.loaded = true;
            head.loaded_at = Some(std::time::Instant::now());
            return self.settle(key, head).await;
        }
        Err(Error::Conflict(
            "the transcript kept being deleted while it was written; retry".into(),
        ))
    }

    /// The incarnation of a key whose record names none (no record, or one
    /// from before incarnations): 1 when `~i1` holds objects or nothing
    /// exists at all; `None` after migrating the older layout into `~i1`.
    async fn unnumbered(
        &self,
        key: &SessionKey,
        record: Option<&Versioned<SessionRecord>>,
    ) -> Result<Option<u64>, Error> {
        if self.has_objects(&keys::incarnation_dir(key, 1)).await? {
            return Ok(Some(1));
        }
        if self.has_objects(&keys::incarnation_dir(key, 0)).await? {
            self.migrate(key, record).await?;
            return Ok(None);
        }
        Ok(Some(1))
    }

    /// Whether `dir` directly holds a part or a snapshot.
    pub(super) async fn has_objects(&self, dir: &str) -> Result<bool, Error> {
        let page = self.inner.objects.list(dir, None, false).await?;
        Ok(page
            .items
            .iter()
            .any(|item| keys::parse(dir, &item.key).is_some()))
    }

    /// Advances `state` over every part (and snapshot) the store holds beyond
    /// `state.head`, reading the newest part's header (its digest and mtime,
    /// and whether it is a seal) and, with `scan`, every new part's, looking
    /// for that idempotency key.
    pub(super) async fn catch_up(
        &self,
        dir: &str,
        state: &mut SessionRecord,
        scan: Option<&str>,
    ) -> Result<CatchUp, Error> {
        // Parts a snapshot covers may already be deleted, but their numbers
        // are taken: the head is never below the newest snapshot.
        if state.compacted_through > state.head {
            state.head = state.compacted_through;
            state.parts = state.head.0;
            state.digest = None;
        }
        let start = state.head;
        let mut outcome = CatchUp {
            anchored: start == Seq::ZERO,
            ..CatchUp::default()
        };
        let mut discovered = Vec::new();
        let mut snapshot_head = None;
        // Start one before the head so the head's own part shows up.
        let after = keys::part_key(dir, Seq(start.0.saturating_sub(1)));
        let mut listing = self.inner.objects.list_all(dir, Some(after), false);
        while let Some(item) = listing.try_next().await? {
            match keys::parse(dir, &item.key) {
                Some(keys::ObjectKind::Part(seq)) if seq > state.head => {
                    state.head = seq;
                    state.parts = seq.0;
                    state.bytes += item.size;
                    discovered.push(seq);
                    outcome.anchored = true;
                }
                Some(keys::ObjectKind::Part(seq)) if seq == start => outcome.anchored = true,
                // Snapshots sort after every part. One newer than the
                // head (its record step never ran) still takes its numbers.
                Some(keys::ObjectKind::Snapshot(seq)) if seq >= start => {
                    outcome.anchored = true;
                    if seq > state.head {
                        state.head = seq;
                        state.parts = seq.0;
                        snapshot_head = Some(seq);
                    }
                    state.compacted_through = state.compacted_through.max(seq);
                }
                _ => {}
            }
        }
        if snapshot_head == Some(state.head) {
            state.digest = self
                .snapshot_digest(dir, state.head)
                .await?
                .map(|d| part::to_hex(&d));
        }
        let to_read: Vec<Seq> = match scan {
            Some(_) => discovered.clone(),
            None => discovered.last().copied().into_iter().collect(),
        };
        for seq in to_read {
            let Some(header) = self.part_header(dir, seq).await? else {
                continue;
            };
            if scan.is_some() && header.idem.as_deref() == scan && outcome.found.is_none() {
                outcome.found = Some(Found::from_header(&header));
            }
            if seq == state.head {
                state.mtime = state.mtime.max(header.mtime);
                state.digest = Some(header.digest.clone());
                outcome.sealed = header.seal;
            }
        }
        Ok(outcome)
    }

    /// After losing a race for a sequence number: catches up, moves to the
    /// next incarnation if this one was sealed, and returns the part holding
    /// `scan`'s idempotency key if one turned up.
    pub(super) async fn advance_head(
        &self,
        key: &SessionKey,
        head: &mut Head,
        scan: Option<&str>,
    ) -> Result<Option<Found>, Error> {
        let dir = keys::incarnation_dir(key, head.state.incarnation);
        let outcome = self.catch_up(&dir, &mut head.state, scan).await?;
        if outcome.sealed {
            self.leave_sealed(key, head.state.incarnation).await?;
            self.reload_head(key, head).await?;
            return Ok(None);
        }
        self.settle(key, head).await?;
        Ok(outcome.found)
    }

    /// Settles an append the record counts ahead of its part (its `prior`
    /// set) once storage shows its number taken: the part there with the
    /// record's digest means it landed, and the head takes its summary;
    /// anything else means it never will, and this instance reads the record
    /// as `prior`. Until its number is taken it stays pending (the append
    /// may be in flight on another instance), and the next append here
    /// writes its part before its record, so the part decides.
    pub(super) async fn settle(&self, key: &SessionKey, head: &mut Head) -> Result<(), Error> {
        let Some(pending) = head.record.as_ref().map(|r| &r.value) else {
            return Ok(());
        };
        if pending.prior.is_none()
            || pending.incarnation != head.state.incarnation
            || head.state.head < pending.head
        {
            return Ok(());
        }
        let (seq, digest) = (pending.head, pending.digest.clone());
        let dir = keys::incarnation_dir(key, head.state.incarnation);
        let landed = self
            .part_header(&dir, seq)
            .await?
            .filter(|h| Some(&h.digest) == digest.as_ref());
        // The idempotency record stored with it is confirmed by the next
        // record write (ours or a repair's). If there is none (the attempt
        // died between its writes), the part counts as unrecorded until a
        // record write stores it from the part's header.
        let mut verified = true;
        if let Some(idem) = landed.as_ref().and_then(|h| h.idem.clone()) {
            let stored = self
                .inner
                .catalog
                .get_idempotency(key.task_id(), &idem)
                .await?
                .filter(|r| r.receipt.seq == seq);
            match stored {
                Some(mut record) if record.part_dir.is_some() => {
                    record.part_dir = None;
                    head.unconfirmed = Some((idem, record));
                }
                Some(_) => {}
                None => verified = false,
            }
        }
        let Some(record) = head.record.as_mut() else {
            return Ok(());
        };
        let state = &mut head.state;
        match (landed, record.value.prior.take()) {
            (Some(_), prior) => {
                if !verified {
                    head.unverified_from = prior.map(|p| p.head);
                }
                let pending = &record.value;
                state.summary = pending.summary.clone();
                state.summary_version = pending.summary_version;
                state.summary_mtime = pending.summary_mtime;
                state.mtime = state.mtime.max(pending.mtime);
                // Parts counted from a listing carry no entry count.
                state.entries = state.entries.max(pending.entries);
            }
            (None, Some(prior)) => record.value = *prior,
            (None, None) => {}
        }
        head.rewrite = true;
        Ok(())
    }

    /// The part carrying `idem_key` among those this instance knows of but
    /// the catalog has not recorded (written by an attempt that died, or
    /// whose catalog write failed).
    pub(super) async fn find_unrecorded(
        &self,
        key: &SessionKey,
        head: &Head,
        idem_key: &str,
    ) -> Result<Option<Found>, Error> {
        let state = &head.state;
        let recorded = head.recorded();
        let dir = keys::incarnation_dir(key, state.incarnation);
        let mut seq = recorded.next();
        while seq <= state.head {
            if let Some(h) = self.part_header(&dir, seq).await? {
                if h.idem.as_deref() == Some(idem_key) {
                    return Ok(Some(Found::from_header(&h)));
                }
            }
            seq = seq.next();
        }
        Ok(None)
    }

    /// The chain digest of the head part, reading it when not yet known.
    pub(super) async fn head_digest(
        &self,
        key: &SessionKey,
        head: &mut Head,
    ) -> Result<Digest, Error> {
        let state = &mut head.state;
        if state.head == Seq::ZERO {
            return Ok(part::GENESIS);
        }
        if let Some(d) = state.digest.as_deref().and_then(part::from_hex) {
            return Ok(d);
        }
        let dir = keys::incarnation_dir(key, state.incarnation);
        let digest = match self.part_header(&dir, state.head).await? {
            Some(h) => part::from_hex(&h.digest),
            None => self.snapshot_digest(&dir, state.head).await?,
        };
        let digest = digest.ok_or_else(|| {
            Error::Conflict(format!(
                "cannot find part {} of {key} to chain the next part to; retry",
                state.head
            ))
        })?;
        state.digest = Some(part::to_hex(&digest));
        Ok(digest)
    }

    /// The header of part `seq` in `dir`; `None` when it does not exist, or
    /// when it is a part of the layout before incarnations (which has none;
    /// only the seal that closed that layout has a header).
    pub(super) async fn part_header(
        &self,
        dir: &str,
        seq: Seq,
    ) -> Result<Option<PartHeader>, Error> {
        let key = keys::part_key(dir, seq);
        let Some(body) = super::load::read_verified(self.inner.objects.as_ref(), &key).await?
        else {
            return Ok(None);
        };
        if keys::split_incarnation(dir).1 == 0 {
            return Ok(part::is_seal(seq, &body)
                .then(|| part::decode(seq, body).ok().map(|p| p.header))
                .flatten());
        }
        let decoded = part::decode(seq, body).map_err(|e| super::integrity_error(&key, e))?;
        Ok(Some(decoded.header))
    }

    /// The digest a snapshot's header names; `None` when it does not exist.
    async fn snapshot_digest(&self, dir: &str, seq: Seq) -> Result<Option<Digest>, Error> {
        let key = keys::snapshot_key(dir, seq);
        Ok(self
            .snapshot_header(&key)
            .await?
            .and_then(|h| h.digest)
            .and_then(|d| part::from_hex(&d)))
    }

    /// A snapshot's header, read no further; `None` when the snapshot does
    /// not exist or its header is malformed.
    pub(super) async fn snapshot_header(
        &self,
        key: &str,
    ) -> Result<Option<super::snapshot::SnapshotHeader>, Error> {
        let Some(line) = self.first_line(key).await? else {
            return Ok(None);
        };
        Ok(super::snapshot::SnapshotHeader::decode(&line))
    }

    /// The first line of an object (without its newline), read no further.
    async fn first_line(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        use futures::StreamExt;
        let Some(mut body) = self.inner.objects.get(key).await? else {
            return Ok(None);
        };
        let mut line = Vec::new();
        while let Some(chunk) = body.stream.next().await {
            let chunk = chunk?;
            if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&chunk[..end]);
                return Ok(Some(line));
            }
            line.extend_from_slice(&chunk);
        }
        Ok(Some(line))
    }

    /// Brings a key's catalog record in line with its objects (parts written
    /// while the catalog was failing, or by an instance that died before
    /// recording them), idempotency records included. Returns the record.
    pub async fn repair(&self, key: &SessionKey) -> Result<Option<SessionRecord>, Error> {
        let repaired = self.repair_record(key).await;
        if repaired.is_ok() {
            self.note_lagging(key, false);
        }
        repaired
    }

    async fn repair_record(&self, key: &SessionKey) -> Result<Option<SessionRecord>, Error> {
        let lock = self.head_lock(key);
        let mut head = lock.lock().await;
        for _ in 0..CAS_ROUNDS {
            self.reload_head(key, &mut head).await?;
            let stored = head.record.as_ref().map(|r| &r.value);
            if stored.is_some_and(|r| r.prior.is_some()) {
                // An append counted ahead of a part not there yet: in flight
                // on some instance, or never to land. The next append writes
                // its part before its record, and the part decides.
                return Ok(stored.cloned());
            }
            let behind =
                stored != Some(&head.state) && !(stored.is_none() && head.state.head == Seq::ZERO);
            if !behind && !head.rewrite && head.unconfirmed.is_none() {
                return Ok(stored.cloned());
            }
            self.record_unrecorded_keys(key, &head, None).await?;
            let mut next = head.state.clone();
            if behind {
                next.mtime = self.now_ms().max(next.mtime);
            }
            let write = SessionWrite {
                key,
                record: &next,
                expected_version: head.record.as_ref().map_or(0, |r| r.version),
                idempotency: head.confirming(),
                independent: false,
            };
            let stored = self.inner.catalog.put_session(write).await;
            if stored.is_err() {
                head.loaded = false;
            }
            if let Round::Done(version) = Round::of(stored, |version| version)? {
                head.stored(next.clone(), version);
                head.state = next.clone();
                return Ok(Some(next));
            }
        }
        Err(cas_exhausted())
    }

    /// Before the catalog's head moves past parts it never recorded, stores
    /// the idempotency records those parts carry (except part `skip`, whose
    /// record goes with the head itself), so a retry of one still finds it.
    pub(super) async fn record_unrecorded_keys(
        &self,
        key: &SessionKey,
        head: &Head,
        skip: Option<Seq>,
    ) -> Result<(), Error> {
        let state = &head.state;
        let recorded = head.recorded();
        let dir = keys::incarnation_dir(key, state.incarnation);
        let mut seq = recorded.next();
        while seq <= state.head {
            if Some(seq) != skip {
                if let Some(h) = self.part_header(&dir, seq).await? {
                    if let (Some(idem), Some(fp)) = (&h.idem, &h.fp) {
                        let receipt = AppendReceipt {
                            seq: h.seq,
                            count: h.count,
                            skipped: h.skipped,
                            mtime: h.mtime,
                            summary: None,
                        };
                        let record = self.idempotency_record(fp.clone(), receipt);
                        self.inner
                            .catalog
                            .put_idempotency(key.task_id(), idem, &record)
                            .await?;
                    }
                }
            }
            seq = seq.next();
        }
        Ok(())
    }
}
