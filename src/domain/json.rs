//! Limits on the JSON values the gateway stores (entries, summaries), so no
//! request can store something a client cannot read back: nesting at most
//! [`MAX_DEPTH`] levels (Python's `json` and many parsers stop near 1,000,
//! some far sooner), no object with the same key twice (parsers disagree on
//! which one wins), and no number that overflows a double (Python reads
//! `1e400` as `inf` and cannot write it back as JSON), no lone surrogate
//! escape such as `\ud800` (it decodes to no character and cannot be
//! written as UTF-8).
//!
//! The text given is already valid JSON (serde parsed it); this is one pass
//! over its bytes with no recursion, whatever the depth.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Deepest nesting of a stored value; the value itself is level 1.
pub const MAX_DEPTH: usize = 128;

/// Objects with more keys than this check duplicates with a hash set.
const LINEAR_KEYS: usize = 16;

/// Why a stored value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonProblem {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An object names a key twice; the byte offset of the second. (Offsets,
    /// not the text: a refusal never repeats a transcript's contents.)
    DuplicateKey(usize),
    /// A number is infinite as an IEEE double; its byte offset.
    NumberTooLarge(usize),
    /// A `\uXXXX` escape names half of a UTF-16 surrogate pair without the
    /// other half: no character, and not encodable as UTF-8.
    LoneSurrogate,
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonProblem::TooDeep => write!(
                f,
                "nests deeper than {MAX_DEPTH} levels (at most {MAX_DEPTH} are allowed)"
            ),
            JsonProblem::DuplicateKey(at) => {
                write!(f, "has an object key more than once (again at byte {at})")
            }
            JsonProblem::NumberTooLarge(at) => {
                write!(f, "holds a number too large for a double (at byte {at})")
            }
            JsonProblem::LoneSurrogate => write!(
                f,
                "holds a lone UTF-16 surrogate escape (such as \\ud800), which is no character"
            ),
        }
    }
}

enum Keys<'a> {
    Few(Vec<Cow<'a, str>>),
    Many(HashSet<Cow<'a, str>>),
}

impl<'a> Keys<'a> {
    /// Adds a key; false when it was already there.
    fn insert(&mut self, key: Cow<'a, str>) -> bool {
        match self {
            Keys::Few(v) => {
                if v.contains(&key) {
                    return false;
                }
                v.push(key);
                if v.len() > LINEAR_KEYS {
                    *self = Keys::Many(std::mem::take(v).into_iter().collect());
                }
                true
            }
            Keys::Many(set) => set.insert(key),
        }
    }
}

/// One open container: an object (with its keys so far) or an array.
struct Frame<'a> {
    keys: Option<Keys<'a>>,
    expect_key: bool,
    /// The key just read is `uuid` (what follows is its value).
    at_uuid: bool,
}

fn hex4(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..4)?).ok()?;
    u16::from_str_radix(text, 16).ok()
}

/// Checks the `\u` escapes of one string's raw bytes pair up.
fn check_surrogates(raw: &[u8]) -> Result<(), JsonProblem> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            i += 1;
            continue;
        }
        if raw.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let unit = hex4(&raw[i + 2..]).unwrap_or(0);
        i += 6;
        match unit {
            0xD800..=0xDBFF => {
                let low = (raw.get(i..i + 2) == Some(b"\\u"))
                    .then(|| hex4(&raw[i + 2..]))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Err(JsonProblem::LoneSurrogate);
                }
                i += 6;
            }
            0xDC00..=0xDFFF => return Err(JsonProblem::LoneSurrogate),
            _ => {}
        }
    }
    Ok(())
}

