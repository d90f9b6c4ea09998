//! Objects under `{data_dir}`: small ones (parts, short snapshots) as rows of
//! `objects.redb`, large ones as files under `objects/`.
//!
//! A small object (at most [`INLINE_MAX`] bytes) is a row holding the body
//! and its CRC32C (big-endian), written through the group commit (see
//! `group.rs`): many concurrent appends share one fsync instead of paying two
//! each (file and directory), which is what bounds durable appends per core.
//!
//! A large object's body and an 8-byte footer (`TGC1` + CRC32C, big-endian)
//! go to a staging file, which is fsynced, hard-linked to its final name and
//! its directory fsynced. `link(2)` fails with `EEXIST` when the name is
//! taken, and no reader can open a half-written object.
//!
//! Create-if-absent holds across the two: every create is decided on the
//! writer thread, which refuses a key that is already a row or a file (files
//! written before rows existed are read, listed and deleted as ever).

use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::group::{GroupCommit, WRITE_QUEUE};
use crate::backend::{Listed, ObjectBody, ObjectPort, Page, PortError};

const FOOTER_MAGIC: &[u8; 4] = b"TGC1";
const FOOTER_LEN: u64 = 8;
const READ_CHUNK: usize = 256 * 1024;
const PAGE_LIMIT: usize = 10_000;
/// The largest object kept as a row rather than a file.
pub const INLINE_MAX: usize = 1 << 20;
/// The small objects' database inside the data directory.
pub const OBJECTS_FILE: &str = "objects.redb";
/// Key -> body followed by its CRC32C (4 bytes, big-endian).
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Small objects are read once, by loads: a small page cache is enough.
const CACHE_BYTES: usize = 16 << 20;
const WHAT: &str = "embedded object store";

/// The embedded object store.
#[derive(Clone)]
pub struct FsObjects {
    inner: Arc<Dirs>,
    rows: Arc<GroupCommit>,
}

impl std::fmt::Debug for FsObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsObjects")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Dirs {
    /// Final objects live here, one file per key.
    root: PathBuf,
    /// Staging files; on the same filesystem as `root` so `link` works.
    staging: PathBuf,
}

impl FsObjects {
    /// Opens (creating if needed) the store under `data_dir`, clearing any
    /// staging files a crash left behind.
    pub fn open(data_dir: &Path) -> Result<Self, PortError> {
        let root = data_dir.join("objects");
        let staging = data_dir.join("staging");
        let dirs = || -> io::Result<()> {
            std::fs::create_dir_all(&root)?;
            if staging.exists() {
                std::fs::remove_dir_all(&staging)?;
            }
            std::fs::create_dir_all(&staging)
        };
        dirs().map_err(|e| io_err(&format!("data directory {}", data_dir.display()), e))?;
        let setup = |txn: &WriteTransaction| txn.open_table(OBJECTS).map(|_| ()).map_err(row_err);
        let rows = GroupCommit::open(
            &data_dir.join(OBJECTS_FILE),
            WHAT,
            Some(CACHE_BYTES),
            WRITE_QUEUE,
            setup,
            None,
        )?;
        Ok(Self {
            inner: Arc::new(Dirs { root, staging }),
            rows: Arc::new(rows),
        })
    }

