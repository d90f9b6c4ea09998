//! Every object key shape, in one place.
//!
//! Layout (relative to the store's prefix; persisted, never change):
//! `{task_id}/{project_key}/{session_id}/` is the main transcript's
//! directory and `.../{session_id}/{subpath}/` a subkey's. Each incarnation of
//! a transcript (a delete starts the next one) lives in its own directory
//! below it, `~i{n:010}/` (`~` never occurs in a subpath, so it cannot collide
//! with one). Incarnation 0 is the layout from before incarnations: its parts
//! lie directly in the transcript's directory, without headers; it is read as
//! it is and migrated to incarnation 1 by the next write.
//! A part is `part-{seq:020}.jsonl`, a snapshot `snapshot-{seq:020}.jsonl`,
//! and a chunk of a large snapshot `chunk-{seq:020}-{attempt}-{i:06}.jsonl`
//! (`seq` the snapshot that wrote it, `attempt` unique per compaction run).
//! Zero-padding makes lexical order equal numeric order; chunks sort before
//! every part and every part before every snapshot, so one listing from a
//! part onwards meets parts first.

use crate::domain::{Seq, SessionKey, SessionRef};

const CHUNK_PREFIX: &str = "chunk-";
const PART_PREFIX: &str = "part-";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".jsonl";

/// The directory (ending in `/`) holding one transcript's objects.
pub fn transcript_dir(key: &SessionKey) -> String {
    let mut dir = session_dir(&key.session);
    if let Some(sub) = &key.subpath {
        dir.push_str(sub.as_str());
        dir.push('/');
    }
    dir
}

/// Marks an incarnation directory.
const INCARNATION_PREFIX: &str = "~i";

/// The directory (ending in `/`) holding incarnation `n` of a transcript;
/// incarnation 0 is the transcript's own directory (the layout from before
/// incarnations).
pub fn incarnation_dir(key: &SessionKey, n: u64) -> String {
    let mut dir = transcript_dir(key);
    if n > 0 {
        dir.push_str(&format!("{INCARNATION_PREFIX}{n:010}/"));
    }
    dir
}

/// Splits a directory into the transcript directory and its incarnation:
/// `.../~i0000000003/` is incarnation 3 of `.../`; anything else is
/// incarnation 0 of itself.
pub fn split_incarnation(dir: &str) -> (&str, u64) {
    let Some(inner) = dir.strip_suffix('/') else {
        return (dir, 0);
    };
    match inner.rsplit_once('/') {
        Some((parent, last)) => match last
            .strip_prefix(INCARNATION_PREFIX)
            .filter(|d| d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
        {
            Some(n) if n > 0 => (&dir[..parent.len() + 1], n),
            _ => (dir, 0),
        },
        None => (dir, 0),
    }
}

/// The directory (ending in `/`) holding a session and all its subkeys.
pub fn session_dir(session: &SessionRef) -> String {
    format!(
        "{}/{}/{}/",
        session.task_id, session.project_key, session.session_id
    )
}

/// The directory (ending in `/`) holding every object of a task.
pub fn task_dir(task: &crate::domain::TaskId) -> String {
    format!("{task}/")
}

/// The key of part `seq` in `dir`.
pub fn part_key(dir: &str, seq: Seq) -> String {
    format!("{dir}{PART_PREFIX}{:020}{SUFFIX}", seq.0)
}

/// The key of the snapshot covering parts through `seq` in `dir`.
pub fn snapshot_key(dir: &str, seq: Seq) -> String {
    format!("{dir}{SNAPSHOT_PREFIX}{:020}{SUFFIX}", seq.0)
}

/// The name (within its directory) of chunk `i` of the snapshot through
/// `seq` written by compaction run `attempt`.
pub fn chunk_name(seq: Seq, attempt: &str, i: usize) -> String {
    format!("{CHUNK_PREFIX}{:020}-{attempt}-{i:06}{SUFFIX}", seq.0)
}

/// A key to list from so the listing starts at the first snapshot in `dir`.
pub fn snapshots_start(dir: &str) -> String {
    // '-' sorts before every digit, so this precedes snapshot-000...
    format!("{dir}{SNAPSHOT_PREFIX}")
}

/// What an object in a transcript directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A part holding one appended batch.
    Part(Seq),
    /// A snapshot holding every entry through this part.
    Snapshot(Seq),
    /// A chunk written for the snapshot through this part.
    Chunk(Seq),
}

