//! The snapshot format. A snapshot is one object holding every entry of
//! parts `1..=through`, one per line, after a single header line:
//!
//! ```text
//! {"tg_snapshot":{"v":2,"through":N,"counts":[c1,c2,...,cN],"digest":"<hex>"}}
//! ```
//!
//! `counts[i]` is how many entries part `i+1` held, so a reader can skip to
//! the first entry of any part (a load with `after_seq`, or one that restarts
//! from a newer snapshot after its parts were compacted away), and can
//! recompute the hash chain part by part: `digest` is the chain's digest at
//! part `through` (see `part.rs`), which the part after the snapshot names as
//! its `prev`. Version 1 (the layout from before incarnations) has no
//! digest.
//!
//! Version 3 is a snapshot too large to build in memory: the object holds
//! the header line alone, which also lists the chunk objects holding the
//! entry lines, in order, each with its size and CRC32C:
//!
//! ```text
//! {"tg_snapshot":{"v":3,"through":N,"counts":[...],"digest":"<hex>",
//!   "chunks":[{"name":"chunk-...","size":S,"crc32c":C},...]}}
//! ```
//!
//! The chunks are written first and the header object last with
//! create-if-absent, so a snapshot exists whole or not at all (on every
//! backend, unlike a multipart upload's conditional completion). A later
//! snapshot lists the earlier one's chunks and adds its own, so compaction
//! never re-reads what an earlier one wrote. Persisted: add fields, never
//! change these.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::part::{self, Digest};
use crate::domain::Seq;

/// The first line of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Format version: 2, or 1 in the layout from before incarnations.
    pub v: u32,
    /// The last part the snapshot covers.
    pub through: Seq,
    /// Entries per part, for parts `1..=through`.
    pub counts: Vec<u64>,
    /// The chain's digest at part `through`, hex (versions 2 and 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The objects holding the entry lines, in order (version 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
}

/// One chunk of a version-3 snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Its object name in the snapshot's directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its CRC32C.
    pub crc32c: u32,
}

#[derive(Serialize, Deserialize)]
struct HeaderLine {
    tg_snapshot: SnapshotHeader,
}

impl SnapshotHeader {
    /// Encodes the header line, newline included.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(&HeaderLine {
            tg_snapshot: self.clone(),
        })
        .unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Decodes a header line (without its newline).
    pub fn decode(line: &[u8]) -> Option<Self> {
        let header: HeaderLine = serde_json::from_slice(line).ok()?;
        let h = header.tg_snapshot;
        let digest = h.digest.as_deref().and_then(part::from_hex).is_some();
        let versioned = match h.v {
            1 => h.digest.is_none() && h.chunks.is_empty(),
            2 => digest && h.chunks.is_empty(),
            3 => digest && !h.chunks.is_empty(),
            _ => false,
        };
        (versioned && h.counts.len() as u64 == h.through.0).then_some(h)
    }

    /// Entries in parts `1..=seq`.
    pub fn entries_through(&self, seq: Seq) -> u64 {
        let n = (seq.0 as usize).min(self.counts.len());
        self.counts[..n].iter().sum()
    }
}

/// Why a snapshot could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Its shape is wrong: no header, a partial entry, too many entries.
    #[error("{0}")]
    Malformed(String),
    /// Its entries do not hash to the digest its header names (it runs
    /// through this part).
    #[error("snapshot entries do not match the digest in its header")]
    Digest(Seq),
}

/// Recomputes a version-2 snapshot's chain, part by part, from its lines.
struct Rehash {
    counts: Vec<u64>,
    /// The digest of the last finished part.
    digest: Digest,
    /// Parts finished so far.
    done: usize,
    /// Lines still to come in the part being hashed.
    left: u64,
    hasher: Sha256,
    /// Parts whose digests the caller wants, and the digests once known.
    want: Vec<(Seq, Option<Digest>)>,
}

impl Rehash {
    fn new(counts: Vec<u64>, want: &[Seq]) -> Self {
        let mut rehash = Self {
            counts,
            digest: part::GENESIS,
            done: 0,
            left: 0,
            hasher: Sha256::new(),
            want: want.iter().map(|&s| (s, None)).collect(),
        };
        rehash.start();
        rehash
    }

    /// Starts the next part with lines, finishing empty ones on the way.
    fn start(&mut self) {
        while self.done < self.counts.len() {
            self.hasher = Sha256::new();
            self.hasher.update(self.digest);
            self.left = self.counts[self.done];
            if self.left > 0 {
                return;
            }
            self.finish_part();
        }
    }

    fn finish_part(&mut self) {
        let hasher = std::mem::replace(&mut self.hasher, Sha256::new());
        self.digest = hasher.finalize().into();
        self.done += 1;
        for (seq, found) in &mut self.want {
            if seq.0 == self.done as u64 {
                *found = Some(self.digest);
            }
        }
    }

