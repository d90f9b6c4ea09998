//! The part format: one entry per line, each entry the compact form of the
//! JSON text the client sent (numbers, key order and escapes untouched).

use bytes::Bytes;

use crate::domain::{json, Entry};
use crate::error::Error;

/// Removes insignificant whitespace from valid JSON text, leaving strings,
/// numbers and key order exactly as they are. JSON strings cannot hold a raw
/// newline, so the result is always a single line.
pub fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Checks a summary before it is stored: a JSON object within the limits of
/// [`json::check_value`].
pub fn check_summary(data: &str) -> Result<(), Error> {
    if !data.starts_with('{') {
        return Err(Error::invalid("summary data must be a JSON object"));
    }
    json::check_value(data)
        .map(|_| ())
        .map_err(|p| Error::invalid(format!("summary data {p}")))
}

/// A batch as it will be stored: each entry compacted onto its own line,
/// with the entry's `uuid` (its idempotency key in the SDK's contract).
#[derive(Clone, Debug)]
pub struct EncodedBatch {
    text: Bytes,
    lines: Vec<(std::ops::Range<usize>, Option<String>)>,
}

impl EncodedBatch {
    /// Validates and encodes a batch: non-empty, every entry a JSON object
    /// within the limits of [`json::check_value`].
    pub fn new(entries: &[Entry]) -> Result<Self, Error> {
        if entries.is_empty() {
            return Err(Error::invalid("entries must be a non-empty array"));
        }
        let mut text = String::with_capacity(entries.iter().map(|e| e.get().len() + 1).sum());
        let mut lines = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let raw = entry.get();
            if !raw.starts_with('{') {
                return Err(Error::invalid(format!(
                    "entries[{i}] must be a JSON object"
                )));
            }
            let uuid =
                json::check_value(raw).map_err(|p| Error::invalid(format!("entries[{i}] {p}")))?;
            let start = text.len();
            if raw
                .bytes()
                .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            {
                text.push_str(&minify_json(raw));
            } else {
                text.push_str(raw);
            }
            text.push('\n');
            lines.push((start..text.len(), uuid));
        }
        Ok(Self {
            text: Bytes::from(text),
            lines,
        })
    }

    /// Every line, as stored when nothing is left out.
    pub fn all(&self) -> Bytes {
        self.text.clone()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether the batch has no entries (never, once built).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Each entry's `uuid`, in order.
    pub fn uuids(&self) -> impl Iterator<Item = Option<&str>> {
        self.lines.iter().map(|(_, u)| u.as_deref())
    }

    /// The lines of the entries `keep` says yes to, and their uuids.
    pub fn keep(&self, keep: &[bool]) -> (Bytes, Vec<&str>) {
        if keep.iter().all(|&k| k) {
            let uuids = self
                .lines
                .iter()
                .filter_map(|(_, u)| u.as_deref())
                .collect();
            return (self.text.clone(), uuids);
        }
        let mut out = Vec::with_capacity(self.text.len());
        let mut uuids = Vec::new();
        for ((range, uuid), &k) in self.lines.iter().zip(keep) {
            if k {
                out.extend_from_slice(&self.text[range.clone()]);
                uuids.extend(uuid.as_deref());
            }
        }
        (Bytes::from(out), uuids)
    }
}

/// Encodes a batch as the entry lines of a part: each entry compacted onto
/// its own line. Every entry must be a JSON object within the limits of
/// [`json::check_value`].
pub fn encode_entries(entries: &[Entry]) -> Result<Bytes, Error> {
    EncodedBatch::new(entries).map(|b| b.all())
}

/// The top-level `uuid` of one stored entry line, if it is a string.
pub fn line_uuid(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    json::check_value(text.trim_end()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn raw(s: &str) -> Entry {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn minify_keeps_strings_and_numbers_exact() {
        let text = "{ \"a\" : [1, 2.50, 1e400],\n \"s\": \"x \\\" y\\n\", \"n\":123456789012345678901234567890 }";
        let out = minify_json(text);
        assert_eq!(
            out,
            "{\"a\":[1,2.50,1e400],\"s\":\"x \\\" y\\n\",\"n\":123456789012345678901234567890}"
        );
        assert!(!out.contains('\n'));
    }

    #[test]
    fn encode_writes_one_line_per_entry() {
        let body = encode_entries(&[raw("{\"a\": 1}"), raw("{\"b\":\n2}")]).unwrap();
        assert_eq!(&body[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn encode_refuses_entries_nested_too_deep_or_with_duplicate_keys() {
        let deep = format!("{{\"d\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let err = encode_entries(&[raw("{}"), raw(&deep)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("entries[1] nests deeper than 128 levels"),
            "{err}"
        );
        let err = encode_entries(&[raw(r#"{"a":1,"a":2}"#)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("entries[0] has an object key more than once"),
            "{err}"
        );
    }

    #[test]
    fn encode_refuses_empty_batches_and_non_objects() {
        assert!(encode_entries(&[]).is_err());
        for bad in ["1", "[]", "\"s\"", "null"] {
            assert!(encode_entries(&[raw(bad)]).is_err(), "{bad} accepted");
        }
    }
}
