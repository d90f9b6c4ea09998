//! The part format of every incarnation from 1 on, and the hash chain that
//! makes a key's parts tamper-evident.
//!
//! A part is one header line, then the batch's entries, one per line:
//!
//! ```text
//! {"tg_part":{"v":2,"seq":7,"mtime":1796…,"count":2,"prev":"<hex>","digest":"<hex>","idem":"k","fp":"<hex>"}}
//! {"type":"user",…}
//! {"type":"assistant",…}
//! ```
//!
//! `digest` is SHA-256 over the previous part's digest (32 bytes; zeros
//! before part 1) followed by the entry lines exactly as stored, so each part
//! names the one before it: a part replaced (even with a recomputed CRC32C),
//! removed from the middle, or truncated breaks the chain, and the catalog's
//! copy of the newest digest catches the newest parts being removed.
//! `idem` and `fp` carry the append's `Idempotency-Key` and request digest,
//! so a retry after a crash finds the part even when the catalog never
//! recorded it; `mtime` is the acknowledgement's, so that retry gets the same
//! answer. A seal (`"seal":true`, no entries) closes an incarnation: deleting
//! a key puts one at the next sequence number, so no writer can add to it.
//! Persisted: add fields, never change these.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::domain::Seq;

/// A chain digest: SHA-256.
pub type Digest = [u8; 32];

/// The `prev` of part 1: no part before it.
pub const GENESIS: Digest = [0; 32];

/// The digest of a part holding `entries` after a part with digest `prev`.
pub fn chain(prev: &Digest, entries: &[u8]) -> Digest {
    let mut hash = Sha256::new();
    hash.update(prev);
    hash.update(entries);
    hash.finalize().into()
}

/// A digest as stored: 64 lower-case hex digits.
pub fn to_hex(digest: &Digest) -> String {
    hex::encode(digest)
}

/// Parses a stored digest.
pub fn from_hex(text: &str) -> Option<Digest> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The first line of a part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartHeader {
    /// Format version; 2.
    pub v: u32,
    /// The part's sequence number in its incarnation.
    pub seq: Seq,
    /// The append's acknowledged mtime, epoch ms.
    pub mtime: u64,
    /// How many entries follow.
    pub count: u64,
    /// The previous part's digest, hex.
    pub prev: String,
    /// This part's digest, hex.
    pub digest: String,
    /// The append's `Idempotency-Key`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idem: Option<String>,
    /// The digest of the append's request, with `idem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<String>,
    /// True for the seal that closes an incarnation (no entries).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seal: bool,
    /// Entries of the append not stored because their uuid was (dedup).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    tg_part: PartHeader,
}

/// What one part says about itself, for writing it.
#[derive(Clone, Debug)]
pub struct NewPart<'a> {
    /// Its sequence number.
    pub seq: Seq,
    /// The acknowledgement's mtime.
    pub mtime: u64,
    /// The previous part's digest.
    pub prev: Digest,
    /// The entry lines (each ending in a newline); empty for a seal.
    pub entries: &'a [u8],
    /// How many entry lines.
    pub count: u64,
    /// `Idempotency-Key` and request digest.
    pub idempotency: Option<(&'a str, &'a str)>,
    /// Whether this is a seal.
    pub seal: bool,
    /// Entries of the append left out as duplicates.
    pub skipped: u64,
}

impl NewPart<'_> {
    /// The part's bytes and its digest.
    pub fn encode(&self) -> (Bytes, Digest) {
        let digest = chain(&self.prev, self.entries);
        let header = PartHeader {
            v: 2,
            seq: self.seq,
            mtime: self.mtime,
            count: self.count,
            prev: to_hex(&self.prev),
            digest: to_hex(&digest),
            idem: self.idempotency.map(|(k, _)| k.to_string()),
            fp: self.idempotency.map(|(_, f)| f.to_string()),
            seal: self.seal,
            skipped: self.skipped,
        };
        let mut out = serde_json::to_vec(&HeaderLine { tg_part: header }).unwrap_or_default();
        out.push(b'\n');
        out.extend_from_slice(self.entries);
        (Bytes::from(out), digest)
    }
}

/// A part read back: its header and its entry lines.
#[derive(Clone, Debug)]
pub struct DecodedPart {
    /// The header line.
    pub header: PartHeader,
    /// The entry lines, exactly as stored.
    pub entries: Bytes,
}

/// Why a part or a chain does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The header line is missing or unreadable.
    #[error("part {0} has no valid header line")]
    Header(Seq),
    /// The header names another sequence number than the object's name.
    #[error("part {named} says it is part {said}")]
    Misnumbered {
        /// From the object's key.
        named: Seq,
        /// From its header.
        said: Seq,
    },
    /// The entries do not hash to the recorded digest, or their count is off.
    #[error("part {0}'s entries do not match its digest")]
    Content(Seq),
    /// The part does not follow the one before it.
    #[error("part {0} does not follow the part before it (a part was replaced or removed)")]
    Broken(Seq),
    /// The chain ends elsewhere than the catalog recorded.
    #[error("the chain at part {0} differs from the digest the catalog recorded")]
    Anchor(Seq),
}

