//! Items and keys: how catalog records become DynamoDB attributes and back,
//! and the sort-key layout that makes one `Query` list a project's sessions
//! or a session's subkeys. Attribute names are persisted: never rename.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::value::RawValue;

use super::attr;
use crate::backend::{
    Binding, IdempotencyRecord, PortError, SessionRecord, StoredBinding, TaskActivity, TaskRow,
    Versioned,
};
use crate::domain::{ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId};

pub(super) const VERSION: &str = "version";
pub(super) const PROJECT_KEY: &str = "project_key";
pub(super) const SESSION_ID: &str = "session_id";
pub(super) const SUBPATH: &str = "subpath";
pub(super) const SUMMARY: &str = "summary";
pub(super) const FINGERPRINT: &str = "fingerprint";
pub(super) const RECEIPT: &str = "receipt";
pub(super) const CREATED_MS: &str = "created_ms";
/// An idempotency record's [`IdempotencyRecord::part_dir`], when set.
pub(super) const PART_DIR: &str = "part_dir";
/// A session record's [`SessionRecord::prior`], as JSON text (its summary
/// verbatim inside it).
const PRIOR: &str = "prior";
pub(super) const EXPIRES_MS: &str = "expires_ms";
pub(super) const CLAUDE_SESSION_ID: &str = "claude_session_id";
pub(super) const CWD: &str = "cwd";
pub(super) const BOUND_MS: &str = "bound_ms";
pub(super) const EPOCH: &str = "epoch";

/// A task's totals ([`crate::backend::TaskActivity`]), as JSON.
pub(super) const ACTIVITY: &str = "activity";
/// The `activity` index's one partition value.
pub(super) const TASKS_BUCKET_VALUE: &str = "tasks";
/// Mirror failures kept for a task (a counter).
pub(super) const FAILURES: &str = "failures";
/// Set once a project-key drift was kept for a task.
pub(super) const DRIFT: &str = "drift";
/// When an erasure of the task began, epoch ms, while it runs.
pub(super) const ERASING_MS: &str = "erasing_ms";
/// The projection of a write's fence: the epoch and the erasure marker.
pub(super) const WRITER_FENCE: &str = "epoch, erasing_ms";
/// The appends counted in one minute (a counter on a per-minute item).
pub(super) const APPENDS: &str = "appends";

/// The tasks-table item counting the fleet's appends of `minute` (epoch minutes).
pub(super) fn appends_item_id(minute: u64) -> String {
    format!("#appends#{minute}")
}

/// The failures table's partition attribute and its one value.
pub(super) const FAILURE_BUCKET: &str = "bucket";
pub(super) const FAILURE_BUCKET_VALUE: &str = "failures";
/// The failure itself, as JSON.
pub(super) const FAILURE: &str = "failure";
/// How long DynamoDB keeps a failure.
pub(super) const FAILURE_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, PortError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(name)),
    }
}

pub(super) fn get_n(item: &Item, name: &str) -> Result<u64, PortError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(name)),
        _ => Err(corrupt(name)),
    }
}

/// A number attribute that may be absent (records written before it existed).
pub(super) fn get_n_or_zero(item: &Item, name: &str) -> Result<u64, PortError> {
    if item.contains_key(name) {
        get_n(item, name)
    } else {
        Ok(0)
    }
}

pub(super) fn corrupt(name: &str) -> PortError {
    PortError::other(format!(
        "corrupt DynamoDB catalog item: attribute {name:?} missing or mistyped"
    ))
}

/// The sort key of a transcript's record.
pub fn session_sk(key: &SessionKey) -> String {
    let s = &key.session;
    match &key.subpath {
        None => format!("M#{}#{}", s.project_key, s.session_id),
        Some(sub) => format!("S#{}#{}#{sub}", s.project_key, s.session_id),
    }
}

/// `[lo, hi]` of the main-transcript sort keys of `project` after `after`.
pub(super) fn sessions_range(project: &ProjectKey, after: Option<&SessionId>) -> (String, String) {
    let prefix = format!("M#{project}#");
    // Every id character sorts after '!', and '$' right after '#': so `lo`
    // excludes `after` itself and `hi` ends the project's range.
    let lo = match after {
        Some(a) => format!("{prefix}{a}!"),
        None => prefix,
    };
    (lo, format!("M#{project}$"))
}

