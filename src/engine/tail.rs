//! Tailing a transcript: reading what follows a stream offset, and waiting
//! for more. The HTTP layer serves this as a Durable Streams stream; nothing
//! here knows HTTP.
//!
//! A [`StreamOffset`] names a transcript's incarnation and the last part a
//! reader has seen, so a delete and a re-create is never read as more of
//! the same stream. Reads go through [`Engine::load`] (snapshot plus parts,
//! checked like every load); waiting watches the catalog's record of the
//! key. Each instance polls the record once per interval for each key that
//! has readers, whatever their number, and wakes them when it changes: an
//! append through any instance reaches them within about one interval. No
//! state is shared between instances but the stores.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Engine;
use crate::domain::{Seq, SessionKey};
use crate::engine::LoadStream;
use crate::error::Error;

/// How long a reader waits before reading again when the catalog counts
/// parts storage did not show yet (an append whose record landed before its
/// part); doubled up to [`MAX_RETRY`] while nothing changes.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// A position in a transcript's stream: after part `seq` of incarnation
/// `incarnation`. On the wire it is `{incarnation:016x}_{seq:016x}`
/// (persisted by clients: never change the format); the fixed width keeps
/// offsets of one stream in lexicographic order, as the protocol requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamOffset {
    /// The transcript's incarnation (one more after every delete).
    pub incarnation: u64,
    /// The last part read; 0 before the first.
    pub seq: Seq,
}

impl StreamOffset {
    /// Parses an offset this gateway produced; anything else is
    /// [`Error::InvalidOffset`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        let malformed = || {
            Error::InvalidOffset(format!(
                "offset {:?} is not an offset this stream produced: use -1 (the beginning), \
                 now (the tail) or a Stream-Next-Offset value",
                text.chars().take(64).collect::<String>()
            ))
        };
        let hex = |s: &str| {
            (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| u64::from_str_radix(s, 16).ok())
                .flatten()
        };
        let (incarnation, seq) = text.split_once('_').ok_or_else(malformed)?;
        Ok(Self {
            incarnation: hex(incarnation).ok_or_else(malformed)?,
            seq: Seq(hex(seq).ok_or_else(malformed)?),
        })
    }
}

impl fmt::Display for StreamOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}_{:016x}", self.incarnation, self.seq.0)
    }
}

/// Where a stream read starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamStart {
    /// The first entry (`-1`).
    Beginning,
    /// The tail as it is now: nothing already written (`now`).
    Now,
    /// After an offset a previous read returned.
    After(StreamOffset),
}

/// What a stream read found.
pub struct StreamRead {
    /// The entries after the start, as JSONL chunks; `None` when there were
    /// none.
    pub entries: Option<LoadStream>,
    /// The offset to read from next: after the last entry handed out.
    pub next: StreamOffset,
}

/// The catalog's record of a key as the poller last read it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mark {
    incarnation: u64,
    head: Seq,
    version: u64,
}

impl Mark {
    /// Whether the record counts something a reader at `at` has not read.
    fn past(&self, at: &StreamOffset) -> bool {
        self.incarnation != at.incarnation || self.head > at.seq
    }
}

/// One shared poller per key with readers in this instance.
#[derive(Default)]
pub(super) struct Watchers {
    /// Keys being polled, with the channel their readers watch. A poller
    /// removes its key (under this lock) once no reader is left, so a
    /// reader subscribing under the same lock never joins a poller that is
    /// about to stop.
    keys: Mutex<Pollers>,
}

/// Each polled key with the channel its readers watch.
type Pollers = HashMap<SessionKey, watch::Sender<Option<Mark>>>;

/// A reader's subscription to its key's poller; dropping it unsubscribes.
pub struct StreamWatch {
    key: SessionKey,
    marks: watch::Receiver<Option<Mark>>,
}

/// Takes `key`'s poller `tx` out of `keys`, unless another has replaced it.
fn forget_poller(keys: &mut Pollers, key: &SessionKey, tx: &watch::Sender<Option<Mark>>) {
    if keys.get(key).is_some_and(|t| t.same_channel(tx)) {
        keys.remove(key);
    }
}

impl Engine {
    /// Reads the entries of `key` after `start` as they are now. A key that
    /// was never written, or is deleted, is [`Error::NotFound`]; an offset
    /// of another incarnation (deleted and written again since) is
    /// [`Error::OffsetGone`].
    pub async fn stream_read(
        &self,
        key: &SessionKey,
        start: StreamStart,
    ) -> Result<StreamRead, Error> {
        let absent = || Error::not_found(format!("no transcript at {key}"));
        let after = match start {
            StreamStart::Beginning => Seq::ZERO,
            StreamStart::After(offset) => offset.seq,
            // The catalog's head as a hint (parts after it, if it lags
            // storage, are read and skipped below).
            StreamStart::Now => match self.inner.catalog.get_session(key).await? {
                Some(r) if r.value.incarnation > 0 => r.value.confirmed().head,
                _ => Seq::ZERO,
            },
        };
        let loaded = self.load(key, after).await?.ok_or_else(absent)?;
        if let StreamStart::After(offset) = start {
            if offset.incarnation != loaded.incarnation {
                return Err(Error::OffsetGone(format!(
                    "offset {offset} belongs to an earlier life of {key} (deleted and written \
                     again since); read it again from -1"
                )));
            }
        }
        let next = StreamOffset {
            incarnation: loaded.incarnation,
            seq: loaded.head.max(after),
        };
        if start == StreamStart::Now {
            // Dropping the stream stops its reads.
            return Ok(StreamRead {
                entries: None,
                next,
            });
        }
        let mut entries = loaded.stream;
        let entries = entries
            .next()
            .await
            .map(|first| stream::iter([first]).chain(entries).boxed());
        Ok(StreamRead { entries, next })
    }

