//! Session-level operations: listing, summaries and deletion.

use futures::TryStreamExt as _;
use serde_json::value::RawValue;

use super::{keys, Engine};
use crate::backend::Page;
use crate::domain::{ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId};
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
            // The SDK's contract: the sidecar's storage write time, on the
            // clock of the session's mtime (never before it, so a summary
            // written after the last append does not read as stale). It
            // stands whether or not an append counted ahead of its part lands.
            let (version, mtime) = (
                record.summary_version + 1,
                engine.now_ms().max(record.mtime),
            );
            record.change_both(|r| {
                r.summary = Some(data.clone());
                r.summary_version = version;
                r.summary_mtime = mtime;
            });
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
    // Every transcript this delete closes, main key last: hold all their
    // heads so no append of this instance interleaves, and mark them stale.
    let mut doomed = Vec::new();
    if key.subpath.is_none() {
        doomed.extend(subkeys(engine, &key.session).await?);
    }
    doomed.sort();
    doomed.dedup();
    doomed.retain(|k| k != key);
    doomed.push(key.clone());
    let mut heads = Vec::with_capacity(doomed.len());
    for k in &doomed {
        heads.push(engine.head_lock(k).lock_owned().await);
    }
    let mut result = Ok(());
    for k in &doomed {
        result = close(engine, k).await;
        if result.is_err() {
            break;
        }
    }
    for head in &mut heads {
        head.loaded = false;
    }
    result
}

/// Closes the current incarnation of one transcript and schedules the
/// deletion of its objects after the grace period.
async fn close(engine: &Engine, key: &SessionKey) -> Result<(), Error> {
    let record = engine.inner.catalog.get_session(key).await?;
    let incarnation = match record.as_ref().map(|r| r.value.incarnation) {
        Some(n) if n > 0 => n,
        _ if engine.has_objects(&keys::incarnation_dir(key, 1)).await? => 1,
        _ if engine.has_objects(&keys::incarnation_dir(key, 0)).await? => 0,
        // Nothing stored in any incarnation; a main record keeps its summary
        // version moving, so no version seen before ever matches again.
        Some(_) => return retire_empty(engine, key).await,
        None => return Ok(()),
    };
    engine
        .close_incarnation(key, incarnation, key.subpath.is_none())
        .await?;
    engine.spawn_purge(key.clone(), incarnation);
    Ok(())
}

/// A record with nothing stored: a delete only moves its summary on.
async fn retire_empty(engine: &Engine, key: &SessionKey) -> Result<(), Error> {
    if key.subpath.is_some() {
        return Ok(());
    }
    engine
        .update_record(key, |current| {
            Ok(current.map(|r| {
                let version = r.summary_version + 1;
                let mut next = r.clone();
                next.change_both(|r| {
                    r.summary = None;
                    r.summary_version = version;
                    r.summary_mtime = 0;
                });
                next
            }))
        })
        .await?;
    Ok(())
}

/// Every subkey of a session: recorded in the catalog, cached here, or
/// present in storage without a record (a first write whose record failed).
async fn subkeys(engine: &Engine, session: &SessionRef) -> Result<Vec<SessionKey>, Error> {
    let catalog = &engine.inner.catalog;
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = catalog.list_subkeys(session, after.as_ref(), 1000).await?;
        found.extend(page.items.iter().map(|(sub, _)| SessionKey {
            session: session.clone(),
            subpath: Some(sub.clone()),
        }));
        match page.items.last() {
            Some((last, _)) if page.more => after = Some(last.clone()),
            _ => break,
        }
    }
    found.extend(
        engine
            .cached_keys(session)
            .into_iter()
            .filter(|k| k.subpath.is_some()),
    );
    let root = keys::session_dir(session);
    let mut listing = engine.inner.objects.list_all(&root, None, true);
    while let Some(item) = listing.try_next().await? {
        let Some((dir, _)) = item.key.rsplit_once('/') else {
            continue;
        };
        let dir = format!("{dir}/");
        let base = keys::split_incarnation(&dir).0;
        let rest = base
            .strip_prefix(root.as_str())
            .and_then(|r| r.strip_suffix('/'));
        if let Some(sub) = rest.filter(|r| !r.is_empty()) {
            if let Ok(sub) = Subpath::new(sub) {
                found.push(SessionKey {
                    session: session.clone(),
                    subpath: Some(sub),
                });
            }
        }
    }
    Ok(found)
}
