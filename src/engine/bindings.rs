//! Task bindings (first writer wins) and writer leases (epochs), for
//! cross-worker resume: worker B reads the binding to resume the Claude
//! session, and takes a lease so a worker presumed dead cannot interleave.

use super::Engine;
use crate::domain::{BindOutcome, Binding, StoredBinding};
use crate::domain::{ProjectKey, TaskId};
use crate::error::Error;

/// Longest accepted `cwd`, in bytes.
pub const MAX_CWD_LEN: usize = 4096;

/// Checks a binding's values before anything is written.
pub fn validate_binding(binding: &Binding) -> Result<(), Error> {
    // The Claude session id is a session id like any in a route.
    crate::domain::validate_id("claude_session_id", &binding.claude_session_id)?;
    ProjectKey::new(binding.project_key.as_str())?;
    let cwd = &binding.cwd;
    if cwd.is_empty() || cwd.len() > MAX_CWD_LEN {
        return Err(Error::invalid(format!(
            "cwd must be 1 to {MAX_CWD_LEN} bytes"
        )));
    }
    if cwd.chars().any(char::is_control) {
        return Err(Error::invalid("cwd must not contain control characters"));
    }
    if !is_absolute(cwd) {
        return Err(Error::invalid(
            "cwd must be an absolute path (such as /workspace/<task_id>)",
        ));
    }
    Ok(())
}

/// POSIX `/...`, or a Windows drive (`C:\`, `C:/`) or UNC (`\\server\`) path.
fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    path.starts_with('/')
        || path.starts_with("\\\\")
        || (b.len() >= 3
            && b[0].is_ascii_alphabetic()
            && b[1] == b':'
            && matches!(b[2], b'\\' | b'/'))
}

/// How long an erasure's marker refuses writes at most.
pub const ERASURE_FENCE: std::time::Duration = std::time::Duration::from_secs(300);

impl Engine {
    /// Binds `task` to a Claude session, first writer wins (fenced like
    /// every write, see [`Engine::check_writer`]). Returns
    /// `Created`, or `Existing` when the same values were bound before;
    /// different values are a [`Error::BindingConflict`].
    pub async fn bind(
        &self,
        task: &TaskId,
        binding: Binding,
        writer_epoch: Option<u64>,
    ) -> Result<BindOutcome, Error> {
        validate_binding(&binding)?;
        self.check_writer(task, writer_epoch).await?;
        let stored = StoredBinding {
            binding,
            created_ms: self.now_ms(),
        };
        self.forget_binding(task);
        let outcome = self.inner.catalog.create_binding(task, &stored).await?;
        self.note_activity(task);
        match outcome {
            BindOutcome::Existing(existing) if existing.binding != stored.binding => {
                let b = &existing.binding;
                Err(Error::BindingConflict(format!(
                    "task {task} is already bound to claude_session_id {:?} \
                     (project_key {:?}, cwd {:?}); the first binding wins",
                    b.claude_session_id, b.project_key, b.cwd
                )))
            }
            outcome => Ok(outcome),
        }
    }

    /// The task's binding, if any.
    pub async fn binding(&self, task: &TaskId) -> Result<Option<StoredBinding>, Error> {
        Ok(self.inner.catalog.get_binding(task).await?)
    }

    /// Takes a new writer lease: returns an epoch higher than every earlier
    /// one; appends sent with an older epoch are refused from now on.
    pub async fn lease(&self, task: &TaskId) -> Result<u64, Error> {
        Ok(self.inner.catalog.bump_epoch(task).await?)
    }

    /// The task's current writer epoch (0 before any lease).
    pub async fn current_epoch(&self, task: &TaskId) -> Result<u64, Error> {
        Ok(self.inner.catalog.writer_fence(task).await?.epoch)
    }

    /// Fences a write to `task`: before the task's first lease anything goes;
    /// after it, the write must carry exactly the current epoch. An older
    /// epoch is a writer presumed dead ([`Error::StaleWriter`]), a newer one
    /// was never issued ([`Error::UnknownEpoch`]), none at all is a writer
    /// that did not opt in ([`Error::EpochRequired`]).
    /// A task being erased takes no writes ([`Error::Erased`]) until the
    /// erasure ends, or [`ERASURE_FENCE`] after it began (an erasure that
    /// died part-way).
    pub async fn check_writer(&self, task: &TaskId, epoch: Option<u64>) -> Result<(), Error> {
        let fence = self.inner.catalog.writer_fence(task).await?;
        if let Some(began) = fence.erasing_ms {
            if self.now_ms() < began.saturating_add(ERASURE_FENCE.as_millis() as u64) {
                return Err(Error::Erased(format!(
                    "task {task} is being erased; nothing was written"
                )));
            }
        }
        let current = fence.epoch;
        match epoch {
            None if current == 0 => Ok(()),
            None => Err(Error::EpochRequired(format!(
                "task {task} has a writer lease (epoch {current}): send X-Writer-Epoch \
                 with the epoch your lease returned"
            ))),
            Some(e) if e < current => Err(Error::StaleWriter(format!(
                "writer epoch {e} is older than the task's current epoch {current}"
            ))),
            Some(e) if e > current => Err(Error::UnknownEpoch(format!(
                "writer epoch {e} was never issued for task {task} (its current epoch is {current})"
            ))),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(id: &str, project: &str, cwd: &str) -> Binding {
        Binding {
            claude_session_id: id.into(),
            project_key: project.into(),
            cwd: cwd.into(),
        }
    }

    #[test]
    fn valid_bindings_pass() {
        for cwd in [
            "/workspace/t1",
            "/",
            "C:\\work\\t1",
            "d:/w",
            "\\\\srv\\share",
        ] {
            validate_binding(&binding("3f2a-9c1e.x_y", "-workspace-t1", cwd)).unwrap();
        }
        validate_binding(&binding(
            &"a".repeat(128),
            "p",
            &format!("/{}", "x".repeat(4095)),
        ))
        .unwrap();
    }

    #[test]
    fn invalid_bindings_are_refused_with_the_field_named() {
        let cases = [
            (binding("", "p", "/w"), "claude_session_id"),
            (binding(&"a".repeat(129), "p", "/w"), "claude_session_id"),
            (binding("a/b", "p", "/w"), "claude_session_id"),
            (binding("a", "", "/w"), "project_key"),
            (binding("a", "p.x", "/w"), "project_key"),
            (binding("a", "p", ""), "cwd"),
            (binding("a", "p", "workspace/t"), "cwd"),
            (binding("a", "p", "/w\n"), "cwd"),
            (binding("a", "p", &format!("/{}", "x".repeat(4096))), "cwd"),
        ];
        for (b, field) in cases {
            let err = validate_binding(&b).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{b:?}");
            assert!(err.to_string().contains(field), "{b:?}: {err}");
        }
    }
}