    fn line(&mut self, line: &[u8]) -> Result<(), SnapshotError> {
        if self.done >= self.counts.len() {
            return Err(SnapshotError::Malformed(
                "snapshot has more entries than its header counts".into(),
            ));
        }
        self.hasher.update(line);
        self.left -= 1;
        if self.left == 0 {
            self.finish_part();
            self.start();
        }
        Ok(())
    }
}

/// Reads a snapshot's byte stream: parses the header, skips entries a load
/// does not want, and hands out the rest in whole lines. A version-2
/// snapshot's chain is recomputed from every line on the way and checked
/// against its header at the end.
pub struct SnapshotReader {
    /// Parts whose entries are not wanted (the load has them already).
    skip_parts_through: Seq,
    /// The last part whose entries are wanted.
    stop_after: Seq,
    /// Parts whose chain digests the caller wants.
    digests_at: Vec<Seq>,
    header: Option<SnapshotHeader>,
    /// Entries to drop, then entries to hand out, counted from the first.
    skip_entries: u64,
    want_entries: u64,
    /// Entry lines seen so far.
    lines: u64,
    /// Bytes after the last complete line.
    carry: BytesMut,
    rehash: Option<Rehash>,
}

impl SnapshotReader {
    /// A reader that hands out the entries of parts after
    /// `skip_parts_through`, up to and including `stop_after`.
    pub fn new(skip_parts_through: Seq, stop_after: Seq) -> Self {
        Self {
            skip_parts_through,
            stop_after,
            digests_at: Vec::new(),
            header: None,
            skip_entries: 0,
            want_entries: 0,
            lines: 0,
            carry: BytesMut::new(),
            rehash: None,
        }
    }

    /// Also keep the chain digests at these parts, if the snapshot covers them.
    pub fn with_digests_at(mut self, seqs: &[Seq]) -> Self {
        self.digests_at = seqs.to_vec();
        self
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&SnapshotHeader> {
        self.header.as_ref()
    }

    /// The chain digest at a part asked for with [`Self::with_digests_at`],
    /// once the reader has passed it (version 2 only).
    pub fn digest_at(&self, seq: Seq) -> Option<Digest> {
        self.rehash
            .as_ref()
            .and_then(|r| r.want.iter().find(|(s, _)| *s == seq).and_then(|(_, d)| *d))
    }

    /// Feeds the next chunk; returns whole wanted lines, if any.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, SnapshotError> {
        self.carry.extend_from_slice(chunk);
        if self.header.is_none() {
            let Some(end) = memchr::memchr(b'\n', &self.carry) else {
                return Ok(None);
            };
            let line = self.carry.split_to(end + 1);
            let header = SnapshotHeader::decode(&line[..end]).ok_or_else(|| {
                SnapshotError::Malformed("snapshot header is missing or malformed".into())
            })?;
            self.skip_entries = header.entries_through(self.skip_parts_through);
            self.want_entries = header
                .entries_through(self.stop_after)
                .saturating_sub(self.skip_entries);
            if header.v >= 2 {
                self.rehash = Some(Rehash::new(header.counts.clone(), &self.digests_at));
            }
            self.header = Some(header);
        }
        // Every complete line: hashed (version 2), then dropped or handed out.
        let (from, to) = (self.skip_entries, self.skip_entries + self.want_entries);
        let mut pos = 0;
        let mut wanted: Option<(usize, usize)> = None;
        for newline in memchr::memchr_iter(b'\n', &self.carry) {
            let end = newline + 1;
            if let Some(rehash) = self.rehash.as_mut() {
                rehash.line(&self.carry[pos..end])?;
            }
            if (from..to).contains(&self.lines) {
                wanted = Some((wanted.map_or(pos, |(start, _)| start), end));
            }
            self.lines += 1;
            pos = end;
        }
        let complete = self.carry.split_to(pos).freeze();
        Ok(wanted.map(|(start, end)| complete.slice(start..end)))
    }

