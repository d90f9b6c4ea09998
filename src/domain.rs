//! Validated domain types: the ids and keys every request names, the sequence
//! number of a part, and the records the engine hands back.
//!
//! Every constructor validates, so a value of these types is always safe to
//! use as an object-key or catalog-key segment. Nothing here does I/O.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub mod clock;
pub mod json;

/// An error and its sources, on one line (`outer: cause: root cause`), as
/// logs and command-line messages show it.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        // Some errors repeat their source's text in their own; say it once.
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// Whether `err`, or any error in its source chain, is a `T`: how code asks
/// what kind of failure it holds, by type, never by message text.
pub fn chain_has<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<T>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A value a request named that breaks the rules for its kind; the message
/// says which rule, in terms the client can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// An invalid value, described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Longest task or session id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest project key (the SDK cuts names at 200 plus a hash suffix).
pub const MAX_PROJECT_KEY_LEN: usize = 255;
/// Longest subpath, in bytes.
pub const MAX_SUBPATH_LEN: usize = 512;
/// Deepest subpath, in segments.
pub const MAX_SUBPATH_DEPTH: usize = 4;

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Checks one id (or subpath segment): 1–128 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub(crate) fn validate_id(what: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(Invalid::new(format!(
            "{what} must be 1 to {MAX_ID_LEN} characters"
        )));
    }
    if value == "." || value == ".." {
        return Err(Invalid::new(format!("{what} must not be '.' or '..'")));
    }
    if !value.chars().all(is_id_char) {
        return Err(Invalid::new(format!(
            "{what} may contain only A-Z, a-z, 0-9, '.', '_' and '-'"
        )));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps the value.
            pub fn new(value: impl Into<String>) -> Result<Self, Invalid> {
                let value = value.into();
                $check($what, &value)?;
                Ok(Self(value))
            }

            /// The validated string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The orchestrator's id of one task: 1–128 of `[A-Za-z0-9._-]`.
    TaskId,
    "task_id",
    validate_id
);
id_type!(
    /// A Claude session id: 1–128 of `[A-Za-z0-9._-]`.
    SessionId,
    "session_id",
    validate_id
);
id_type!(
    /// The SDK's project key: 1–255 of `[A-Za-z0-9-]`.
    ProjectKey,
    "project_key",
    validate_project_key
);
id_type!(
    /// A relative path below a session, such as `subagents/agent-1`.
    Subpath,
    "subpath",
    validate_subpath
);

fn validate_project_key(what: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || value.len() > MAX_PROJECT_KEY_LEN {
        return Err(Invalid::new(format!(
            "{what} must be 1 to {MAX_PROJECT_KEY_LEN} characters"
        )));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Invalid::new(format!(
            "{what} may contain only A-Z, a-z, 0-9 and '-'"
        )));
    }
    Ok(())
}

fn validate_subpath(what: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(format!("{what} must not be empty")));
    }
    if value.len() > MAX_SUBPATH_LEN {
        return Err(Invalid::new(format!(
            "{what} must be at most {MAX_SUBPATH_LEN} characters"
        )));
    }
    if value.starts_with('/') {
        return Err(Invalid::new(format!("{what} must be relative")));
    }
    let segments: Vec<&str> = value.split('/').collect();
    if segments.len() > MAX_SUBPATH_DEPTH {
        return Err(Invalid::new(format!(
            "{what} must have at most {MAX_SUBPATH_DEPTH} segments"
        )));
    }
    for segment in segments {
        if segment.is_empty() {
            return Err(Invalid::new(format!(
                "{what} must not contain empty segments ('//' or a trailing '/')"
            )));
        }
        validate_id(what, segment)?;
        if segment.ends_with(".jsonl") {
            // Such a directory could collide with a part or snapshot file.
            return Err(Invalid::new(format!(
                "{what} segments must not end in '.jsonl'"
            )));
        }
    }
    Ok(())
}

/// A part's sequence number within one key; the first part is 1.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = u64)]
pub struct Seq(pub u64);

impl Seq {
    /// The number before any part: a key with head `ZERO` has no parts.
    pub const ZERO: Seq = Seq(0);

    /// The number after this one.
    pub fn next(self) -> Seq {
        Seq(self.0.saturating_add(1))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The session a request names: task, project and session id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionRef {
    /// The owning task.
    pub task_id: TaskId,
    /// The SDK's project key.
    pub project_key: ProjectKey,
    /// The Claude session id.
    pub session_id: SessionId,
}

/// One transcript: a session's main transcript or one of its subkeys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// The session the transcript belongs to.
    pub session: SessionRef,
    /// `None` for the main transcript.
    pub subpath: Option<Subpath>,
}

impl SessionKey {
    /// The main transcript of `session`.
    pub fn main(session: SessionRef) -> Self {
        Self {
            session,
            subpath: None,
        }
    }

