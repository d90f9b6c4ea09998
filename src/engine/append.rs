//! Appending a batch: pick the next sequence number, create the part with
//! create-if-absent, and on a lost race catch up with the store and try the
//! next number. Wall clocks never decide order.
//!
//! The part carries everything a retry and an audit need (see `part.rs`):
//! its place in the hash chain, the acknowledged mtime, and the append's
//! idempotency key and request digest. The catalog is updated after the part
//! is durable; if that write fails (or the process dies first) the append is
//! still in the part, a retry with the same key finds it there and answers
//! as the first attempt would have, and the next append re-reads the catalog
//! and catches it up from the object listing (see `head.rs`).

use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use super::codec::EncodedBatch;
use super::head::Found;
use super::part::{self, NewPart};
use super::{cas_exhausted, keys, Engine, Head, Round, CAS_ROUNDS};
use crate::backend::{IdempotencyRecord, PortError, SessionRecord, SessionWrite};
use crate::domain::{AppendReceipt, Entry, Seq, SessionKey, SummaryOutcome, SummaryUpdate};
use crate::error::Error;
use crate::metrics::METRICS;

/// One append, validated.
#[derive(Debug)]
pub struct AppendRequest {
    /// Where to append.
    pub key: SessionKey,
    /// The batch, in order; non-empty, each a JSON object.
    pub entries: Vec<Entry>,
    /// The client's `Idempotency-Key`, unique per intended write within the
    /// task: a repeat with the same request replays the first answer.
    pub idempotency_key: Option<String>,
    /// An optional compare-and-set summary update (main keys only).
    pub summary: Option<SummaryUpdate>,
    /// The writer's lease epoch, when it holds one.
    pub writer_epoch: Option<u64>,
}

/// What an acknowledgement says of the part, before the summary.
#[derive(Clone, Copy, Debug)]
struct Written {
    seq: Seq,
    count: u64,
    skipped: u64,
    mtime: u64,
    /// False when every entry was a duplicate and no part was written.
    part: bool,
}

impl AppendRequest {
    /// The summary update to apply: none on a subkey, which has no summary
    /// (an update sent with one is dropped, never a reason to refuse the
    /// entries).
    fn applicable_summary(&self) -> Option<&SummaryUpdate> {
        self.summary.as_ref().filter(|_| self.key.subpath.is_none())
    }

    /// The receipt's summary outcome; `apply` decides (applied, version).
    fn summary_outcome(
        &self,
        apply: impl FnOnce(&SummaryUpdate) -> (bool, u64),
    ) -> Option<SummaryOutcome> {
        match (&self.summary, self.applicable_summary()) {
            (None, _) => None,
            (Some(_), None) => Some(SummaryOutcome::dropped_for_subkey()),
            (Some(_), Some(update)) => {
                let (applied, version) = apply(update);
                Some(SummaryOutcome {
                    applied,
                    version,
                    note: None,
                })
            }
        }
    }
}

/// A digest of what an append means: its key, the part body (entries
/// compacted, so whitespace does not count) and the summary update.
fn fingerprint(key: &SessionKey, body: &[u8], summary: Option<&SummaryUpdate>) -> String {
    let mut hash = Sha256::new();
    hash.update(key.to_string().as_bytes());
    hash.update(b"\n");
    hash.update(body);
    if let Some(update) = summary {
        hash.update(format!("summary {}\n", update.expected_version).as_bytes());
        hash.update(super::minify_json(update.data.get()).as_bytes());
    }
    hex::encode(hash.finalize())
}

impl Engine {
    /// Appends one batch as the key's next part and returns its receipt.
    #[tracing::instrument(name = "engine.append", skip_all, fields(entries = req.entries.len()))]
    pub async fn append(&self, req: AppendRequest) -> Result<AppendReceipt, Error> {
        let started = std::time::Instant::now();
        let entries = req.entries.len() as u64;
        let bytes = req.entries.iter().map(|e| e.get().len() as u64).sum();
        let task = req.key.task_id().clone();
        let result = self.append_batch(req).await;
        METRICS.record_append(started.elapsed(), bytes, entries);
        if result.is_ok() {
            self.note_append();
            self.note_activity(&task);
        }
        result
    }

