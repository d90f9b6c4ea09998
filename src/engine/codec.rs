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
    json::check_value(data).map_err(|p| Error::invalid(format!("summary data {p}")))
}

/// Encodes a batch as a part body: each entry compacted onto its own line.
/// Every entry must be a JSON object within the limits of [`json::check_value`].
pub fn encode_entries(entries: &[Entry]) -> Result<Bytes, Error> {
    if entries.is_empty() {
        return Err(Error::invalid("entries must be a non-empty array"));
    }
    let mut body = String::with_capacity(entries.iter().map(|e| e.get().len() + 1).sum());
    for (i, entry) in entries.iter().enumerate() {
        let text = entry.get();
        if !text.starts_with('{') {
            return Err(Error::invalid(format!(
                "entries[{i}] must be a JSON object"
            )));
        }
        json::check_value(text).map_err(|p| Error::invalid(format!("entries[{i}] {p}")))?;
        if text
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            body.push_str(&minify_json(text));
        } else {
            body.push_str(text);
        }
        body.push('\n');
    }
    Ok(Bytes::from(body))
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
            err.contains("entries[0] has the object key \"a\" more than once"),
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
