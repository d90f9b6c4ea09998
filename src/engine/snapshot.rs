//! The snapshot format. A snapshot is one object holding every entry of
//! parts `1..=through`, one per line, after a single header line:
//!
//! ```text
//! {"tg_snapshot":{"v":1,"through":N,"counts":[c1,c2,...,cN]}}
//! ```
//!
//! `counts[i]` is how many entries part `i+1` held, so a reader can skip to
//! the first entry of any part (a load with `after_seq`, or one that restarts
//! from a newer snapshot after its parts were compacted away). Persisted:
//! add fields, never change these.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::domain::Seq;

/// The first line of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Format version; 1.
    pub v: u32,
    /// The last part the snapshot covers.
    pub through: Seq,
    /// Entries per part, for parts `1..=through`.
    pub counts: Vec<u64>,
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
        (h.v == 1 && h.counts.len() as u64 == h.through.0).then_some(h)
    }

    /// Entries in parts `1..=seq`.
    pub fn entries_through(&self, seq: Seq) -> u64 {
        let n = (seq.0 as usize).min(self.counts.len());
        self.counts[..n].iter().sum()
    }
}

/// Reads a snapshot's byte stream: parses the header, skips entries a load
/// does not want, and hands out the rest in whole lines.
#[derive(Debug)]
pub struct SnapshotReader {
    /// Parts whose entries are not wanted (the load has them already).
    skip_parts_through: Seq,
    /// The last part whose entries are wanted.
    stop_after: Seq,
    header: Option<SnapshotHeader>,
    /// Entries still to drop once the header is known.
    skip_entries: u64,
    /// Entries still to hand out once the header is known.
    want_entries: u64,
    /// Bytes after the last complete line.
    carry: BytesMut,
}

impl SnapshotReader {
    /// A reader that hands out the entries of parts after
    /// `skip_parts_through`, up to and including `stop_after`.
    pub fn new(skip_parts_through: Seq, stop_after: Seq) -> Self {
        Self {
            skip_parts_through,
            stop_after,
            header: None,
            skip_entries: 0,
            want_entries: 0,
            carry: BytesMut::new(),
        }
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&SnapshotHeader> {
        self.header.as_ref()
    }

    /// Feeds the next chunk; returns whole wanted lines, if any.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Bytes>, String> {
        self.carry.extend_from_slice(chunk);
        if self.header.is_none() {
            let Some(end) = self.carry.iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let line = self.carry.split_to(end + 1);
            let header = SnapshotHeader::decode(&line[..end])
                .ok_or_else(|| "snapshot header is missing or malformed".to_string())?;
            self.skip_entries = header.entries_through(self.skip_parts_through);
            self.want_entries = header
                .entries_through(self.stop_after)
                .saturating_sub(self.skip_entries);
            self.header = Some(header);
        }
        while self.skip_entries > 0 {
            let Some(end) = self.carry.iter().position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let _ = self.carry.split_to(end + 1);
            self.skip_entries -= 1;
        }
        let mut end = 0;
        let mut lines = 0;
        while lines < self.want_entries {
            match self.carry[end..].iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    end += pos + 1;
                    lines += 1;
                }
                None => break,
            }
        }
        self.want_entries -= lines;
        let out = self.carry.split_to(end).freeze();
        if self.want_entries == 0 {
            // Entries past `stop_after` are read (for the checksum) but dropped.
            self.carry.clear();
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// Checks the snapshot ended cleanly: header read, no partial line.
    pub fn finish(&self) -> Result<(), String> {
        if self.header.is_none() {
            return Err("snapshot ended before its header".into());
        }
        if !self.carry.is_empty() || self.skip_entries > 0 || self.want_entries > 0 {
            return Err("snapshot ended in the middle of an entry".into());
        }
        Ok(())
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