/// Decodes a part body; `seq` is the number its key names.
pub fn decode(seq: Seq, body: Bytes) -> Result<DecodedPart, ChainError> {
    let end = memchr::memchr(b'\n', &body).ok_or(ChainError::Header(seq))?;
    let line: HeaderLine =
        serde_json::from_slice(&body[..end]).map_err(|_| ChainError::Header(seq))?;
    if line.tg_part.v != 2 {
        return Err(ChainError::Header(seq));
    }
    if line.tg_part.seq != seq {
        return Err(ChainError::Misnumbered {
            named: seq,
            said: line.tg_part.seq,
        });
    }
    Ok(DecodedPart {
        header: line.tg_part,
        entries: body.slice(end + 1..),
    })
}

/// Whether a body starts with a seal's header: how a reader of the layout
/// before incarnations recognises the seal that closed it.
pub fn is_seal(seq: Seq, body: &Bytes) -> bool {
    body.starts_with(b"{\"tg_part\":") && decode(seq, body.clone()).is_ok_and(|p| p.header.seal)
}

/// Walks a key's chain part by part, checking each link.
#[derive(Clone, Debug)]
pub struct Chain {
    /// The next part expected.
    next: Seq,
    /// The digest of the part before `next`; `None` until the first part
    /// read when a load starts mid-chain (it is taken on trust, and the
    /// parts after it and the catalog's anchor check it).
    digest: Option<Digest>,
    /// The catalog's digest of one part, checked when the chain reaches it.
    anchor: Option<(Seq, Digest)>,
}

impl Chain {
    /// A chain from part 1.
    pub fn from_genesis() -> Self {
        Self::after(Seq::ZERO, Some(GENESIS))
    }

    /// A chain whose next part is `last + 1`, after a part with `digest`.
    pub fn after(last: Seq, digest: Option<Digest>) -> Self {
        Self {
            next: last.next(),
            digest,
            anchor: None,
        }
    }

    /// Also check, on reaching part `seq`, that its digest is `digest`.
    pub fn with_anchor(mut self, anchor: Option<(Seq, Digest)>) -> Self {
        self.anchor = anchor;
        self
    }

    /// The next part expected.
    pub fn next(&self) -> Seq {
        self.next
    }

    /// The catalog's anchor this chain checks, if any.
    pub fn anchor(&self) -> Option<(Seq, Digest)> {
        self.anchor
    }

    /// The digest of the last part walked, if known.
    pub fn digest(&self) -> Option<Digest> {
        self.digest
    }

    fn advance(&mut self, digest: Digest) -> Result<(), ChainError> {
        let seq = self.next;
        if let Some((at, expected)) = self.anchor {
            if at == seq && expected != digest {
                return Err(ChainError::Anchor(seq));
            }
        }
        self.digest = Some(digest);
        self.next = seq.next();
        Ok(())
    }

    /// Checks one decoded part and moves past it.
    pub fn part(&mut self, part: &DecodedPart) -> Result<(), ChainError> {
        let h = &part.header;
        if h.seq != self.next {
            return Err(ChainError::Broken(self.next));
        }
        let prev = from_hex(&h.prev).ok_or(ChainError::Header(h.seq))?;
        if self.digest.is_some_and(|d| d != prev) {
            return Err(ChainError::Broken(h.seq));
        }
        let digest = chain(&prev, &part.entries);
        let lines = part.entries.iter().filter(|&&b| b == b'\n').count() as u64;
        if from_hex(&h.digest) != Some(digest)
            || lines != h.count
            || part.entries.last().is_some_and(|&b| b != b'\n')
        {
            return Err(ChainError::Content(h.seq));
        }
        self.advance(digest)
    }

    /// Moves past a part known only by its entry lines (inside a snapshot).
    pub fn lines(&mut self, entries: &[u8]) -> Result<(), ChainError> {
        let prev = self.digest.unwrap_or(GENESIS);
        self.advance(chain(&prev, entries))
    }

