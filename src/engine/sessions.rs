//! Session-level operations: listing, summaries and deletion.

use serde_json::value::RawValue;

use super::{keys, now_ms, Engine};
use crate::backend::{Page, SessionRecord};
use crate::domain::{ProjectKey, SessionId, SessionKey, SessionRef, TaskId};
use crate::error::Error;

/// One main transcript in a listing.
#[derive(Clone, Debug)]
pub struct SessionListing {
    /// The session.
    pub session_id: SessionId,
    /// Its last write time, epoch ms.
    pub mtime: u64,
    /// When its summary was last stored, epoch ms (0 when none).
    pub summary_mtime: u64,
    /// Its stored summary, if any.
    pub summary: Option<Box<RawValue>>,
}

/// A session's summary and the version to compare-and-set against.
#[derive(Clone, Debug)]
pub struct SummaryView {
    /// The version to send as `expected_version` with the next update.
    pub version: u64,
    /// The stored data, verbatim.
    pub data: Box<RawValue>,
    /// When the summary was stored, epoch ms, on the clock of the session's mtime.
    pub mtime: u64,
}

pub(super) async fn list(
    engine: &Engine,
    task: &TaskId,
    project: &ProjectKey,
    start_after: Option<&SessionId>,
    limit: usize,
) -> Result<Page<SessionListing>, Error> {
    let page = engine
        .inner
        .catalog
        .list_sessions(task, project, start_after, limit)
        .await?;
    Ok(Page {
        items: page
            .items
            .into_iter()
            // A record whose transcript has no parts yet (summary only) is no session.
            .filter(|(_, rec)| rec.head > crate::domain::Seq::ZERO)
            .map(|(session_id, rec)| SessionListing {
                session_id,
                mtime: rec.mtime,
                summary_mtime: rec.summary_mtime,
                summary: rec.summary,
            })
            .collect(),
        more: page.more,
    })
}

/// The stored summary; `None` when the session has none (never written, or
/// deleted since), which a compare-and-set addresses as version 0.
pub(super) async fn summary(
    engine: &Engine,
    session: &SessionRef,
) -> Result<Option<SummaryView>, Error> {
    let key = SessionKey::main(session.clone());
    let record = engine.inner.catalog.get_session(&key).await?;
    Ok(record.and_then(|r| {
        let value = r.value;
        value.summary.map(|data| SummaryView {
            version: value.summary_version,
            data,
            mtime: value.summary_mtime,
        })
    }))
}

pub(super) async fn put_summary(
    engine: &Engine,
    session: &SessionRef,
    data: Box<RawValue>,
    expected_version: u64,
    writer_epoch: Option<u64>,
) -> Result<u64, Error> {
    super::check_summary(data.get())?;
    engine.check_writer(&session.task_id, writer_epoch).await?;
    let key = SessionKey::main(session.clone());
    let lock = engine.head_lock(&key);
    let mut head = lock.lock().await;
    // Our cached record goes stale either way; the next append re-reads it.
    head.loaded = false;
    // A concurrent append (from another instance) only makes us re-read;
    // the summary version alone decides the outcome.
    let stored = engine
        .update_record(&key, |current| {
            let mut record = current.cloned().unwrap_or_default();
            if !record.summary_matches(expected_version) {
                let stored = match &record.summary {
                    Some(_) => format!("at version {}", record.summary_version),
                    None => "absent (expect version 0)".to_string(),
                };
                return Err(Error::SummaryConflict(format!(
                    "the summary is {stored}, not at version {expected_version}; \
                     read it again, fold onto it and retry"
                )));
            }
            record.summary = Some(data.clone());
            record.summary_version += 1;
            // The SDK's contract: the sidecar's storage write time, on the
            // clock of the session's mtime (never before it, so a summary
            // written after the last append does not read as stale).
            record.summary_mtime = now_ms().max(record.mtime);
            Ok(Some(record))
        })
        .await?;
    Ok(stored.map_or(0, |r| r.summary_version))
}

pub(super) async fn delete(
    engine: &Engine,
    key: &SessionKey,
    writer_epoch: Option<u64>,
) -> Result<(), Error> {
    engine.check_writer(key.task_id(), writer_epoch).await?;
    // No compaction may write a snapshot into what we are deleting.
    let compaction = engine.compaction_lock(&key.session);
    let _compaction = compaction.lock().await;
    let catalog = &engine.inner.catalog;
    // Every transcript this delete removes, main key first: hold all their
    // heads so no append interleaves, and mark them stale when done.
    let mut doomed = vec![key.clone()];
    if key.subpath.is_none() {
        let mut after = None;
        loop {
            let page = catalog
                .list_subkeys(&key.session, after.as_ref(), 1000)
                .await?;
            doomed.extend(page.items.iter().map(|sub| SessionKey {
                session: key.session.clone(),
                subpath: Some(sub.clone()),
            }));
            match page.items.last() {
                Some(last) if page.more => after = Some(last.clone()),
                _ => break,
            }
        }
        doomed.extend(engine.cached_keys(&key.session));
    }
    doomed.sort();
    doomed.dedup();
    let mut heads = Vec::with_capacity(doomed.len());
    for k in &doomed {
        heads.push(engine.head_lock(k).lock_owned().await);
    }
    let result = delete_locked(engine, key, &doomed).await;
    for head in &mut heads {
        head.loaded = false;
    }
    result
}

async fn delete_locked(
    engine: &Engine,
    key: &SessionKey,
    doomed: &[SessionKey],
) -> Result<(), Error> {
    let objects = engine.inner.objects.clone();
    let catalog = &engine.inner.catalog;
    // Objects first: if we stop half-way the catalog still lists the key and a
    // second delete finishes the job; the reverse order could resurrect it.
    let (dir, recursive) = match &key.subpath {
        None => (keys::session_dir(&key.session), true),
        Some(_) => (keys::transcript_dir(key), false),
    };
    loop {
        let page = objects.list(&dir, None, recursive).await?;
        if page.items.is_empty() {
            break;
        }
        let more = page.more;
        engine
            .delete_objects(page.items.into_iter().map(|item| item.key).collect())
            .await?;
        if !more {
            break;
        }
    }
    if key.subpath.is_none() {
        for subkey in doomed.iter().filter(|k| k.subpath.is_some()) {
            catalog.delete_session(subkey).await?;
        }
        return retire_main_record(engine, key).await;
    }
    catalog.delete_session(key).await?;
    Ok(())
}

/// Replaces a deleted main transcript's record with an empty one whose
/// summary version moved on, so a client holding an old version can never
/// overwrite a summary written after the delete.
async fn retire_main_record(engine: &Engine, key: &SessionKey) -> Result<(), Error> {
    engine
        .update_record(key, |current| {
            Ok(current.map(|r| SessionRecord {
                summary_version: r.summary_version + 1,
                ..SessionRecord::default()
            }))
        })
        .await?;
    Ok(())
}
