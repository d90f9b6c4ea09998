//! Loading a transcript: the newest snapshot, then the parts after it, read
//! with bounded parallel GETs and handed out in order as a stream, so memory
//! stays bounded by `load_concurrency` parts whatever the transcript's size.
//!
//! Every object is verified against its stored CRC32C; a mismatch (or no
//! checksum at all) is an error, never served. Small transcripts are read and
//! verified completely before the first byte is returned, so a bad part is a
//! clean error status; larger ones are streamed, and a later mismatch ends
//! the stream with an error (the client sees a broken transfer).

use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::{keys, Engine};
use crate::backend::{ObjectPort, PortError};
use crate::domain::{Seq, SessionKey};
use crate::error::Error;
use crate::metrics::METRICS;

/// A load's output: chunks of complete JSONL lines, one entry per line.
pub type LoadStream = BoxStream<'static, Result<Bytes, Error>>;

/// Transcripts up to this size are verified completely before responding.
const PREFETCH_BYTES: u64 = 4 * 1024 * 1024;

/// A load ready to stream.
pub struct Loaded {
    /// The last part the load covers.
    pub head: Seq,
    /// The entries, in order.
    pub stream: LoadStream,
}

/// One object to read, in order.
#[derive(Clone, Debug)]
struct Piece {
    key: String,
    size: u64,
}

impl Engine {
    /// Opens a load of every entry in parts after `after` (0 for all), or
    /// `None` when the key has no parts at all.
    pub async fn load(&self, key: &SessionKey, after: Seq) -> Result<Option<Loaded>, Error> {
        let dir = keys::transcript_dir(key);
        let (pieces, head) = self.plan(&dir, after).await?;
        if pieces.is_empty() && head == Seq::ZERO && !self.exists(&dir).await? {
            return Ok(None);
        }
        METRICS.loads.fetch_add(1, Ordering::Relaxed);
        let objects = self.inner.objects.clone();
        let total: u64 = pieces.iter().map(|p| p.size).sum();
        let stream = stream::iter(pieces)
            .map(move |piece| read_verified(objects.clone(), piece))
            .buffered(self.inner.config.load_concurrency.max(1));
        let stream: LoadStream = if total <= PREFETCH_BYTES {
            let chunks: Vec<Bytes> = stream.try_collect().await?;
            stream::iter(chunks.into_iter().map(Ok)).boxed()
        } else {
            stream.boxed()
        };
        Ok(Some(Loaded { head, stream }))
    }

    /// Lists what a load must read: the parts after `after`, in order, and the
    /// highest part seen (at least `after` when anything at all exists).
    async fn plan(&self, dir: &str, after: Seq) -> Result<(Vec<Piece>, Seq), Error> {
        let mut pieces = Vec::new();
        let mut head = Seq::ZERO;
        let mut start = keys::part_key(dir, after);
        'pages: loop {
            let page = self.inner.objects.list(dir, Some(&start), false).await?;
            for item in &page.items {
                match keys::parse(dir, &item.key) {
                    Some(keys::ObjectKind::Part(seq)) => {
                        head = seq;
                        pieces.push(Piece {
                            key: item.key.clone(),
                            size: item.size,
                        });
                    }
                    Some(keys::ObjectKind::Snapshot(_)) => break 'pages,
                    None => {}
                }
            }
            match page.items.last() {
                Some(last) if page.more => start = last.key.clone(),
                _ => break,
            }
        }
        if head == Seq::ZERO && after > Seq::ZERO && self.exists(dir).await? {
            head = after;
        }
        Ok((pieces, head))
    }

    /// Whether any part or snapshot exists in `dir`.
    async fn exists(&self, dir: &str) -> Result<bool, Error> {
        let page = self.inner.objects.list(dir, None, false).await?;
        Ok(page
            .items
            .iter()
            .any(|item| keys::parse(dir, &item.key).is_some()))
    }
}

/// Reads one whole object and checks it against its stored CRC32C.
async fn read_verified(
    objects: std::sync::Arc<dyn ObjectPort>,
    piece: Piece,
) -> Result<Bytes, Error> {
    let Some(mut body) = objects.get(&piece.key).await? else {
        return Err(Error::Conflict(format!(
            "{} vanished during the load; retry",
            piece.key
        )));
    };
    let mut buf = BytesMut::with_capacity(body.size as usize);
    while let Some(chunk) = body.stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let actual = crc32c::crc32c(&buf);
    match body.crc32c {
        Some(stored) if stored == actual => Ok(buf.freeze()),
        Some(stored) => Err(checksum_error(format!(
            "{}: stored CRC32C {stored:08x}, computed {actual:08x}",
            piece.key
        ))),
        None => Err(checksum_error(format!("{}: no CRC32C stored", piece.key))),
    }
}

fn checksum_error(message: String) -> Error {
    METRICS.checksum_failures.fetch_add(1, Ordering::Relaxed);
    tracing::error!(%message, "checksum verification failed");
    PortError::ChecksumMismatch(message).into()
}