    /// Checks the chain reached the catalog's anchor, if it is within `last`.
    pub fn finish(&self, last: Seq) -> Result<(), ChainError> {
        match self.anchor {
            Some((at, _)) if at > last => Err(ChainError::Anchor(at)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(seq: u64, prev: Digest, entries: &[u8]) -> (Bytes, Digest) {
        NewPart {
            seq: Seq(seq),
            mtime: 1000 + seq,
            prev,
            entries,
            count: entries.iter().filter(|&&b| b == b'\n').count() as u64,
            idempotency: Some(("key", "fp")),
            seal: false,
            skipped: 0,
        }
        .encode()
    }

    fn three() -> Vec<(Bytes, Digest)> {
        let one = part(1, GENESIS, b"{\"a\":1}\n");
        let two = part(2, one.1, b"{\"b\":2}\n{\"c\":3}\n");
        let three = part(3, two.1, b"{\"d\":4}\n");
        vec![one, two, three]
    }

    #[test]
    fn parts_round_trip_and_chain() {
        let parts = three();
        let mut chain = Chain::from_genesis();
        for (i, (body, _)) in parts.iter().enumerate() {
            let decoded = decode(Seq(i as u64 + 1), body.clone()).unwrap();
            assert_eq!(decoded.header.idem.as_deref(), Some("key"));
            assert_eq!(decoded.header.mtime, 1001 + i as u64);
            chain.part(&decoded).unwrap();
        }
        assert_eq!(chain.digest(), Some(parts[2].1));
        assert_eq!(chain.next(), Seq(4));
    }

    #[test]
    fn a_replaced_part_with_a_recomputed_digest_breaks_the_next_link() {
        let parts = three();
        // Part 2 rewritten with other entries and its own digest recomputed.
        let forged = part(2, parts[0].1, b"{\"b\":666}\n{\"c\":3}\n");
        let mut chain = Chain::from_genesis();
        chain
            .part(&decode(Seq(1), parts[0].0.clone()).unwrap())
            .unwrap();
        chain.part(&decode(Seq(2), forged.0).unwrap()).unwrap();
        assert_eq!(
            chain.part(&decode(Seq(3), parts[2].0.clone()).unwrap()),
            Err(ChainError::Broken(Seq(3)))
        );
    }

    #[test]
    fn edited_entries_truncation_gaps_and_renumbering_are_refused() {
        let parts = three();
        let (body, _) = &parts[1];
        let text = String::from_utf8(body.to_vec()).unwrap();
        let edited = Bytes::from(text.replace("\"c\":3", "\"c\":4"));
        let mut chain = Chain::after(Seq(1), Some(parts[0].1));
        assert_eq!(
            chain.part(&decode(Seq(2), edited).unwrap()),
            Err(ChainError::Content(Seq(2)))
        );
        let truncated = body.slice(..body.len() - 8);
        let mut chain = Chain::after(Seq(1), Some(parts[0].1));
        assert!(chain.part(&decode(Seq(2), truncated).unwrap()).is_err());
        let mut chain = Chain::from_genesis();
        chain
            .part(&decode(Seq(1), parts[0].0.clone()).unwrap())
            .unwrap();
        assert_eq!(
            chain.part(&decode(Seq(3), parts[2].0.clone()).unwrap()),
            Err(ChainError::Broken(Seq(2))),
            "part 2 missing"
        );
        assert!(matches!(
            decode(Seq(5), parts[2].0.clone()),
            Err(ChainError::Misnumbered { .. })
        ));
    }

    #[test]
    fn the_anchor_catches_a_different_or_missing_newest_part() {
        let parts = three();
        let mut chain = Chain::from_genesis().with_anchor(Some((Seq(3), [7; 32])));
        chain
            .part(&decode(Seq(1), parts[0].0.clone()).unwrap())
            .unwrap();
        chain
            .part(&decode(Seq(2), parts[1].0.clone()).unwrap())
            .unwrap();
        assert_eq!(
            chain.part(&decode(Seq(3), parts[2].0.clone()).unwrap()),
            Err(ChainError::Anchor(Seq(3)))
        );
        let chain = Chain::from_genesis().with_anchor(Some((Seq(3), parts[2].1)));
        assert_eq!(chain.finish(Seq(2)), Err(ChainError::Anchor(Seq(3))));
    }

    #[test]
    fn snapshot_lines_chain_like_parts() {
        let parts = three();
        let mut chain = Chain::from_genesis();
        chain.lines(b"{\"a\":1}\n").unwrap();
        chain.lines(b"{\"b\":2}\n{\"c\":3}\n").unwrap();
        assert_eq!(chain.digest(), Some(parts[1].1));
    }

    #[test]
    fn seals_are_recognised_and_entries_are_not() {
        let (seal, _) = NewPart {
            seq: Seq(4),
            mtime: 1,
            prev: GENESIS,
            entries: b"",
            count: 0,
            idempotency: None,
            seal: true,
            skipped: 0,
        }
        .encode();
        assert!(is_seal(Seq(4), &seal));
        assert!(!is_seal(Seq(1), &Bytes::from_static(b"{\"tg_part\":1}\n")));
        assert!(!is_seal(Seq(1), &three()[0].0));
    }
}
