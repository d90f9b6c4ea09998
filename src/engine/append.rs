//! Appending a batch: pick the next sequence number, create the part with
//! create-if-absent, and on a lost race catch up with the store and try the
//! next number. Wall clocks never decide order.
//!
//! The catalog is updated after the part is durable. The part is the truth:
//! if the catalog write fails the append is still acknowledged, the head is
//! marked stale, and the next append re-reads the catalog and catches it up
//! from the object listing (see [`Engine::repair`]).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{keys, now_ms, Engine, Head};
use crate::backend::{IdempotencyRecord, PortError, SessionRecord, SessionWrite, Versioned};
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

/// Most compare-and-set rounds on the catalog record per append.
const MAX_CATALOG_ROUNDS: usize = 16;

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
    pub async fn append(&self, req: AppendRequest) -> Result<AppendReceipt, Error> {
        if let Some(summary) = req.applicable_summary() {
            super::check_summary(summary.data.get())?;
        }
        let body = super::encode_entries(&req.entries)?;
        let count = req.entries.len() as u64;
        let idempotency = req.idempotency_key.as_ref().map(|k| {
            let print = fingerprint(&req.key, &body, req.applicable_summary());
            (k.as_str(), print)
        });
        let lock = self.head_lock(&req.key);
        let mut head = lock.lock().await;

        let catalog = &self.inner.catalog;
        if let Some((idem_key, print)) = &idempotency {
            if let Some(found) = catalog.get_idempotency(req.key.task_id(), idem_key).await? {
                if &found.fingerprint == print {
                    METRICS.idempotent_replays.fetch_add(1, Ordering::Relaxed);
                    return Ok(found.receipt);
                }
                return Err(Error::IdempotencyConflict(format!(
                    "Idempotency-Key {idem_key:?} was already used in this task for a different request"
                )));
            }
        }
        self.check_writer(req.key.task_id(), req.writer_epoch)
            .await?;

        let result = self
            .append_locked(&mut head, &req, idempotency, body, count)
            .await;
        if result.is_err() {
            head.loaded = false;
        }
        result
    }

    async fn append_locked(
        &self,
        head: &mut Head,
        req: &AppendRequest,
        idempotency: Option<(&str, String)>,
        body: Bytes,
        count: u64,
    ) -> Result<AppendReceipt, Error> {
        let key = &req.key;
        if !self.is_fresh(head) {
            self.reload_head(key, head).await?;
        }
        let dir = keys::transcript_dir(key);
        let crc = crc32c::crc32c(&body);
        let len = body.len() as u64;
        let mut attempts = 0;
        let seq = loop {
            let seq = head.state.head.next();
            match self
                .inner
                .objects
                .put_if_absent(&keys::part_key(&dir, seq), body.clone(), crc)
                .await
            {
                Ok(()) => break seq,
                Err(PortError::AlreadyExists(_)) => {
                    METRICS.append_conflicts.fetch_add(1, Ordering::Relaxed);
                    attempts += 1;
                    if attempts >= self.inner.config.max_append_attempts {
                        return Err(Error::Conflict(format!(
                            "gave up after {attempts} lost races for the next sequence number"
                        )));
                    }
                    self.catch_up(&dir, &mut head.state).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        head.state.head = seq;
        head.state.parts = seq.0;
        head.state.bytes += len;
        METRICS.appends.fetch_add(1, Ordering::Relaxed);
        METRICS.appended_bytes.fetch_add(len, Ordering::Relaxed);

        let since_snapshot = seq.0.saturating_sub(head.state.compacted_through.0);
        self.maybe_compact(key, since_snapshot);
        match self.commit_record(head, req, idempotency, seq, count).await {
            Ok(receipt) => Ok(receipt),
            Err(err) => {
                // The part is durable: acknowledge it, and let the next append
                // re-read the catalog and repair it.
                METRICS.catalog_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %key, seq = seq.0, error = %err, "catalog update failed after the part was written; will repair");
                head.loaded = false;
                let mtime = now_ms().max(head.state.mtime + 1);
                head.state.mtime = mtime;
                Ok(AppendReceipt {
                    seq,
                    count,
                    mtime,
                    summary: req.summary_outcome(|_| (false, head.state.summary_version)),
                })
            }
        }
    }

    /// Writes the record for a just-written part, with the summary and the
    /// idempotency record, retrying compare-and-set against other instances.
    async fn commit_record(
        &self,
        head: &mut Head,
        req: &AppendRequest,
        idempotency: Option<(&str, String)>,
        seq: Seq,
        count: u64,
    ) -> Result<AppendReceipt, Error> {
        let catalog = &self.inner.catalog;
        for _ in 0..MAX_CATALOG_ROUNDS {
            let mut next = head.state.clone();
            next.mtime = now_ms().max(next.mtime + 1);
            let summary = req.summary_outcome(|update| {
                let applied = next.summary_matches(update.expected_version);
                if applied {
                    next.summary = Some(update.data.clone());
                    next.summary_version += 1;
                    next.summary_mtime = next.mtime;
                }
                (applied, next.summary_version)
            });
            let receipt = AppendReceipt {
                seq,
                count,
                mtime: next.mtime,
                summary,
            };
            let idem = idempotency.as_ref().map(|(k, print)| {
                (
                    *k,
                    IdempotencyRecord {
                        fingerprint: print.clone(),
                        receipt: receipt.clone(),
                        created_ms: now_ms(),
                    },
                )
            });
            let write = SessionWrite {
                key: &req.key,
                record: &next,
                expected_version: head.record.as_ref().map_or(0, |r| r.version),
                idempotency: idem.as_ref().map(|(k, r)| (*k, r)),
            };
            match catalog.put_session(write).await {
                Ok(version) => {
                    head.record = Some(Versioned {
                        value: next.clone(),
                        version,
                    });
                    head.state = next;
                    return Ok(receipt);
                }
                Err(PortError::PreconditionFailed(_)) => {
                    // Another instance wrote the record: start from its view,
                    // then count what the store holds beyond it (our part too).
                    self.reload_head(&req.key, head).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(
            "the session record kept changing; retry".into(),
        ))
    }

    /// Re-reads the catalog record and catches up from the object listing.
    async fn reload_head(&self, key: &SessionKey, head: &mut Head) -> Result<(), Error> {
        let record = self.inner.catalog.get_session(key).await?;
        let mut state = record.as_ref().map(|r| r.value.clone()).unwrap_or_default();
        let anchored = self
            .catch_up(&keys::transcript_dir(key), &mut state)
            .await?;
        if !anchored {
            // The record names parts that no longer exist (a delete stopped
            // after removing the objects): the key starts over. The summary
            // version moves on so no client's old version matches.
            state = SessionRecord {
                summary_version: state.summary_version + 1,
                ..SessionRecord::default()
            };
        }
        head.record = record;
        head.state = state;
        head.loaded = true;
        head.loaded_at = Some(std::time::Instant::now());
        Ok(())
    }

    /// Advances `state` over every part (and snapshot) the store holds beyond
    /// `state.head`. Returns false when the store holds nothing backing the
    /// head at all: no part at or beyond it and no snapshot covering it.
    pub(super) async fn catch_up(
        &self,
        dir: &str,
        state: &mut SessionRecord,
    ) -> Result<bool, Error> {
        // Parts a snapshot covers may already be deleted, but their numbers
        // are taken: the head is never below the newest snapshot.
        if state.compacted_through > state.head {
            state.head = state.compacted_through;
            state.parts = state.head.0;
        }
        let start = state.head;
        let mut anchored = start == Seq::ZERO;
        // Start one before the head so the head's own part shows up.
        let mut after = keys::part_key(dir, Seq(start.0.saturating_sub(1)));
        loop {
            let page = self.inner.objects.list(dir, Some(&after), false).await?;
            for item in &page.items {
                match keys::parse(dir, &item.key) {
                    Some(keys::ObjectKind::Part(seq)) if seq > state.head => {
                        state.head = seq;
                        state.parts = seq.0;
                        state.bytes += item.size;
                        anchored = true;
                    }
                    Some(keys::ObjectKind::Part(seq)) if seq == start => anchored = true,
                    // Snapshots sort after every part. One newer than the
                    // head (its record step never ran) still takes its numbers.
                    Some(keys::ObjectKind::Snapshot(seq)) if seq >= start => {
                        anchored = true;
                        if seq > state.head {
                            state.head = seq;
                            state.parts = seq.0;
                        }
                        state.compacted_through = state.compacted_through.max(seq);
                    }
                    _ => {}
                }
            }
            match page.items.last() {
                Some(last) if page.more => after = last.key.clone(),
                _ => return Ok(anchored),
            }
        }
    }

    /// Brings a key's catalog record in line with its objects (parts written
    /// while the catalog was failing). Returns the repaired record.
    pub async fn repair(&self, key: &SessionKey) -> Result<Option<SessionRecord>, Error> {
        let lock = self.head_lock(key);
        let mut head = lock.lock().await;
        for _ in 0..MAX_CATALOG_ROUNDS {
            self.reload_head(key, &mut head).await?;
            let stored = head.record.as_ref().map(|r| &r.value);
            if stored == Some(&head.state) || (stored.is_none() && head.state.head == Seq::ZERO) {
                return Ok(stored.cloned());
            }
            let mut next = head.state.clone();
            next.mtime = now_ms().max(next.mtime + 1);
            let write = SessionWrite {
                key,
                record: &next,
                expected_version: head.record.as_ref().map_or(0, |r| r.version),
                idempotency: None,
            };
            match self.inner.catalog.put_session(write).await {
                Ok(version) => {
                    head.record = Some(Versioned {
                        value: next.clone(),
                        version,
                    });
                    head.state = next.clone();
                    return Ok(Some(next));
                }
                Err(PortError::PreconditionFailed(_)) => continue,
                Err(e) => {
                    head.loaded = false;
                    return Err(e.into());
                }
            }
        }
        Err(Error::Conflict(
            "the session record kept changing; retry".into(),
        ))
    }
}