/// `[lo, hi]` of the subkey sort keys of `session` after `after`, and their prefix.
pub(super) fn subkeys_range(
    session: &SessionRef,
    after: Option<&Subpath>,
) -> (String, String, String) {
    let prefix = format!("S#{}#{}#", session.project_key, session.session_id);
    let lo = match after {
        Some(a) => format!("{prefix}{a}!"),
        None => prefix.clone(),
    };
    let hi = format!("S#{}#{}$", session.project_key, session.session_id);
    (lo, hi, prefix)
}

/// Attributes of a session item that are not record fields.
pub(super) const SESSION_META: [&str; 6] = [
    attr::TASK_ID,
    attr::SK,
    PROJECT_KEY,
    SESSION_ID,
    SUBPATH,
    VERSION,
];

/// A record as item attributes: each field of [`SessionRecord`] under its
/// serde name, numbers as `N`, anything else as `S` holding JSON text (the
/// summary verbatim). New record fields persist without a change here.
pub(super) fn session_item(
    key: &SessionKey,
    record: &SessionRecord,
    version: u64,
) -> Result<Item, PortError> {
    let s = &key.session;
    let mut item = Item::from([
        (attr::TASK_ID.into(), self::s(s.task_id.as_str())),
        (attr::SK.into(), self::s(session_sk(key))),
        (PROJECT_KEY.into(), self::s(s.project_key.as_str())),
        (SESSION_ID.into(), self::s(s.session_id.as_str())),
        (VERSION.into(), n(version)),
    ]);
    if let Some(sub) = &key.subpath {
        item.insert(SUBPATH.into(), self::s(sub.as_str()));
    }
    let fields = match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(fields)) => fields,
        Ok(_) | Err(_) => return Err(PortError::other("encode session record")),
    };
    for (name, value) in fields {
        if SESSION_META.contains(&name.as_str()) {
            return Err(PortError::other(format!(
                "session record field {name:?} collides with a key attribute"
            )));
        }
        let attribute = match (name.as_str(), value) {
            (_, serde_json::Value::Null) => continue,
            (SUMMARY, _) => match &record.summary {
                Some(raw) => self::s(raw.get()),
                None => continue,
            },
            (PRIOR, _) => match &record.prior {
                Some(prior) => self::s(
                    serde_json::to_string(prior)
                        .map_err(|e| PortError::other("encode session record").caused_by(e))?,
                ),
                None => continue,
            },
            (_, serde_json::Value::Number(v)) => AttributeValue::N(v.to_string()),
            (_, other) => self::s(other.to_string()),
        };
        item.insert(name, attribute);
    }
    Ok(item)
}

/// An idempotency record as an item, expiring after the TTL.
pub(super) fn idempotency_item(
    task: &TaskId,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<Item, PortError> {
    let receipt = serde_json::to_string(&record.receipt)
        .map_err(|e| PortError::other("encode receipt").caused_by(e))?;
    let mut item = Item::from([
        (attr::TASK_ID.into(), s(task.as_str())),
        (attr::IDEMPOTENCY_KEY.into(), s(key)),
        (FINGERPRINT.into(), s(&record.fingerprint)),
        (RECEIPT.into(), s(receipt)),
        (CREATED_MS.into(), n(record.created_ms)),
        (EXPIRES_MS.into(), n(record.expires_at_ms())),
        // DynamoDB's TTL deletes the item (lazily) after this, in seconds.
        (
            attr::EXPIRES_AT.into(),
            n(record.expires_at_ms().div_ceil(1000)),
        ),
    ]);
    if let Some(dir) = &record.part_dir {
        item.insert(PART_DIR.into(), s(dir));
    }
    Ok(item)
}

pub(super) fn record_from_item(item: &Item) -> Result<Versioned<SessionRecord>, PortError> {
    let mut fields = serde_json::Map::new();
    let mut summary = None;
    let mut prior = None;
    for (name, value) in item {
        if SESSION_META.contains(&name.as_str()) {
            continue;
        }
        let bad = || PortError::other(format!("corrupt session attribute {name:?} in catalog"));
        let value = match (name.as_str(), value) {
            (SUMMARY, AttributeValue::S(text)) => {
                summary = Some(RawValue::from_string(text.clone()).map_err(|_| bad())?);
                continue;
            }
            (PRIOR, AttributeValue::S(text)) => {
                prior = Some(serde_json::from_str(text).map_err(|_| bad())?);
                continue;
            }
            (_, AttributeValue::N(text)) => serde_json::from_str(text).map_err(|_| bad())?,
            (_, AttributeValue::S(text)) => serde_json::from_str(text).map_err(|_| bad())?,
            (_, AttributeValue::Null(_)) => continue,
            _ => return Err(bad()),
        };
        fields.insert(name.clone(), value);
    }
    let mut record: SessionRecord = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| PortError::other("corrupt session record in catalog").caused_by(e))?;
    record.summary = summary;
    record.prior = prior;
    Ok(Versioned {
        version: get_n(item, VERSION)?,
        value: record,
    })
}

