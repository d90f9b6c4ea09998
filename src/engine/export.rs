//! A task's every transcript as one stream of JSON lines, for a debugger or
//! a backup: each key's entries in order and in one block, main transcripts
//! before their subkeys, each line `{"key": {...}, "entry": {...}}` (the
//! shape of the end-of-task trace files). Read key by key with the load's
//! bounded memory, never the whole task at once.

use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::{Engine, LoadStream};
use crate::domain::{Seq, SessionKey, TaskId};
use crate::error::Error;

/// A line's `key`.
#[derive(Serialize)]
struct KeyView<'a> {
    project_key: &'a str,
    session_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subpath: Option<&'a str>,
}

/// `{"key":{...},"entry":` for `key`.
fn line_prefix(key: &SessionKey) -> Result<Bytes, Error> {
    let view = KeyView {
        project_key: key.session.project_key.as_str(),
        session_id: key.session.session_id.as_str(),
        subpath: key.subpath.as_ref().map(|s| s.as_str()),
    };
    let key_json = serde_json::to_string(&view)
        .map_err(|e| Error::internal(format!("encode an export key: {e}")))?;
    Ok(Bytes::from(format!("{{\"key\":{key_json},\"entry\":")))
}

/// Each JSONL line of `chunk` wrapped as `prefix` + line + `}`.
fn wrap(prefix: &[u8], chunk: &[u8]) -> Bytes {
    let lines = chunk.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut out = BytesMut::with_capacity(chunk.len() + 64);
    for line in lines {
        out.put_slice(prefix);
        out.put_slice(line);
        out.put_slice(b"}\n");
    }
    out.freeze()
}

impl Engine {
    /// Every transcript of `task` as JSON lines (see the module); `None`
    /// when the task holds none.
    pub async fn export_task(&self, task: &TaskId) -> Result<Option<LoadStream>, Error> {
        let keys = self.task_keys(task).await?;
        if keys.is_empty() {
            return Ok(None);
        }
        let engine = self.clone();
        let per_key = stream::iter(keys).then(move |key| {
            let engine = engine.clone();
            async move { engine.export_key(key).await }
        });
        Ok(Some(Box::pin(per_key.try_flatten())))
    }

    /// One key's lines; nothing for a key deleted since it was listed.
    async fn export_key(&self, key: SessionKey) -> Result<LoadStream, Error> {
        let prefix = line_prefix(&key)?;
        let Some(loaded) = self.load(&key, Seq::ZERO).await? else {
            return Ok(Box::pin(stream::empty()));
        };
        Ok(Box::pin(
            loaded.stream.map_ok(move |chunk| wrap(&prefix, &chunk)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_wrapped_once() {
        let out = wrap(b"P", b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(&out[..], b"P{\"a\":1}}\nP{\"b\":2}}\n");
    }
}
