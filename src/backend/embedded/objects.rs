//! Objects as files under `{data_dir}/objects`.
//!
//! A put writes the body and an 8-byte footer (`TGC1` + CRC32C, big-endian)
//! to a staging file, fsyncs it, hard-links it to its final name and fsyncs
//! the directory. `link(2)` fails with `EEXIST` when the name is taken, which
//! makes the create atomic, and no reader can open a half-written object.

use std::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Listed, ObjectBody, ObjectPort, Page, PortError};

const FOOTER_MAGIC: &[u8; 4] = b"TGC1";
const FOOTER_LEN: u64 = 8;
const READ_CHUNK: usize = 256 * 1024;
const PAGE_LIMIT: usize = 10_000;

/// The embedded object store.
#[derive(Clone, Debug)]
pub struct FsObjects {
    inner: Arc<Dirs>,
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
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let root = data_dir.join("objects");
        let staging = data_dir.join("staging");
        std::fs::create_dir_all(&root)?;
        if staging.exists() {
            std::fs::remove_dir_all(&staging)?;
        }
        std::fs::create_dir_all(&staging)?;
        Ok(Self {
            inner: Arc::new(Dirs { root, staging }),
        })
    }

    /// The file that holds `key`.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.inner.root.join(key)
    }
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

fn put_blocking(dirs: &Dirs, key: &str, body: &[u8], crc: u32) -> Result<(), PortError> {
    let final_path = dirs.root.join(key);
    let parent = final_path
        .parent()
        .ok_or_else(|| PortError::other(format!("object key {key:?} has no directory")))?
        .to_path_buf();
    let staging_path = dirs.staging.join(ulid::Ulid::new().to_string());
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging_path)
            .map_err(|e| io_err("create staging file", e))?;
        file.write_all(body)
            .and_then(|_| file.write_all(FOOTER_MAGIC))
            .and_then(|_| file.write_all(&crc.to_be_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| io_err("write staging file", e))?;
        // A concurrent delete may remove an emptied directory between our
        // create and link; creating again and retrying once covers that.
        for attempt in 0..3 {
            create_dirs_durably(&dirs.root, &parent).map_err(|e| io_err("create directory", e))?;
            match std::fs::hard_link(&staging_path, &final_path) {
                Ok(()) => {
                    sync_dir(&parent).map_err(|e| io_err("sync directory", e))?;
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
    })();
    let _ = std::fs::remove_file(&staging_path);
    result
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
        let dirs = self.inner.clone();
        let key = key.to_string();
        blocking(move || put_blocking(&dirs, &key, &body, crc32c)).await
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError> {
        check_key(key)?;
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
        let dir = dir.to_string();
        let start_after = start_after.map(str::to_string);
        blocking(move || list_blocking(&root, &dir, start_after.as_deref(), recursive)).await
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        check_key(key)?;
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
        blocking(move || {
            std::fs::read_dir(&root)
                .map(|_| ())
                .map_err(|e| io_err(&format!("data directory {}", root.display()), e))
        })
        .await
    }
}