    /// The task the key belongs to.
    pub fn task_id(&self) -> &TaskId {
        &self.session.task_id
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.session;
        write!(f, "{}/{}/{}", s.task_id, s.project_key, s.session_id)?;
        if let Some(sub) = &self.subpath {
            write!(f, "/{sub}")?;
        }
        Ok(())
    }
}

/// One opaque transcript entry, kept as the exact JSON text it arrived as
/// (minus insignificant whitespace), so a load is deep-equal to the append.
pub type Entry = Box<RawValue>;

/// What an append wrote; replayed verbatim for a repeated idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"seq": 12, "count": 2, "skipped": 0, "mtime": 1764979200123u64}))]
pub struct AppendReceipt {
    /// The part's sequence number.
    pub seq: Seq,
    /// How many entries were stored (the part holds them).
    pub count: u64,
    /// How many entries were not stored: their `uuid` was stored before in
    /// this transcript (or earlier in the same batch). When every entry is
    /// skipped no part is written and `seq` is the transcript's head.
    #[serde(default)]
    pub skipped: u64,
    /// Storage write time in epoch ms; strictly increases per key.
    pub mtime: u64,
    /// The outcome of the summary update sent with the append, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SummaryOutcome>,
}

/// Whether a compare-and-set summary update took effect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SummaryOutcome {
    /// True when the stored version matched and the new data was stored.
    pub applied: bool,
    /// The stored summary version after the call (0 for a subkey).
    pub version: u64,
    /// Why the update was not considered at all, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl SummaryOutcome {
    /// The outcome of a summary sent with a subkey append: dropped, as a
    /// subkey has no summary; the entries are stored all the same.
    pub fn dropped_for_subkey() -> Self {
        Self {
            applied: false,
            version: 0,
            note: Some(
                "a subkey has no summary; the update was dropped and the entries stored".into(),
            ),
        }
    }
}

/// A summary update: store `data` if the current version is `expected_version`.
#[derive(Clone, Debug)]
pub struct SummaryUpdate {
    /// The client-folded summary, stored verbatim.
    pub data: Box<RawValue>,
    /// The version the client folded on (0 when there was none).
    pub expected_version: u64,
}

/// Where a mirror failure was seen. Persisted: never rename.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailureOrigin {
    /// The gateway failed the request (or found stored data broken).
    Gateway,
    /// A client reported a failure that never reached the gateway.
    Client,
}

/// One mirror failure: a write that did not land, a transcript that failed
/// its integrity check, a client's report, or an append whose project key
/// drifted from the task's binding. Persisted as JSON: add fields, never
/// rename one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MirrorFailure {
    /// A unique id (a ULID).
    pub id: String,
    /// When it happened, epoch ms.
    pub at_ms: u64,
    /// The task.
    pub task_id: String,
    /// The transcript's project key, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_key: Option<String>,
    /// The transcript's session, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The subkey, when the failure was on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    /// Why: a failed append's error code (`backend_unavailable`, `timeout`,
    /// ...), `integrity` (a broken chain), `client_reported` or
    /// `project_key_drift`.
    pub reason: String,
    /// Who saw it.
    pub origin: FailureOrigin,
    /// What was said about it (at most 1,024 characters).
    pub detail: String,
    /// The request it happened in, when the gateway saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl MirrorFailure {
    /// The longest detail kept.
    pub const MAX_DETAIL: usize = 1024;

    /// Where it sorts: by time, then id (newest last).
    pub fn sort_key(&self) -> String {
        format!("{:013}#{}", self.at_ms, self.id)
    }

    /// The reason a project-key drift is kept under.
    pub const DRIFT: &'static str = "project_key_drift";

    /// Whether this is a project-key drift rather than a gap.
    pub fn is_drift(&self) -> bool {
        self.reason == Self::DRIFT
    }
}

/// A page of a listing, sorted ascending by key.
#[derive(Clone, Debug, Default)]
pub struct Page<T> {
    /// The items, in ascending order.
    pub items: Vec<T>,
    /// True when more items may follow the last one.
    pub more: bool,
}

/// What a task is bound to: its Claude session, for cross-worker resume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Binding {
    /// The Claude session UUID from the run's first `ResultMessage`.
    pub claude_session_id: String,
    /// The SDK project key of the run's working directory.
    pub project_key: String,
    /// The run's working directory.
    pub cwd: String,
}

/// A binding as stored, with its creation time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBinding {
    /// The bound values.
    pub binding: Binding,
    /// When the first writer created it, epoch ms.
    pub created_ms: u64,
}

/// The outcome of a first-writer-wins binding create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindOutcome {
    /// This call created it.
    Created(StoredBinding),
    /// It already existed with these values (equal or not).
    Existing(StoredBinding),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet() {
        assert!(TaskId::new("01JABC.def_ghi-9").is_ok());
        assert!(TaskId::new("a".repeat(128)).is_ok());
        assert!(SessionId::new("3f2a-uuid").is_ok());
    }

    #[test]
    fn ids_reject_dots_empty_long_and_foreign_characters() {
        for bad in ["", ".", "..", "a/b", "a b", "é", "a\0"] {
            assert!(TaskId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(SessionId::new("a".repeat(129)).is_err());
    }

    #[test]
    fn project_keys_use_the_sdk_alphabet() {
        assert!(ProjectKey::new("-workspace-task-1").is_ok());
        assert!(ProjectKey::new("a".repeat(255)).is_ok());
        assert!(ProjectKey::new("a".repeat(256)).is_err());
        assert!(ProjectKey::new("a.b").is_err());
        assert!(ProjectKey::new("a_b").is_err());
        assert!(ProjectKey::new("").is_err());
    }

    #[test]
    fn subpaths_are_relative_bounded_and_clean() {
        assert!(Subpath::new("subagents/agent-1").is_ok());
        assert!(Subpath::new("a/b/c/d").is_ok());
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "..",
            ".",
            "a/./b",
            "a/b/c/d/e",
            "a b",
            "part-00000000000000000001.jsonl",
            "a/x.jsonl",
        ] {
            assert!(Subpath::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Subpath::new("a".repeat(513)).is_err());
    }
}