    /// The file that holds `key`, when it is large.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.inner.root.join(key)
    }

    /// Whether `key` is held as a row (a small object).
    pub async fn is_row(&self, key: &str) -> Result<bool, PortError> {
        let key = key.to_string();
        self.rows
            .read(move |txn| Ok(read_row(txn, &key)?.is_some()))
            .await
    }

    /// Creates a small object as a row, unless the key is a row or a file.
    async fn put_row(&self, key: &str, body: Bytes, crc: u32) -> Result<(), PortError> {
        let key = key.to_string();
        let path = self.path_of(&key);
        // Only a storage error of the batch is returned as such (it aborts
        // the batch); this write's own refusals come back inside `Ok`.
        self.rows
            .write(move |txn| {
                let mut t = txn.open_table(OBJECTS).map_err(row_err)?;
                if t.get(key.as_str()).map_err(row_err)?.is_some() {
                    return Ok(Err(PortError::AlreadyExists(key)));
                }
                match exists(&path) {
                    Ok(false) => {}
                    Ok(true) => return Ok(Err(PortError::AlreadyExists(key))),
                    Err(e) => return Ok(Err(e)),
                }
                let mut value = Vec::with_capacity(body.len() + 4);
                value.extend_from_slice(&body);
                value.extend_from_slice(&crc.to_be_bytes());
                t.insert(key.as_str(), value.as_slice()).map_err(row_err)?;
                Ok(Ok(()))
            })
            .await?
    }

    /// Creates a large object as a file: staged and fsynced here, linked on
    /// the writer thread unless the key is a row.
    async fn put_file(&self, key: &str, body: Bytes, crc: u32) -> Result<(), PortError> {
        let final_path = self.path_of(key);
        let parent = final_path
            .parent()
            .ok_or_else(|| PortError::other(format!("object key {key:?} has no directory")))?
            .to_path_buf();
        let staging_path = self.inner.staging.join(ulid::Ulid::new().to_string());
        let staged = staging_path.clone();
        blocking(move || stage(&staged, &body, crc)).await?;
        let (root, key) = (self.inner.root.clone(), key.to_string());
        let staged = staging_path.clone();
        let linked = self
            .rows
            .write(move |txn| {
                let t = txn.open_table(OBJECTS).map_err(row_err)?;
                if t.get(key.as_str()).map_err(row_err)?.is_some() {
                    return Ok(Err(PortError::AlreadyExists(key)));
                }
                Ok(link(&root, &staged, &final_path, &parent, &key))
            })
            .await;
        let _ = std::fs::remove_file(&staging_path);
        linked?
    }
}

fn row_err(err: impl Into<redb::Error>) -> PortError {
    super::group::storage_err(WHAT, err)
}

fn exists(path: &Path) -> Result<bool, PortError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("stat object", e)),
    }
}

/// A small object's row: its body and CRC32C.
fn read_row(txn: &ReadTransaction, key: &str) -> Result<Option<(Bytes, u32)>, PortError> {
    let t = txn.open_table(OBJECTS).map_err(row_err)?;
    let Some(value) = t.get(key).map_err(row_err)? else {
        return Ok(None);
    };
    let value = value.value();
    let Some(split) = value.len().checked_sub(4) else {
        return Err(PortError::other(format!("object row {key:?} is truncated")));
    };
    let crc = u32::from_be_bytes([
        value[split],
        value[split + 1],
        value[split + 2],
        value[split + 3],
    ]);
    Ok(Some((Bytes::copy_from_slice(&value[..split]), crc)))
}

/// The first keys under `dir` after `start_after` held as rows, at most
/// `limit`, and whether more follow. Without `recursive` only keys directly
/// in `dir`: a subdirectory's keys are skipped with one seek.
fn list_rows(
    txn: &ReadTransaction,
    dir: &str,
    start_after: Option<&str>,
    recursive: bool,
    limit: usize,
) -> Result<Page<Listed>, PortError> {
    use std::ops::Bound;
    let t = txn.open_table(OBJECTS).map_err(row_err)?;
    // Every key under `dir` sorts before `dir` with its '/' raised to '0'.
    let end = format!("{}0", &dir[..dir.len() - 1]);
    let mut from = match start_after {
        Some(after) if after >= dir => Bound::Excluded(after.to_string()),
        _ => Bound::Included(dir.to_string()),
    };
    let mut items = Vec::new();
    'seek: loop {
        let range = (
            from.as_ref().map(String::as_str),
            Bound::Excluded(end.as_str()),
        );
        for row in t.range::<&str>(range).map_err(row_err)? {
            let (k, v) = row.map_err(row_err)?;
            let key = k.value();
            let rest = &key[dir.len()..];
            if let (false, Some(slash)) = (recursive, rest.find('/')) {
                // Past this subdirectory: its keys sort before `{sub}0`.
                from = Bound::Included(format!("{}{}0", dir, &rest[..slash]));
                continue 'seek;
            }
            if items.len() == limit {
                return Ok(Page { items, more: true });
            }
            items.push(Listed {
                key: key.to_string(),
                size: v.value().len().saturating_sub(4) as u64,
            });
        }
        return Ok(Page { items, more: false });
    }
}

/// One page from two sorted pages of disjoint keys: the page stops where
/// either source stopped early, so no key of the other is skipped.
fn merge_pages(a: Page<Listed>, b: Page<Listed>, limit: usize) -> Page<Listed> {
    let cut = [&a, &b]
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.items.last().map(|l| l.key.clone()))
        .min();
    let mut items: Vec<Listed> = a.items.into_iter().chain(b.items).collect();
    items.sort_unstable_by(|x, y| x.key.cmp(&y.key));
    let mut more = a.more || b.more;
    if let Some(cut) = cut {
        items.retain(|l| l.key <= cut);
    }
    if items.len() > limit {
        items.truncate(limit);
        more = true;
    }
    Page { items, more }
}