/// Parses the name of an object directly in `dir`; `None` for anything else.
pub fn parse(dir: &str, key: &str) -> Option<ObjectKind> {
    let name = key.strip_prefix(dir)?;
    if let Some(rest) = name.strip_prefix(CHUNK_PREFIX) {
        let digits = rest.get(..20).filter(|_| rest.ends_with(SUFFIX))?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) || rest.as_bytes().get(20) != Some(&b'-') {
            return None;
        }
        return digits.parse().ok().map(|n| ObjectKind::Chunk(Seq(n)));
    }
    let (kind, rest): (fn(Seq) -> ObjectKind, &str) =
        if let Some(rest) = name.strip_prefix(PART_PREFIX) {
            (ObjectKind::Part, rest)
        } else if let Some(rest) = name.strip_prefix(SNAPSHOT_PREFIX) {
            (ObjectKind::Snapshot, rest)
        } else {
            return None;
        };
    let digits = rest.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|n| kind(Seq(n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProjectKey, SessionId, Subpath, TaskId};

    fn key(sub: Option<&str>) -> SessionKey {
        SessionKey {
            session: SessionRef {
                task_id: TaskId::new("t1").unwrap(),
                project_key: ProjectKey::new("-workspace-t1").unwrap(),
                session_id: SessionId::new("s1").unwrap(),
            },
            subpath: sub.map(|s| Subpath::new(s).unwrap()),
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let main = transcript_dir(&key(None));
        assert_eq!(main, "t1/-workspace-t1/s1/");
        assert_eq!(
            part_key(&main, Seq(7)),
            "t1/-workspace-t1/s1/part-00000000000000000007.jsonl"
        );
        let sub = transcript_dir(&key(Some("subagents/agent-1")));
        assert_eq!(sub, "t1/-workspace-t1/s1/subagents/agent-1/");
    }

    #[test]
    fn part_and_snapshot_keys_round_trip() {
        let dir = transcript_dir(&key(None));
        for n in [0, 1, 9, 10, 12345, u64::MAX] {
            assert_eq!(
                parse(&dir, &part_key(&dir, Seq(n))),
                Some(ObjectKind::Part(Seq(n)))
            );
            assert_eq!(
                parse(&dir, &snapshot_key(&dir, Seq(n))),
                Some(ObjectKind::Snapshot(Seq(n)))
            );
        }
    }

    #[test]
    fn lexical_order_is_numeric_order_and_parts_precede_snapshots() {
        let dir = "d/";
        assert!(part_key(dir, Seq(9)) < part_key(dir, Seq(10)));
        assert!(part_key(dir, Seq(u64::MAX)) < snapshot_key(dir, Seq(0)));
        let chunk = format!("{dir}{}", chunk_name(Seq(u64::MAX), "01abc", 7));
        assert!(chunk < part_key(dir, Seq(0)));
        assert_eq!(parse(dir, &chunk), Some(ObjectKind::Chunk(Seq(u64::MAX))));
        assert!(snapshots_start(dir) < snapshot_key(dir, Seq(0)));
        assert!(part_key(dir, Seq(u64::MAX)).as_str() < snapshots_start(dir).as_str());
    }

    #[test]
    fn incarnations_have_their_own_directories_and_split_back() {
        let main = key(None);
        assert_eq!(incarnation_dir(&main, 0), "t1/-workspace-t1/s1/");
        assert_eq!(
            incarnation_dir(&main, 3),
            "t1/-workspace-t1/s1/~i0000000003/"
        );
        let sub = key(Some("subagents/agent-1"));
        let dir = incarnation_dir(&sub, 12);
        assert_eq!(dir, "t1/-workspace-t1/s1/subagents/agent-1/~i0000000012/");
        assert_eq!(
            split_incarnation(&dir),
            ("t1/-workspace-t1/s1/subagents/agent-1/", 12)
        );
        assert_eq!(
            split_incarnation("t1/-workspace-t1/s1/"),
            ("t1/-workspace-t1/s1/", 0)
        );
        for not_one in [
            "a/~i12/",
            "a/~i000000000x/",
            "a/~i0000000000/",
            "a/i0000000001/",
        ] {
            assert_eq!(split_incarnation(not_one).1, 0, "{not_one}");
        }
        // No subpath can name an incarnation directory.
        assert!(crate::domain::Subpath::new("~i0000000001").is_err());
    }

    #[test]
    fn foreign_names_are_not_parsed() {
        let dir = "d/";
        for name in [
            "d/part-1.jsonl",
            "d/part-0000000000000000000x.jsonl",
            "d/other",
            "d/sub/part-00000000000000000001.jsonl",
            "e/part-00000000000000000001.jsonl",
        ] {
            assert_eq!(parse(dir, name), None, "{name}");
        }
    }
}
