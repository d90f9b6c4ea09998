//! Transcript-like entries of an exact size, and the encodings the
//! benchmark needs: the HTTP append body, the batch as JSONL (one compact
//! JSON object per line, as `engine::encode_entries` writes it), and the
//! gateway's stored parts (a header line with the hash chain, then the JSONL).

use bytes::Bytes;
use transcript_gateway::domain::{ProjectKey, Seq, SessionId, SessionKey, SessionRef, TaskId};
use transcript_gateway::engine::keys;
use transcript_gateway::engine::part::{self, NewPart};

/// One JSON object of exactly `len` bytes (no newline), shaped like an SDK
/// transcript frame, with `seq` and `tag` inside so entries differ.
pub fn entry(tag: &str, seq: u64, len: usize) -> String {
    let head = format!(
        "{{\"type\":\"assistant\",\"uuid\":\"{tag}-{seq:012}\",\"seq\":{seq},\
         \"message\":{{\"role\":\"assistant\",\"content\":[{{\"type\":\"text\",\"text\":\""
    );
    let tail = "\"}]}}";
    let pad = len.saturating_sub(head.len() + tail.len());
    let mut out = String::with_capacity(len);
    out.push_str(&head);
    // Cheap, varied text (a linear congruential walk over letters and spaces).
    let mut x = seq
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for _ in 0..pad {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let c = b"abcdefghijklmnopqrstuvwxyz     "[((x >> 33) % 31) as usize];
        out.push(c as char);
    }
    out.push_str(tail);
    out
}

/// A batch: the entries, in order.
#[derive(Clone, Debug)]
pub struct Batch(pub Vec<String>);

impl Batch {
    /// `count` entries of `entry_len` bytes each, numbered from `first_seq`.
    pub fn new(tag: &str, first_seq: u64, count: usize, entry_len: usize) -> Self {
        Batch(
            (0..count as u64)
                .map(|i| entry(tag, first_seq + i, entry_len))
                .collect(),
        )
    }

    /// The `POST .../entries` body: `{"entries":[...]}`.
    pub fn http_body(&self) -> Bytes {
        let mut s = String::with_capacity(self.part_len() + 16);
        s.push_str("{\"entries\":[");
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(e);
        }
        s.push_str("]}");
        Bytes::from(s)
    }

    /// The batch as JSONL: what a plain store keeps per part, and the
    /// entries of the gateway's part.
    pub fn part_body(&self) -> Bytes {
        let mut s = String::with_capacity(self.part_len());
        for e in &self.0 {
            s.push_str(e);
            s.push('\n');
        }
        Bytes::from(s)
    }

    /// The append body, ready to be sent many times with fresh uuids.
    pub fn http_bodies(&self) -> Bodies {
        let body = self.http_body().to_vec();
        let mut slots = Vec::with_capacity(self.0.len());
        let needle = b"\"uuid\":\"";
        let mut from = 0;
        while let Some(at) = memchr::memmem::find(&body[from..], needle) {
            let start = from + at + needle.len();
            let Some(len) = memchr::memchr(b'"', &body[start..]) else {
                break;
            };
            // The uuid ends in a 12-digit number (see `entry`).
            slots.push(start + len - UUID_DIGITS);
            from = start + len;
        }
        assert_eq!(slots.len(), self.0.len(), "one uuid per entry");
        Bodies { body, slots }
    }

    /// Bytes of the part body.
    pub fn part_len(&self) -> usize {
        self.0.iter().map(|e| e.len() + 1).sum()
    }
}

/// Digits that end every entry's uuid.
const UUID_DIGITS: usize = 12;

/// One batch's append body, sent many times: each time with its entries'
/// uuids renumbered, so no two requests share one. The gateway stores an
/// entry whose uuid a transcript already holds only once (as the SDK
/// expects), so resending one body would measure appends that store nothing.
#[derive(Clone, Debug)]
pub struct Bodies {
    body: Vec<u8>,
    /// Where each entry's uuid digits start.
    slots: Vec<usize>,
}

impl Bodies {
    /// The body of request `n` (distinct uuids for distinct `n`).
    pub fn nth(&self, n: u64) -> Bytes {
        let mut body = self.body.clone();
        for (i, &slot) in self.slots.iter().enumerate() {
            let number = n * self.slots.len() as u64 + i as u64;
            let digits = format!("{number:0width$}", width = UUID_DIGITS);
            assert_eq!(digits.len(), UUID_DIGITS, "uuid number overflow");
            body[slot..slot + UUID_DIGITS].copy_from_slice(digits.as_bytes());
        }
        Bytes::from(body)
    }
}

/// The directory of a main transcript's first incarnation, as the gateway
/// lays it out (relative to its prefix).
pub fn gateway_dir(task: &str, project: &str, session: &str) -> String {
    let key = SessionKey::main(SessionRef {
        task_id: TaskId::new(task).expect("task id"),
        project_key: ProjectKey::new(project).expect("project key"),
        session_id: SessionId::new(session).expect("session id"),
    });
    keys::incarnation_dir(&key, 1)
}

/// Parts `1..=n` as the gateway stores them (each naming the one before it
/// in the hash chain), with their object keys under `dir`.
pub fn gateway_parts(dir: &str, n: u64, batch: impl Fn(u64) -> Batch) -> Vec<(String, Bytes)> {
    let mut prev = part::GENESIS;
    (1..=n)
        .map(|seq| {
            let entries = batch(seq).part_body();
            let (body, digest) = NewPart {
                seq: Seq(seq),
                mtime: 1_700_000_000_000 + seq,
                prev,
                entries: &entries,
                count: entries.iter().filter(|&&b| b == b'\n').count() as u64,
                idempotency: None,
                seal: false,
                skipped: 0,
            }
            .encode();
            prev = digest;
            (keys::part_key(dir, Seq(seq)), body)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_the_exact_size_and_are_json_objects() {
        for len in [300, 1023, 4095] {
            let e = entry("t", 42, len);
            assert_eq!(e.len(), len);
            let v: serde_json::Value = serde_json::from_str(&e).unwrap();
            assert_eq!(v["seq"], 42);
        }
        let b = Batch::new("t", 1, 64, 1023);
        assert_eq!(b.part_body().len(), 64 * 1024);
        let v: serde_json::Value = serde_json::from_slice(&b.http_body()).unwrap();
        assert_eq!(v["entries"].as_array().unwrap().len(), 64);
    }

    #[test]
    fn every_body_has_fresh_uuids_and_the_same_size() {
        let b = Batch::new("t", 1, 3, 1023);
        let bodies = b.http_bodies();
        let mut seen = std::collections::HashSet::new();
        for n in 0..4 {
            let body = bodies.nth(n);
            assert_eq!(body.len(), b.http_body().len());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for e in v["entries"].as_array().unwrap() {
                assert!(seen.insert(e["uuid"].as_str().unwrap().to_string()));
            }
        }
        assert_eq!(seen.len(), 12);
    }
}