fn io_err(context: &str, err: io::Error) -> PortError {
    PortError::unavailable(context).caused_by(err)
}

fn check_key(key: &str) -> Result<(), PortError> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(PortError::other(format!("invalid object key {key:?}")))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an
/// entry so the new directories survive a crash. A concurrent delete may prune
/// a parent we just made; that is retried.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    let mut attempt = 0;
    loop {
        match create_dirs_once(root, dir) {
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => attempt += 1,
            other => return other,
        }
    }
}

fn create_dirs_once(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.is_dir() && cur != root {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Writes the body and its footer to a new staging file and fsyncs it.
fn stage(staging_path: &Path, body: &[u8], crc: u32) -> Result<(), PortError> {
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(staging_path)
            .map_err(|e| io_err("create staging file", e))?;
        file.write_all(body)
            .and_then(|_| file.write_all(FOOTER_MAGIC))
            .and_then(|_| file.write_all(&crc.to_be_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| io_err("write staging file", e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(staging_path);
    }
    written
}

/// Links a staged file to its final name (failing if the name is taken) and
/// fsyncs the directory.
fn link(
    root: &Path,
    staged: &Path,
    final_path: &Path,
    parent: &Path,
    key: &str,
) -> Result<(), PortError> {
    // A concurrent delete may remove an emptied directory between our
    // create and link; creating again and retrying covers that.
    for attempt in 0..3 {
        create_dirs_durably(root, parent).map_err(|e| io_err("create directory", e))?;
        match std::fs::hard_link(staged, final_path) {
            Ok(()) => {
                sync_dir(parent).map_err(|e| io_err("sync directory", e))?;
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(PortError::AlreadyExists(key.to_string()))
            }
            Err(e) if e.kind() == ErrorKind::NotFound && attempt < 2 => continue,
            Err(e) => return Err(io_err("link object", e)),
        }
    }
    Err(PortError::unavailable(format!("could not create {key}")))
}

fn open_blocking(path: &Path) -> Result<Option<(std::fs::File, u64, Option<u32>)>, PortError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open object", e)),
    };
    let len = file.metadata().map_err(|e| io_err("stat object", e))?.len();
    if len < FOOTER_LEN {
        return Ok(Some((file, len, None)));
    }
    let mut footer = [0u8; FOOTER_LEN as usize];
    file.seek(SeekFrom::Start(len - FOOTER_LEN))
        .and_then(|_| file.read_exact(&mut footer))
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(|e| io_err("read object footer", e))?;
    if &footer[..4] != FOOTER_MAGIC {
        // No footer: the file was written behind the store's back.
        return Ok(Some((file, len, None)));
    }
    let crc = u32::from_be_bytes([footer[4], footer[5], footer[6], footer[7]]);
    Ok(Some((file, len - FOOTER_LEN, Some(crc))))
}

fn list_blocking(
    root: &Path,
    dir: &str,
    start_after: Option<&str>,
    recursive: bool,
) -> Result<Page<Listed>, PortError> {
    let after = |key: &str| start_after.is_none_or(|a| key > a);
    // Names only (no stat), and only those after the cursor: a directory
    // whose keys all sort before it is not even read.
    let mut candidates: Vec<(String, std::path::PathBuf)> = Vec::new();
    let mut stack = vec![(root.join(dir), dir.to_string())];
    while let Some((path, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("list directory", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list directory", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // An entry deleted while we list is simply not listed.
            let ty = match entry.file_type() {
                Ok(ty) => ty,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("list directory", e)),
            };
            let key = format!("{prefix}{name}");
            if ty.is_dir() {
                let sub = format!("{key}/");
                let holds_later =
                    start_after.is_none_or(|a| sub.as_str() > a || a.starts_with(&sub));
                if recursive && holds_later {
                    stack.push((entry.path(), sub));
                }
            } else if ty.is_file() && after(&key) {
                candidates.push((key, entry.path()));
            }
        }
    }
    // The page is the smallest PAGE_LIMIT keys: select them, sort only them.
    let more = candidates.len() > PAGE_LIMIT;
    if more {
        candidates.select_nth_unstable_by(PAGE_LIMIT, |a, b| a.0.cmp(&b.0));
        candidates.truncate(PAGE_LIMIT);
    }
    candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut items = Vec::with_capacity(candidates.len());
    for (key, path) in candidates {
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat object", e)),
        };
        items.push(Listed {
            key,
            size: size.saturating_sub(FOOTER_LEN),
        });
    }
    Ok(Page { items, more })
}

/// Removes `dir` and its parents up to `root` while they are empty.
fn prune_empty_dirs(root: &Path, mut dir: &Path) {
    while dir != root && dir.starts_with(root) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PortError> + Send + 'static,
) -> Result<T, PortError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PortError::other("blocking task failed").caused_by(e))?
}