/// Checks one stored value (`text` must be valid JSON) and returns its
/// top-level `uuid`, when that is a string: the SDK's idempotency key of an
/// entry, found in the same pass.
pub fn check_value(text: &str) -> Result<Option<String>, JsonProblem> {
    let mut uuid = None;
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => {
                if stack.len() >= MAX_DEPTH {
                    return Err(JsonProblem::TooDeep);
                }
                let object = bytes[i] == b'{';
                if let Some(frame) = stack.last_mut() {
                    frame.at_uuid = false;
                }
                stack.push(Frame {
                    keys: object.then(|| Keys::Few(Vec::new())),
                    expect_key: object,
                    at_uuid: false,
                });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b',' => {
                if let Some(frame) = stack.last_mut() {
                    frame.expect_key = frame.keys.is_some();
                    frame.at_uuid = false;
                }
                i += 1;
            }
            b'"' => {
                let start = i + 1;
                let mut escaped = false;
                let mut j = start;
                while j < bytes.len() && bytes[j] != b'"' {
                    escaped |= bytes[j] == b'\\';
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let end = j.min(bytes.len());
                if escaped {
                    check_surrogates(&bytes[start..end])?;
                }
                let depth = stack.len();
                if let Some(frame) = stack.last_mut() {
                    if !frame.expect_key && frame.at_uuid && depth == 1 {
                        // The top-level `uuid` is a string: keep it, decoded.
                        let raw = &text[start..end];
                        uuid = Some(if escaped {
                            serde_json::from_str::<String>(&text[i..=end.min(bytes.len() - 1)])
                                .unwrap_or_else(|_| raw.to_string())
                        } else {
                            raw.to_string()
                        });
                        frame.at_uuid = false;
                    }
                    if frame.expect_key {
                        frame.expect_key = false;
                        let raw = &text[start..end];
                        let key = if escaped {
                            // Compare keys as parsers see them: "\u0061" is "a".
                            Cow::Owned(
                                serde_json::from_str::<String>(&text[i..=end.min(bytes.len() - 1)])
                                    .unwrap_or_else(|_| raw.to_string()),
                            )
                        } else {
                            Cow::Borrowed(raw)
                        };
                        frame.at_uuid = key == "uuid";
                        if let Some(keys) = frame.keys.as_mut() {
                            if !keys.insert(key.clone()) {
                                return Err(JsonProblem::DuplicateKey(i));
                            }
                        }
                    }
                }
                i = end + 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = &text[start..i];
                if !number.parse::<f64>().is_ok_and(f64::is_finite) {
                    return Err(JsonProblem::NumberTooLarge(start));
                }
                if let Some(frame) = stack.last_mut() {
                    frame.at_uuid = false;
                }
            }
            b't' | b'f' | b'n' => {
                if let Some(frame) = stack.last_mut() {
                    frame.at_uuid = false;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "[".repeat(levels - 1), "]".repeat(levels - 1)).replacen(
            '1',
            "{\"a\":1}",
            1,
        )
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted_and_one_more_is_not() {
        // nested(n) is n levels: n - 1 arrays around one object.
        assert_eq!(check_value(&nested(MAX_DEPTH)), Ok(None));
        assert_eq!(
            check_value(&nested(MAX_DEPTH + 1)),
            Err(JsonProblem::TooDeep)
        );
        assert_eq!(check_value(&nested(10_000)), Err(JsonProblem::TooDeep));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!("{{\"s\":\"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert_eq!(check_value(&text), Ok(None));
    }

    #[test]
    fn duplicate_keys_are_found_at_any_level_and_after_escapes() {
        assert_eq!(
            check_value(r#"{"a":1,"b":{"c":1,"c":2}}"#),
            Err(JsonProblem::DuplicateKey(18))
        );
        assert_eq!(
            check_value(r#"{"a":1,"\u0061":2}"#),
            Err(JsonProblem::DuplicateKey(7))
        );
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", many.join(","));
        assert_eq!(check_value(&ok), Ok(None));
        let dup = format!("{{{},\"k7\":0}}", many.join(","));
        assert_eq!(
            check_value(&dup),
            Err(JsonProblem::DuplicateKey(dup.len() - 7))
        );
        // The same key in sibling objects and string values equal to keys are fine.
        assert_eq!(check_value(r#"[{"a":"a"},{"a":"a"}]"#), Ok(None));
        assert_eq!(check_value(r#"{"a":["a","a"],"b":"a"}"#), Ok(None));
    }

    #[test]
    fn surrogate_escapes_must_pair_up() {
        assert_eq!(
            check_value(r#"{"e":"\ud83d\ude00 \u00e9 \\ud800"}"#),
            Ok(None)
        );
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00x"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"\udfff":1}"#,
        ] {
            assert_eq!(check_value(bad), Err(JsonProblem::LoneSurrogate), "{bad}");
        }
    }

    #[test]
    fn the_top_level_uuid_is_found_only_as_a_string_at_the_top() {
        let uuid = |t: &str| check_value(t).unwrap();
        assert_eq!(uuid(r#"{"type":"user","uuid":"u-1"}"#), Some("u-1".into()));
        assert_eq!(uuid(r#"{"uuid":"\u0075-2","x":1}"#), Some("u-2".into()));
        for none in [
            r#"{"uuid":1}"#,
            r#"{"uuid":null}"#,
            r#"{"uuid":true}"#,
            r#"{"uuid":{"a":"b"}}"#,
            r#"{"uuid":["u"]}"#,
            r#"{"message":{"uuid":"nested"}}"#,
            r#"{"parentUuid":"p","x":"uuid"}"#,
            r#"{"a":"uuid","b":"u"}"#,
        ] {
            assert_eq!(uuid(none), None, "{none}");
        }
        assert_eq!(
            uuid(r#"{"message":{"uuid":"n"},"uuid":"top"}"#),
            Some("top".into())
        );
    }

    #[test]
    fn numbers_must_fit_a_double() {
        assert_eq!(
            check_value(r#"{"n":12345678901234567890,"f":-3e-7,"m":1.7e308}"#),
            Ok(None)
        );
        assert_eq!(
            check_value(r#"{"n":1e400}"#),
            Err(JsonProblem::NumberTooLarge(5))
        );
        let huge = format!("{{\"n\":{}}}", "9".repeat(400));
        assert_eq!(check_value(&huge), Err(JsonProblem::NumberTooLarge(5)));
        // The message names where, never what.
        let message = JsonProblem::NumberTooLarge(5).to_string();
        assert!(!message.contains("999"), "{message}");
    }
}