/// The key of the failures-table item sorted at `sort_key`.
pub(super) fn failure_key(sort_key: impl Into<String>) -> Item {
    Item::from([
        (FAILURE_BUCKET.into(), s(FAILURE_BUCKET_VALUE)),
        (attr::SK.into(), s(sort_key)),
    ])
}

/// A kept failure from its item.
pub(super) fn failure_from_item(item: &Item) -> Result<crate::domain::MirrorFailure, PortError> {
    serde_json::from_str(get_s(item, FAILURE)?)
        .map_err(|e| PortError::other("corrupt failure in catalog").caused_by(e))
}

/// A transcript's key from its session item's attributes.
pub(super) fn key_from_item(item: &Item) -> Result<SessionKey, PortError> {
    fn corrupt(name: &'static str) -> impl Fn(crate::domain::Invalid) -> PortError {
        move |e| PortError::other(format!("corrupt {name} in catalog")).caused_by(e)
    }
    let session = SessionRef {
        task_id: TaskId::new(get_s(item, attr::TASK_ID)?).map_err(corrupt(attr::TASK_ID))?,
        project_key: ProjectKey::new(get_s(item, PROJECT_KEY)?).map_err(corrupt(PROJECT_KEY))?,
        session_id: SessionId::new(get_s(item, SESSION_ID)?).map_err(corrupt(SESSION_ID))?,
    };
    let subpath = match item.get(SUBPATH) {
        Some(_) => Some(Subpath::new(get_s(item, SUBPATH)?).map_err(corrupt(SUBPATH))?),
        None => None,
    };
    Ok(SessionKey { session, subpath })
}

/// A tasks-table item as a listed task.
pub(super) fn task_row_from_item(item: &Item) -> Result<TaskRow, PortError> {
    let task_id = TaskId::new(get_s(item, attr::TASK_ID)?)
        .map_err(|e| PortError::other("corrupt task id in catalog").caused_by(e))?;
    let activity = match item.get(ACTIVITY) {
        Some(_) => Some(
            serde_json::from_str::<TaskActivity>(get_s(item, ACTIVITY)?)
                .map_err(|e| PortError::other("corrupt task totals in catalog").caused_by(e))?,
        ),
        None => None,
    };
    Ok(TaskRow {
        task_id,
        activity,
        binding: binding_from_item(item)?,
        epoch: get_n_or_zero(item, EPOCH)?,
        failures: get_n_or_zero(item, FAILURES)?,
        drift: matches!(item.get(DRIFT), Some(AttributeValue::Bool(true))),
    })
}