#[async_trait]
impl ObjectPort for FsObjects {
    async fn put_if_absent(&self, key: &str, body: Bytes, crc32c: u32) -> Result<(), PortError> {
        check_key(key)?;
        if body.len() <= INLINE_MAX {
            self.put_row(key, body, crc32c).await
        } else {
            self.put_file(key, body, crc32c).await
        }
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError> {
        check_key(key)?;
        let row_key = key.to_string();
        let row = self.rows.read(move |txn| read_row(txn, &row_key)).await?;
        if let Some((body, crc)) = row {
            return Ok(Some(ObjectBody {
                crc32c: Some(crc),
                size: body.len() as u64,
                stream: futures::stream::once(async move { Ok(body) }).boxed(),
            }));
        }
        let path = self.path_of(key);
        let Some((file, size, crc32c)) = blocking(move || open_blocking(&path)).await? else {
            return Ok(None);
        };
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), size);
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
            .map(|r| r.map_err(|e| io_err("read object", e)))
            .boxed();
        Ok(Some(ObjectBody {
            crc32c,
            size,
            stream,
        }))
    }

    async fn list(
        &self,
        dir: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError> {
        if !dir.ends_with('/') {
            return Err(PortError::other(format!(
                "list dir {dir:?} must end with '/'"
            )));
        }
        let root = self.inner.root.clone();
        let (rows_dir, rows_after) = (dir.to_string(), start_after.map(str::to_string));
        let dir = dir.to_string();
        let start_after = start_after.map(str::to_string);
        let files = blocking(move || list_blocking(&root, &dir, start_after.as_deref(), recursive));
        let rows = self.rows.read(move |txn| {
            list_rows(txn, &rows_dir, rows_after.as_deref(), recursive, PAGE_LIMIT)
        });
        let (files, rows) = tokio::try_join!(files, rows)?;
        Ok(merge_pages(files, rows, PAGE_LIMIT))
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        check_key(key)?;
        if self.is_row(key).await? {
            let row_key = key.to_string();
            self.rows
                .write(move |txn| {
                    let mut t = txn.open_table(OBJECTS).map_err(row_err)?;
                    t.remove(row_key.as_str()).map_err(row_err)?;
                    Ok(())
                })
                .await?;
        }
        let root = self.inner.root.clone();
        let path = self.path_of(key);
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("delete object", e)),
            }
            if let Some(parent) = path.parent() {
                match sync_dir(parent) {
                    // A concurrent delete already pruned the emptied directory.
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
                    other => other.map_err(|e| io_err("sync directory", e))?,
                }
                prune_empty_dirs(&root, parent);
            }
            Ok(())
        })
        .await
    }

    async fn check(&self) -> Result<(), PortError> {
        let root = self.inner.root.clone();
        self.rows
            .read(|txn| txn.open_table(OBJECTS).map(|_| ()).map_err(row_err))
            .await?;
        blocking(move || {
            std::fs::read_dir(&root)
                .map(|_| ())
                .map_err(|e| io_err(&format!("data directory {}", root.display()), e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(objects: &FsObjects, key: &str) -> Option<Vec<u8>> {
        let mut body = objects.get(key).await.unwrap()?;
        let mut out = Vec::new();
        while let Some(chunk) = body.stream.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(body.crc32c, Some(crc32c::crc32c(&out)), "{key}");
        Some(out)
    }

    async fn put(objects: &FsObjects, key: &str, body: Vec<u8>) -> Result<(), PortError> {
        let crc = crc32c::crc32c(&body);
        objects.put_if_absent(key, body.into(), crc).await
    }

    fn keys(page: &Page<Listed>) -> Vec<&str> {
        page.items.iter().map(|l| l.key.as_str()).collect()
    }

    #[tokio::test]
    async fn small_objects_are_rows_large_ones_files_and_a_key_is_created_once_across_both() {
        let dir = tempfile::tempdir().unwrap();
        let objects = FsObjects::open(dir.path()).unwrap();
        let (small, large) = (vec![b's'; 10], vec![b'l'; INLINE_MAX + 1]);
        put(&objects, "t/a", small.clone()).await.unwrap();
        put(&objects, "t/b", large.clone()).await.unwrap();
        assert!(objects.is_row("t/a").await.unwrap());
        assert!(!objects.path_of("t/a").exists());
        assert!(!objects.is_row("t/b").await.unwrap());
        assert!(objects.path_of("t/b").exists());
        // A key taken as a row refuses a file, and one taken as a file a row.
        for (key, body) in [("t/a", large.clone()), ("t/b", small.clone())] {
            match put(&objects, key, body).await {
                Err(PortError::AlreadyExists(k)) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        assert_eq!(read(&objects, "t/a").await, Some(small));
        assert_eq!(read(&objects, "t/b").await, Some(large));
        let page = objects.list("t/", None, false).await.unwrap();
        assert_eq!(keys(&page), ["t/a", "t/b"]);
        assert_eq!(page.items[1].size, INLINE_MAX as u64 + 1);
        objects.delete("t/a").await.unwrap();
        objects.delete("t/b").await.unwrap();
        assert_eq!(read(&objects, "t/a").await, None);
        assert_eq!(read(&objects, "t/b").await, None);
        assert!(objects
            .list("t/", None, true)
            .await
            .unwrap()
            .items
            .is_empty());
    }

    #[tokio::test]
    async fn files_written_before_rows_existed_are_read_listed_kept_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        // A data directory from before rows: a small object as a file.
        let body = b"{\"old\":true}\n".to_vec();
        let path = dir.path().join("objects/t/s/part-1");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut file = body.clone();
        file.extend_from_slice(FOOTER_MAGIC);
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        std::fs::write(&path, file).unwrap();
        let objects = FsObjects::open(dir.path()).unwrap();
        put(&objects, "t/s/part-2", b"new".to_vec()).await.unwrap();
        assert_eq!(read(&objects, "t/s/part-1").await, Some(body));
        assert!(matches!(
            put(&objects, "t/s/part-1", b"again".to_vec()).await,
            Err(PortError::AlreadyExists(_))
        ));
        let page = objects.list("t/s/", None, false).await.unwrap();
        assert_eq!(keys(&page), ["t/s/part-1", "t/s/part-2"]);
        objects.delete("t/s/part-1").await.unwrap();
        assert!(!path.exists());
        let page = objects.list("t/", None, true).await.unwrap();
        assert_eq!(keys(&page), ["t/s/part-2"]);
    }

    #[tokio::test]
    async fn a_listing_without_recursion_skips_rows_in_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        let objects = FsObjects::open(dir.path()).unwrap();
        for key in ["d/a", "d/b/x", "d/b/y", "d/c", "d/e/z", "d/f", "dz/other"] {
            put(&objects, key, key.as_bytes().to_vec()).await.unwrap();
        }
        let flat = objects.list("d/", None, false).await.unwrap();
        assert_eq!(keys(&flat), ["d/a", "d/c", "d/f"]);
        let deep = objects.list("d/", Some("d/b/x"), true).await.unwrap();
        assert_eq!(keys(&deep), ["d/b/y", "d/c", "d/e/z", "d/f"]);
    }

    fn page(keys: &[&str], more: bool) -> Page<Listed> {
        Page {
            items: keys
                .iter()
                .map(|k| Listed {
                    key: k.to_string(),
                    size: 0,
                })
                .collect(),
            more,
        }
    }

    #[test]
    fn a_merged_page_stops_where_either_source_stopped_early() {
        // Files stopped at "c" with more to come: "d" from the rows must wait
        // for the next page, or files between "c" and "d" would be skipped.
        let merged = merge_pages(page(&["a", "c"], true), page(&["b", "d"], false), 10);
        assert_eq!((keys(&merged), merged.more), (vec!["a", "b", "c"], true));
        // Both complete: everything, no more.
        let merged = merge_pages(page(&["a", "c"], false), page(&["b", "d"], false), 10);
        assert_eq!(
            (keys(&merged), merged.more),
            (vec!["a", "b", "c", "d"], false)
        );
        // Both complete but together over the limit: the first `limit`.
        let merged = merge_pages(page(&["a", "c"], false), page(&["b", "d"], false), 3);
        assert_eq!((keys(&merged), merged.more), (vec!["a", "b", "c"], true));
    }
}