    async fn append_batch(&self, req: AppendRequest) -> Result<AppendReceipt, Error> {
        if let Some(summary) = req.applicable_summary() {
            super::check_summary(summary.data.get())?;
        }
        let batch = EncodedBatch::new(&req.entries)?;
        let idempotency = req.idempotency_key.as_ref().map(|k| {
            let print = fingerprint(&req.key, &batch.all(), req.applicable_summary());
            (k.as_str(), print)
        });
        let lock = self.head_lock(&req.key);
        let mut head = lock.lock().await;

        // The two reads before the write, at once: the idempotency record
        // (a repeat is answered from it, whatever the writer's epoch) and the
        // task's writer epoch (the fence, checked before anything is written).
        let task = req.key.task_id();
        let lookup = async {
            match &idempotency {
                Some((idem_key, _)) => self.inner.catalog.get_idempotency(task, idem_key).await,
                None => Ok(None),
            }
        };
        let (found, fenced) = tokio::join!(lookup, self.check_writer(task, req.writer_epoch));
        if let Some((idem_key, print)) = &idempotency {
            // Past its retention a key is forgotten: this is a new append.
            if let Some(found) = found?.filter(|r| !r.expired(self.now_ms())) {
                if self.stands(idem_key, &found).await? {
                    return replay(idem_key, print, &found.fingerprint, found.receipt);
                }
                // Stored with a part that never landed (or has not yet):
                // this request is written now, and the part decides.
            }
        }
        fenced?;

        let idem = idempotency.as_ref().map(|(k, p)| (*k, p.as_str()));
        let result = self.append_locked(&mut head, &req, idem, &batch).await;
        match &result {
            Ok(_) => self.check_drift(&req.key),
            Err(_) => head.loaded = false,
        }
        result
    }