    /// Subscribes to `key`'s poller, starting one if the key has none.
    pub fn stream_watch(&self, key: &SessionKey) -> StreamWatch {
        let mut keys = self.watched();
        let marks = match keys.get(key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                keys.insert(key.clone(), tx.clone());
                let engine = self.clone();
                let polled = key.clone();
                self.inner
                    .background
                    .spawn(async move { engine.poll_head(polled, tx).await });
                rx
            }
        };
        StreamWatch {
            key: key.clone(),
            marks,
        }
    }

    /// Waits for entries after `at`, then reads them; `None` when `until`
    /// passes first. Errors as [`Engine::stream_read`].
    pub async fn stream_wait(
        &self,
        watch: &mut StreamWatch,
        at: StreamOffset,
        until: Instant,
    ) -> Result<Option<StreamRead>, Error> {
        let every = self.inner.config.tail_poll_interval;
        let (mut retry, mut tried) = (every, None);
        loop {
            let mark = *watch.marks.borrow_and_update();
            let wake = match mark.filter(|m| m.past(&at)) {
                Some(mark) => {
                    let read = self.stream_read(&watch.key, StreamStart::After(at)).await?;
                    if read.entries.is_some() || read.next != at {
                        return Ok(Some(read));
                    }
                    // The record counts a part storage does not show yet (an
                    // append's record lands with its part, sometimes first):
                    // read again soon, less often while the record stays
                    // the same, at once when it changes.
                    retry = match tried == Some(mark) {
                        true => (retry * 2).min(MAX_RETRY),
                        false => every,
                    };
                    tried = Some(mark);
                    (Instant::now() + retry).min(until)
                }
                None => until,
            };
            match tokio::time::timeout_at(wake, watch.marks.changed()).await {
                // The poller stopped: the engine is shutting down.
                Ok(Err(_)) => return Err(Error::Draining),
                Ok(Ok(())) => {}
                Err(_) if Instant::now() >= until => return Ok(None),
                Err(_) => {}
            }
        }
    }

    /// Reads `key`'s catalog record every poll interval and publishes it
    /// while anyone watches; stops when the last reader has gone or the
    /// engine stops.
    async fn poll_head(self, key: SessionKey, tx: watch::Sender<Option<Mark>>) {
        let every = self.inner.config.tail_poll_interval;
        let stopping = self.inner.stopping.clone();
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopping.cancelled() => break,
                }
            }
            {
                let mut keys = self.watched();
                if tx.receiver_count() == 0 {
                    forget_poller(&mut keys, &key, &tx);
                    return;
                }
            }
            match self.inner.catalog.get_session(&key).await {
                Ok(record) => {
                    let mark = record.map(|r| Mark {
                        incarnation: r.value.incarnation,
                        head: r.value.head,
                        version: r.version,
                    });
                    tx.send_if_modified(|seen| {
                        let changed = *seen != mark;
                        *seen = mark;
                        changed
                    });
                }
                Err(e) => {
                    tracing::debug!(key = %key, error = %crate::error::chain(&e), "tail poll failed; polling on");
                }
            }
        }
        forget_poller(&mut self.watched(), &key, &tx);
    }

    /// The keys polled for readers (a poisoned lock still holds a usable map).
    fn watched(&self) -> MutexGuard<'_, Pollers> {
        (self.inner.watchers.keys.lock()).unwrap_or_else(|p| p.into_inner())
    }

    /// Keys this instance polls for readers now.
    pub fn tailed_keys(&self) -> usize {
        self.watched().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_sort_like_their_positions() {
        let a = StreamOffset {
            incarnation: 1,
            seq: Seq(9),
        };
        let b = StreamOffset {
            incarnation: 1,
            seq: Seq(10),
        };
        assert_eq!(a.to_string(), "0000000000000001_0000000000000009");
        assert_eq!(StreamOffset::parse(&a.to_string()).unwrap(), a);
        assert!(a.to_string() < b.to_string());
        assert!(a < b);
    }

    #[test]
    fn malformed_offsets_are_refused() {
        for bad in [
            "",
            "5",
            "-2",
            "0000000000000001",
            "0000000000000001_000000000000000",
            "0000000000000001_000000000000000G",
            "0000000000000001_000000000000000A",
            "+000000000000001_0000000000000001",
            "0000000000000001_0000000000000001_",
        ] {
            let err = StreamOffset::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidOffset(_)), "{bad:?}: {err:?}");
        }
    }
}