    /// Checks the snapshot ended cleanly (header read, every counted entry
    /// present, no partial line) and, for version 2, that its lines hash to
    /// the digest its header names. Returns that digest.
    pub fn finish(&self) -> Result<Option<Digest>, SnapshotError> {
        let header = self
            .header
            .as_ref()
            .ok_or_else(|| SnapshotError::Malformed("snapshot ended before its header".into()))?;
        let total: u64 = header.counts.iter().sum();
        if !self.carry.is_empty() || self.lines != total {
            return Err(SnapshotError::Malformed(
                "snapshot ended in the middle of an entry".into(),
            ));
        }
        let Some(rehash) = &self.rehash else {
            return Ok(None);
        };
        let stated = header.digest.as_deref().and_then(part::from_hex);
        if rehash.done != header.counts.len() || stated != Some(rehash.digest) {
            return Err(SnapshotError::Digest(header.through));
        }
        Ok(stated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(counts: &[u64]) -> Vec<u8> {
        let header = SnapshotHeader {
            v: 1,
            through: Seq(counts.len() as u64),
            counts: counts.to_vec(),
            digest: None,
            chunks: Vec::new(),
        };
        let mut body = header.encode();
        for (part, &n) in counts.iter().enumerate() {
            for e in 0..n {
                body.extend_from_slice(format!("{{\"p\":{},\"e\":{e}}}\n", part + 1).as_bytes());
            }
        }
        body
    }

    fn read_all(body: &[u8], skip: u64, chunk: usize) -> String {
        let mut reader = SnapshotReader::new(Seq(skip), Seq(u64::MAX));
        let mut out = Vec::new();
        for piece in body.chunks(chunk) {
            if let Some(lines) = reader.push(piece).unwrap() {
                assert_eq!(lines.last(), Some(&b'\n'), "whole lines only");
                out.extend_from_slice(&lines);
            }
        }
        reader.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn header_round_trips() {
        let h = SnapshotHeader {
            v: 1,
            through: Seq(3),
            counts: vec![1, 2, 3],
            digest: None,
            chunks: Vec::new(),
        };
        let line = h.encode();
        assert_eq!(
            SnapshotHeader::decode(&line[..line.len() - 1]),
            Some(h.clone())
        );
        assert_eq!(h.entries_through(Seq(2)), 3);
        assert_eq!(h.entries_through(Seq(99)), 6);
    }

    #[test]
    fn reader_skips_whole_parts_at_any_chunking() {
        let body = snapshot(&[2, 1, 3]);
        for chunk in [1, 2, 7, 64, 4096] {
            let all = read_all(&body, 0, chunk);
            assert_eq!(all.lines().count(), 6, "chunk {chunk}");
            let tail = read_all(&body, 2, chunk);
            assert_eq!(
                tail, "{\"p\":3,\"e\":0}\n{\"p\":3,\"e\":1}\n{\"p\":3,\"e\":2}\n",
                "chunk {chunk}"
            );
            assert_eq!(read_all(&body, 3, chunk), "");
        }
    }

    #[test]
    fn reader_stops_after_the_last_wanted_part() {
        let body = snapshot(&[2, 1, 3]);
        for chunk in [1, 5, 4096] {
            let mut reader = SnapshotReader::new(Seq(1), Seq(2));
            let mut out = Vec::new();
            for piece in body.chunks(chunk) {
                if let Some(lines) = reader.push(piece).unwrap() {
                    out.extend_from_slice(&lines);
                }
            }
            reader.finish().unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "{\"p\":2,\"e\":0}\n",
                "chunk {chunk}"
            );
        }
    }

    fn snapshot_v2(parts: &[&[u8]]) -> (Vec<u8>, Digest) {
        let mut chain = part::Chain::from_genesis();
        let mut body = Vec::new();
        for p in parts {
            chain.lines(p).unwrap();
            body.extend_from_slice(p);
        }
        let digest = chain.digest().unwrap();
        let header = SnapshotHeader {
            v: 2,
            through: Seq(parts.len() as u64),
            counts: parts
                .iter()
                .map(|p| p.iter().filter(|&&b| b == b'\n').count() as u64)
                .collect(),
            digest: Some(part::to_hex(&digest)),
            chunks: Vec::new(),
        };
        let mut out = header.encode();
        out.extend_from_slice(&body);
        (out, digest)
    }

    #[test]
    fn version_2_snapshots_rehash_to_their_digest_and_give_inner_digests() {
        let parts: [&[u8]; 3] = [b"{\"a\":1}\n", b"{\"b\":2}\n{\"c\":3}\n", b"{\"d\":4}\n"];
        let (body, digest) = snapshot_v2(&parts);
        let mut at_two = part::Chain::from_genesis();
        at_two.lines(parts[0]).unwrap();
        at_two.lines(parts[1]).unwrap();
        for chunk in [1, 3, 4096] {
            let mut reader = SnapshotReader::new(Seq(1), Seq(u64::MAX)).with_digests_at(&[Seq(2)]);
            let mut out = Vec::new();
            for piece in body.chunks(chunk) {
                if let Some(lines) = reader.push(piece).unwrap() {
                    out.extend_from_slice(&lines);
                }
            }
            assert_eq!(reader.finish().unwrap(), Some(digest), "chunk {chunk}");
            assert_eq!(reader.digest_at(Seq(2)), at_two.digest());
            assert_eq!(out, b"{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n");
        }
        // One entry changed, its digest left alone: refused at the end.
        let forged = String::from_utf8(body.clone())
            .unwrap()
            .replace("\"c\":3", "\"c\":9");
        let mut reader = SnapshotReader::new(Seq(0), Seq(u64::MAX));
        reader.push(forged.as_bytes()).unwrap();
        assert_eq!(reader.finish(), Err(SnapshotError::Digest(Seq(3))));
    }

    #[test]
    fn reader_refuses_truncated_or_headless_snapshots() {
        let body = snapshot(&[2]);
        let mut r = SnapshotReader::new(Seq(0), Seq(u64::MAX));
        r.push(&body[..body.len() - 3]).unwrap();
        assert!(r.finish().is_err());
        let mut r = SnapshotReader::new(Seq(0), Seq(u64::MAX));
        assert!(r.push(b"{\"a\":1}\n").is_err());
    }
}