    async fn append_locked(
        &self,
        head: &mut Head,
        req: &AppendRequest,
        idempotency: Option<(&str, &str)>,
        batch: &EncodedBatch,
    ) -> Result<AppendReceipt, Error> {
        let key = &req.key;
        if !self.is_fresh(head) {
            self.reload_head(key, head).await?;
        }
        if let Some((idem_key, print)) = idempotency {
            // No catalog record of this key: the part may still exist, written
            // by an attempt that died before recording it.
            if let Some(found) = self.find_unrecorded(key, head, idem_key).await? {
                return self.recover(head, req, idem_key, print, found).await;
            }
        }
        // Entries whose uuid the transcript holds already are not stored
        // again (see `dedup.rs`); only a batch with uuids needs the index.
        let dedup = batch.uuids().any(|u| u.is_some());
        let mut attempts = 0;
        let (written, acked) = loop {
            if dedup {
                self.index_uuids(key, head).await?;
            }
            let kept = match dedup {
                true => super::dedup::keep(batch.uuids(), head.uuids.as_ref()),
                false => vec![true; batch.len()],
            };
            let count = kept.iter().filter(|&&k| k).count() as u64;
            let skipped = batch.len() as u64 - count;
            if count == 0 {
                // Every entry is stored already: nothing to write.
                let written = Written {
                    seq: head.state.head,
                    count,
                    skipped,
                    mtime: head.state.mtime,
                    part: false,
                };
                break (written, None);
            }
            let (entries, kept_uuids) = batch.keep(&kept);
            let seq = head.state.head.next();
            let mtime = self.now_ms().max(head.state.mtime + 1);
            let prev = self.head_digest(key, head).await?;
            let (body, digest) = NewPart {
                seq,
                mtime,
                prev,
                entries: &entries,
                count,
                idempotency,
                seal: false,
                skipped,
            }
            .encode();
            let dir = keys::incarnation_dir(key, head.state.incarnation);
            let crash = Crash::planned();
            let mut after = head.state.clone();
            after.head = seq;
            after.parts = seq.0;
            after.bytes += body.len() as u64;
            after.entries += count as u64;
            after.mtime = mtime;
            after.digest = Some(part::to_hex(&digest));
            let written = Written {
                seq,
                count,
                skipped,
                mtime,
                part: true,
            };
            // The first attempt stores the record with the part, at once,
            // when this instance's view of the record is settled; a lost race
            // (rare: one writer per task) goes the careful way.
            let ahead = attempts == 0 && head.settled();
            let put = match ahead {
                true => {
                    let plan = Ahead::plan(self, head, req, idempotency, &after, written, &dir);
                    self.put_ahead(head, plan, &keys::part_key(&dir, seq), body, crash)
                        .await
                }
                false => {
                    let put = self.put_part(&keys::part_key(&dir, seq), body).await;
                    if put.is_ok() && crash == Crash::AfterPart {
                        std::process::abort();
                    }
                    put.map(|()| None)
                }
            };
            match put {
                Ok(acked) => {
                    if acked.is_none() {
                        head.state = after;
                    }
                    if let Some(index) = head.uuids.as_mut() {
                        index.add_part(seq, kept_uuids);
                    }
                    break (written, acked);
                }
                Err(PortError::AlreadyExists(_)) => {
                    METRICS.append_conflicts.fetch_add(1, Ordering::Relaxed);
                    attempts += 1;
                    if attempts >= self.inner.config.max_append_attempts {
                        return Err(Error::Conflict(format!(
                            "gave up after {attempts} lost races for the next sequence number"
                        )));
                    }
                    // Someone else took the number: learn what they wrote (a
                    // seal moves us to the next incarnation), and whether it
                    // was this very request, sent before and never answered.
                    if let Some(found) = self
                        .advance_head(key, head, idempotency.map(|i| i.0))
                        .await?
                    {
                        if let Some((idem_key, print)) = idempotency {
                            return self.recover(head, req, idem_key, print, found).await;
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        METRICS
            .dedup_skipped
            .fetch_add(written.skipped, Ordering::Relaxed);
        if written.part {
            METRICS.appends.fetch_add(1, Ordering::Relaxed);
            let since_snapshot = written.seq.0.saturating_sub(head.state.compacted_through.0);
            self.maybe_compact(key, since_snapshot);
            if let Some(receipt) = acked {
                self.note_lagging(key, false);
                return Ok(receipt);
            }
        } else if req.summary.is_none() && idempotency.is_none() {
            // Nothing written and nothing to remember.
            return Ok(AppendReceipt {
                seq: written.seq,
                count: 0,
                skipped: written.skipped,
                mtime: written.mtime,
                summary: None,
            });
        }
        self.commit(head, req, idempotency, written).await
    }

    /// Answers a retry whose part was found in storage, recording it (and its
    /// idempotency record) in the catalog now.
    async fn recover(
        &self,
        head: &mut Head,
        req: &AppendRequest,
        idem_key: &str,
        print: &str,
        found: Found,
    ) -> Result<AppendReceipt, Error> {
        if found.fingerprint.as_deref() != Some(print) {
            return Err(conflict(idem_key));
        }
        METRICS.idempotent_replays.fetch_add(1, Ordering::Relaxed);
        let written = Written {
            seq: found.seq,
            count: found.count,
            skipped: found.skipped,
            mtime: found.mtime,
            part: true,
        };
        self.commit(head, req, Some((idem_key, print)), written)
            .await
    }

    /// Records the part in the catalog (with the summary update and the
    /// idempotency record) and returns the acknowledgement. A catalog that
    /// fails leaves the part acknowledged and the head to be repaired.
    async fn commit(
        &self,
        head: &mut Head,
        req: &AppendRequest,
        idempotency: Option<(&str, &str)>,
        written: Written,
    ) -> Result<AppendReceipt, Error> {
        match self.commit_record(head, req, idempotency, written).await {
            Ok(receipt) => {
                self.note_lagging(&req.key, false);
                Ok(receipt)
            }
            Err(err @ Error::Erased(_)) => Err(err),
            Err(err) => {
                self.note_lagging(&req.key, true);
                // The part is durable and carries its own idempotency key:
                // acknowledge it, and let the next append repair the catalog.
                METRICS.catalog_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %req.key, seq = written.seq.0, error = %crate::error::chain(&err), "catalog update failed after the part was written; will repair");
                head.loaded = false;
                Ok(AppendReceipt {
                    seq: written.seq,
                    count: written.count,
                    skipped: written.skipped,
                    mtime: written.mtime,
                    summary: req.summary_outcome(|_| (false, head.state.summary_version)),
                })
            }
        }
    }

    /// Writes the record for a written part, with the summary and the
    /// idempotency record, retrying compare-and-set against other instances.
    async fn commit_record(
        &self,
        head: &mut Head,
        req: &AppendRequest,
        idempotency: Option<(&str, &str)>,
        written: Written,
    ) -> Result<AppendReceipt, Error> {
        for _ in 0..CAS_ROUNDS {
            // Parts of others that this record will cover keep their keys.
            let ours = written.part.then_some(written.seq);
            self.record_unrecorded_keys(&req.key, head, ours).await?;
            let (next, receipt, idem) = self.next_record(&head.state, req, idempotency, written);
            let write = SessionWrite {
                key: &req.key,
                record: &next,
                expected_version: head.record.as_ref().map_or(0, |r| r.version),
                idempotency: head.idempotency_with(idem.as_ref().map(|(k, r)| (*k, r))),
                independent: false,
            };
            let stored = self.inner.catalog.put_session(write).await;
            match Round::of(stored, |version| version)? {
                Round::Done(version) => {
                    head.stored(next.clone(), version);
                    head.state = next;
                    return Ok(receipt);
                }
                // Another instance wrote the record: start from its view,
                // then count what the store holds beyond it (our part too).
                // A record gone altogether was erased with its task.
                Round::Lost => {
                    let known = head.record.is_some();
                    if known && self.inner.catalog.get_session(&req.key).await?.is_none() {
                        return Err(self.erased_under(&req.key, head, written).await);
                    }
                    self.reload_head(&req.key, head).await?
                }
            }
        }
        Err(cas_exhausted())
    }

    /// An append whose task was erased while it was in flight: its own
    /// part (if it wrote one) is deleted, so nothing of it outlives the
    /// erasure, and the head is read again before the next write.
    async fn erased_under(&self, key: &SessionKey, head: &mut Head, written: Written) -> Error {
        if written.part {
            let dir = keys::incarnation_dir(key, head.state.incarnation);
            let part = keys::part_key(&dir, written.seq);
            if let Err(e) = self.inner.objects.delete(&part).await {
                tracing::warn!(key = %key, part = %part, error = %crate::domain::error_chain(&e), "could not delete the part of an append whose task was erased");
            }
        }
        *head = Head::default();
        Error::Erased(format!(
            "task {} was erased while this append was in flight; nothing of it was kept",
            key.task_id()
        ))
    }

    /// Whether an idempotency record answers for its key: always, unless it
    /// was stored with its part before that part was seen; then only once
    /// that part exists carrying the key.
    async fn stands(&self, idem_key: &str, record: &IdempotencyRecord) -> Result<bool, Error> {
        let Some(dir) = &record.part_dir else {
            return Ok(true);
        };
        let header = self.part_header(dir, record.receipt.seq).await?;
        Ok(header.is_some_and(|h| h.idem.as_deref() == Some(idem_key)))
    }

    /// The record once `written` is stored (`state` counting its part
    /// already), the receipt it gives, and the idempotency record that goes
    /// with it: the summary update is applied if its version still matches.
    fn next_record<'k>(
        &self,
        state: &SessionRecord,
        req: &AppendRequest,
        idempotency: Option<(&'k str, &str)>,
        written: Written,
    ) -> (
        SessionRecord,
        AppendReceipt,
        Option<(&'k str, IdempotencyRecord)>,
    ) {
        let mut next = state.clone();
        next.prior = None;
        next.mtime = next.mtime.max(written.mtime);
        let summary = req.summary_outcome(|update| {
            let applied = next.summary_matches(update.expected_version);
            if applied {
                next.summary = Some(update.data.clone());
                next.summary_version += 1;
                next.summary_mtime = written.mtime;
            }
            (applied, next.summary_version)
        });
        let receipt = AppendReceipt {
            seq: written.seq,
            count: written.count,
            skipped: written.skipped,
            mtime: written.mtime,
            summary,
        };
        let idem = idempotency.map(|(k, print)| {
            (
                k,
                self.idempotency_record(print.to_string(), receipt.clone()),
            )
        });
        (next, receipt, idem)
    }

    /// Creates a part; durable once `Ok`.
    async fn put_part(&self, key: &str, body: bytes::Bytes) -> Result<(), PortError> {
        let crc = crc32c::crc32c(&body);
        self.inner.objects.put_if_absent(key, body, crc).await
    }

    /// Creates the part and stores its record at the same time (see
    /// [`Ahead`]). `Ok(Some)`: both are stored, the head moved and the
    /// append is acknowledged with the receipt. `Ok(None)`: the part is
    /// stored but the record is not; the caller records it the careful way.
    /// `Err`: the part is not stored, and a record stored ahead of it is
    /// taken back (or left for the next writer to see through).
    async fn put_ahead(
        &self,
        head: &mut Head,
        plan: Ahead<'_>,
        part_key: &str,
        body: bytes::Bytes,
        crash: Crash,
    ) -> Result<Option<AppendReceipt>, PortError> {
        let expected_version = head.record.as_ref().map_or(0, |r| r.version);
        let write = SessionWrite {
            key: plan.key,
            record: &plan.next,
            expected_version,
            idempotency: head.idempotency_with(plan.idempotency.as_ref().map(|(k, r)| (*k, r))),
            // Ours is stored ahead of its part, the other confirms a part
            // that has landed: neither needs the record's transaction.
            independent: true,
        };
        match crash {
            Crash::AfterPart => {
                self.put_part(part_key, body).await?;
                std::process::abort();
            }
            Crash::AfterRecord => {
                let _ = self.inner.catalog.put_session(write).await;
                std::process::abort();
            }
            Crash::Never => {}
        }
        let (put, stored) = tokio::join!(
            self.put_part(part_key, body),
            self.inner.catalog.put_session(write)
        );
        let mut next = plan.next;
        let prior = next.prior.take();
        match (put, stored) {
            (Ok(()), Ok(version)) => {
                head.stored(next.clone(), version);
                head.state = next;
                // The part has landed: the next record write confirms its
                // idempotency record.
                head.unconfirmed = plan.idempotency.map(|(k, mut record)| {
                    record.part_dir = None;
                    (k.to_string(), record)
                });
                Ok(Some(plan.receipt))
            }
            (Ok(()), Err(err)) => {
                // Lost to another writer, or the catalog failed (perhaps
                // after storing it): read the record again before writing it.
                if !matches!(err, PortError::PreconditionFailed(_)) {
                    head.loaded = false;
                }
                Ok(None)
            }
            (Err(err), Ok(version)) => {
                // The record counts a part that is not there: take it back,
                // unless another writer has moved it on already (it saw the
                // part missing). A retry of this request finds its
                // idempotency record unconfirmed by any part.
                let back = prior.map(|p| *p).unwrap_or_default();
                let undo = SessionWrite {
                    key: plan.key,
                    record: &back,
                    expected_version: version,
                    idempotency: head.confirming(),
                    independent: true,
                };
                match self.inner.catalog.put_session(undo).await {
                    Ok(version) => head.stored(back, version),
                    Err(PortError::PreconditionFailed(_)) => head.loaded = false,
                    Err(undo_err) => {
                        tracing::warn!(key = %plan.key, error = %crate::error::chain(&undo_err), "could not take back a record stored ahead of a part that was not written");
                        head.loaded = false;
                    }
                }
                Err(err)
            }
            (Err(err), Err(_)) => {
                head.loaded = false;
                Err(err)
            }
        }
    }
}

/// What a crash test has the process die after (the `append::after_part`
/// and `append::after_record` failpoints); never otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crash {
    Never,
    AfterPart,
    AfterRecord,
}

impl Crash {
    /// Evaluates both failpoints once for this attempt.
    fn planned() -> Self {
        let after_part = || {
            fail::fail_point!("append::after_part", |_| true);
            false
        };
        let after_record = || {
            fail::fail_point!("append::after_record", |_| true);
            false
        };
        match (after_part(), after_record()) {
            (true, _) => Crash::AfterPart,
            (_, true) => Crash::AfterRecord,
            _ => Crash::Never,
        }
    }
}

/// An append whose record is stored at the same time as its part, so the
/// acknowledgement waits for the slower of the two writes instead of both
/// in turn. The record counts the part and keeps the one before it as
/// `prior` ([`SessionRecord::prior`]); the idempotency record names the
/// part's directory ([`IdempotencyRecord::part_dir`]). Whoever reads them
/// before the part is seen treats them as what they are: an append that
/// may not have happened. The part stays the source of truth.
struct Ahead<'a> {
    key: &'a SessionKey,
    next: SessionRecord,
    receipt: AppendReceipt,
    idempotency: Option<(&'a str, IdempotencyRecord)>,
}

impl<'a> Ahead<'a> {
    /// The records to store with part `written`; `after` is the head's
    /// record counting that part.
    fn plan(
        engine: &Engine,
        head: &Head,
        req: &'a AppendRequest,
        idempotency: Option<(&'a str, &str)>,
        after: &SessionRecord,
        written: Written,
        dir: &str,
    ) -> Self {
        let (mut next, receipt, mut idem) = engine.next_record(after, req, idempotency, written);
        next.prior = Some(Box::new(head.state.clone()));
        if let Some((_, record)) = idem.as_mut() {
            record.part_dir = Some(dir.to_string());
        }
        Ahead {
            key: &req.key,
            next,
            receipt,
            idempotency: idem,
        }
    }
}

/// The stored answer for a repeated key, or a conflict for another request.
fn replay(
    idem_key: &str,
    print: &str,
    stored: &str,
    receipt: AppendReceipt,
) -> Result<AppendReceipt, Error> {
    if stored == print {
        METRICS.idempotent_replays.fetch_add(1, Ordering::Relaxed);
        return Ok(receipt);
    }
    Err(conflict(idem_key))
}

fn conflict(idem_key: &str) -> Error {
    Error::IdempotencyConflict(format!(
        "Idempotency-Key {idem_key:?} was already used in this task for a different request"
    ))
}