pub(super) fn binding_from_item(item: &Item) -> Result<Option<StoredBinding>, PortError> {
    if !item.contains_key(CLAUDE_SESSION_ID) {
        return Ok(None);
    }
    Ok(Some(StoredBinding {
        binding: Binding {
            claude_session_id: get_s(item, CLAUDE_SESSION_ID)?.to_string(),
            project_key: get_s(item, PROJECT_KEY)?.to_string(),
            cwd: get_s(item, CWD)?.to_string(),
        },
        created_ms: get_n_or_zero(item, BOUND_MS)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Seq;

    fn key(project: &str, session: &str, sub: Option<&str>) -> SessionKey {
        SessionKey {
            session: SessionRef {
                task_id: TaskId::new("t1").unwrap(),
                project_key: ProjectKey::new(project).unwrap(),
                session_id: SessionId::new(session).unwrap(),
            },
            subpath: sub.map(|s| Subpath::new(s).unwrap()),
        }
    }

    fn in_range(sk: &str, (lo, hi): &(String, String)) -> bool {
        lo.as_str() <= sk && sk <= hi.as_str()
    }

    #[test]
    fn sort_keys_follow_the_documented_layout() {
        assert_eq!(session_sk(&key("-w-t1", "s1", None)), "M#-w-t1#s1");
        assert_eq!(
            session_sk(&key("-w-t1", "s1", Some("subagents/agent-1"))),
            "S#-w-t1#s1#subagents/agent-1"
        );
    }

    #[test]
    fn session_ranges_hold_exactly_one_projects_main_transcripts_after_the_cursor() {
        let all = sessions_range(&ProjectKey::new("p").unwrap(), None);
        for inside in ["s", "s-a", "-", "Z.9_x"] {
            assert!(
                in_range(&session_sk(&key("p", inside, None)), &all),
                "{inside}"
            );
        }
        for outside in [
            key("p-x", "s", None),
            key("pp", "s", None),
            key("P", "s", None),
            key("p", "s", Some("a")),
        ] {
            assert!(!in_range(&session_sk(&outside), &all), "{outside}");
        }
        let after = sessions_range(
            &ProjectKey::new("p").unwrap(),
            Some(&SessionId::new("s-b").unwrap()),
        );
        for (id, expected) in [
            ("s-a", false),
            ("s-b", false),
            ("s-b-", true),
            ("s-b.", true),
            ("s-b0", true),
            ("s-ba", true),
            ("s-c", true),
            ("s", false),
        ] {
            assert_eq!(
                in_range(&session_sk(&key("p", id, None)), &after),
                expected,
                "{id}"
            );
        }
    }

    #[test]
    fn subkey_ranges_hold_exactly_one_sessions_subkeys_after_the_cursor() {
        let session = key("p", "s1", None).session;
        let (lo, hi, prefix) = subkeys_range(&session, None);
        let range = (lo, hi);
        assert!(in_range(&session_sk(&key("p", "s1", Some("a/b"))), &range));
        assert!(!in_range(&session_sk(&key("p", "s1", None)), &range));
        assert!(!in_range(&session_sk(&key("p", "s1-x", Some("a"))), &range));
        assert!(!in_range(&session_sk(&key("p", "s", Some("a"))), &range));
        assert!(session_sk(&key("p", "s1", Some("a/b"))).starts_with(&prefix));
        let after = Subpath::new("a").unwrap();
        let (lo, hi, _) = subkeys_range(&session, Some(&after));
        let range = (lo, hi);
        for (sub, expected) in [("a", false), ("a/b", true), ("a-", true), ("b", true)] {
            assert_eq!(
                in_range(&session_sk(&key("p", "s1", Some(sub))), &range),
                expected,
                "{sub}"
            );
        }
    }

    #[test]
    fn records_round_trip_through_items() {
        let record = SessionRecord {
            head: Seq(7),
            parts: 7,
            bytes: 1234,
            mtime: 1_700_000_000_123,
            compacted_through: Seq(3),
            summary: Some(RawValue::from_string("{\"a\": [1, 2]}".into()).unwrap()),
            summary_version: 4,
            ..SessionRecord::default()
        };
        let k = key("p", "s1", Some("sub/x"));
        let item = session_item(&k, &record, 9).unwrap();
        assert!(matches!(item.get("head"), Some(AttributeValue::N(v)) if v == "7"));
        assert!(matches!(item.get("bytes"), Some(AttributeValue::N(v)) if v == "1234"));
        assert!(matches!(item.get(SUMMARY), Some(AttributeValue::S(v)) if v == "{\"a\": [1, 2]}"));
        let back = record_from_item(&item).unwrap();
        assert_eq!(back.version, 9);
        assert_eq!(back.value, record);
        let bare = session_item(&k, &SessionRecord::default(), 1).unwrap();
        assert_eq!(
            record_from_item(&bare).unwrap().value,
            SessionRecord::default()
        );
    }
}
