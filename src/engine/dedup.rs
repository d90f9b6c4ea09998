//! Entry-uuid dedup. The SDK's contract: an entry with a string `uuid` is an
//! idempotency key ("upsert / ignore-duplicate"); one without is appended
//! as it is. So within one transcript (a main key or one subkey, one
//! incarnation), an entry whose uuid is already stored is not stored again:
//! the first stays, in its place. This is what makes a retried batch that
//! overlaps a partly stored one, or the SDK's re-import of a local
//! transcript after a mirror gap, add only what is missing.
//!
//! Dedup happens on write, against an index of the uuids stored so far that
//! each instance keeps per key beside its cached head. The index is exact
//! when a part is written: the part is created only if its sequence number
//! is free, and every part before that number is either ours (added as we
//! write it) or read into the index before we try (a lost race makes us read
//! the winner's part and filter the batch again). An instance starting cold
//! builds the index once from the transcript (snapshot and parts). Snapshots
//! are concatenations of parts, so compaction keeps one copy as well.

use std::collections::HashSet;

use sha2::{Digest as _, Sha256};

use super::part;
use super::{keys, Engine, Head};
use crate::domain::{Seq, SessionKey};
use crate::error::Error;

/// The uuids stored in one incarnation of one key, through part `through`.
#[derive(Debug, Default)]
pub(super) struct UuidIndex {
    incarnation: u64,
    through: Seq,
    /// 128 bits of SHA-256 of each uuid: a collision would drop an entry,
    /// so not fewer bits.
    seen: HashSet<u128>,
}

/// A uuid as the index holds it.
pub(super) fn uuid_hash(uuid: &str) -> u128 {
    let digest = Sha256::digest(uuid.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

impl UuidIndex {
    /// Whether `uuid` is stored.
    pub(super) fn contains(&self, uuid: &str) -> bool {
        self.seen.contains(&uuid_hash(uuid))
    }

    /// Records the uuids of part `seq`, written right after `through`.
    pub(super) fn add_part<'a>(&mut self, seq: Seq, uuids: impl IntoIterator<Item = &'a str>) {
        if seq == self.through.next() {
            self.seen.extend(uuids.into_iter().map(uuid_hash));
            self.through = seq;
        }
    }

    fn add_lines(&mut self, lines: &[u8]) {
        for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(uuid) = super::codec::line_uuid(line) {
                self.seen.insert(uuid_hash(&uuid));
            }
        }
    }
}

impl Engine {
    /// Brings the head's uuid index up to its head part: built from the
    /// whole transcript the first time, then extended part by part.
    pub(super) async fn index_uuids(&self, key: &SessionKey, head: &mut Head) -> Result<(), Error> {
        let state = &head.state;
        let usable = head
            .uuids
            .as_ref()
            .is_some_and(|ix| ix.incarnation == state.incarnation);
        if !usable {
            head.uuids = Some(self.build_index(key, state.incarnation).await?);
        }
        let dir = keys::incarnation_dir(key, state.incarnation);
        let target = head.state.head;
        let mut rebuild = false;
        if let Some(index) = head.uuids.as_mut() {
            while index.through < target {
                let seq = index.through.next();
                let body = match super::load::read_verified(
                    self.inner.objects.as_ref(),
                    &keys::part_key(&dir, seq),
                )
                .await?
                {
                    Some(body) => body,
                    // Compacted away meanwhile: the snapshot holds it.
                    None => {
                        rebuild = true;
                        break;
                    }
                };
                let decoded =
                    part::decode(seq, body).map_err(|e| super::integrity_error(&dir, e))?;
                index.add_lines(&decoded.entries);
                index.through = seq;
            }
        }
        if rebuild {
            head.uuids = Some(self.build_index(key, head.state.incarnation).await?);
        }
        Ok(())
    }

    /// Reads every uuid of an incarnation: its newest snapshot, then its parts.
    async fn build_index(&self, key: &SessionKey, incarnation: u64) -> Result<UuidIndex, Error> {
        let dir = keys::incarnation_dir(key, incarnation);
        let mut index = UuidIndex {
            incarnation,
            ..UuidIndex::default()
        };
        if let Some(snapshot) = self.newest_snapshot(&dir).await? {
            let mut lines = Vec::new();
            let sink = |chunk: bytes::Bytes| {
                lines.push(chunk);
                std::future::ready(true)
            };
            if self
                .read_snapshot(&snapshot.key, Seq::ZERO, Seq(u64::MAX), sink)
                .await?
                .is_some()
            {
                for chunk in &lines {
                    index.add_lines(chunk);
                }
                index.through = snapshot.seq;
            }
        }
        for piece in self.parts_after(&dir, index.through).await? {
            if piece.seq != index.through.next() {
                break;
            }
            let body = super::load::read_object(self.inner.objects.as_ref(), &piece.key).await?;
            let decoded =
                part::decode(piece.seq, body).map_err(|e| super::integrity_error(&piece.key, e))?;
            if decoded.header.seal {
                break;
            }
            index.add_lines(&decoded.entries);
            index.through = piece.seq;
        }
        Ok(index)
    }
}

/// Which entries of a batch to store: those without a string uuid, and those
/// whose uuid is neither in `index` nor earlier in the same batch.
pub(super) fn keep<'a>(
    uuids: impl Iterator<Item = Option<&'a str>>,
    index: Option<&UuidIndex>,
) -> Vec<bool> {
    let mut batch = HashSet::new();
    uuids
        .map(|uuid| match uuid {
            None => true,
            Some(u) => !index.is_some_and(|ix| ix.contains(u)) && batch.insert(uuid_hash(u)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_copy_stays_and_entries_without_uuid_always_do() {
        let mut index = UuidIndex::default();
        index.add_part(Seq(1), ["u1", "u2"]);
        let kept = keep(
            [Some("u2"), None, Some("u3"), Some("u3"), None, Some("u1")].into_iter(),
            Some(&index),
        );
        assert_eq!(kept, vec![false, true, true, false, true, false]);
        assert_eq!(
            keep([Some("a"), Some("a")].into_iter(), None),
            vec![true, false]
        );
    }

    #[test]
    fn parts_are_added_only_in_order() {
        let mut index = UuidIndex::default();
        index.add_part(Seq(2), ["late"]);
        assert!(
            !index.contains("late"),
            "part 1 is missing: the index cannot skip it"
        );
        index.add_part(Seq(1), ["a"]);
        index.add_part(Seq(2), ["b"]);
        assert!(index.contains("a") && index.contains("b"));
        assert_eq!(index.through, Seq(2));
    }
}
