//! The catalog as the engine sees it: every call forwarded, and every
//! failure marked as the catalog's ([`PortError::in_catalog`]), so a mirror
//! failure says whether the catalog or the object store let a write down.

use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::{
    BindOutcome, CatalogPort, IdempotencyRecord, Page, PortError, SessionRecord, SessionWrite,
    StoredBinding, TaskActivity, TaskCursor, TaskRow, Versioned, WriterFence,
};
use crate::domain::{
    MirrorFailure, ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId,
};

/// A catalog whose failures are marked as the catalog's.
pub(super) struct Marked(pub(super) Arc<dyn CatalogPort>);

#[async_trait]
impl CatalogPort for Marked {
    async fn get_session(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Versioned<SessionRecord>>, PortError> {
        self.0.get_session(key).await.map_err(PortError::in_catalog)
    }

    async fn put_session(&self, write: SessionWrite<'_>) -> Result<u64, PortError> {
        self.0
            .put_session(write)
            .await
            .map_err(PortError::in_catalog)
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<(), PortError> {
        self.0
            .delete_session(key)
            .await
            .map_err(PortError::in_catalog)
    }

    async fn list_sessions(
        &self,
        task: &TaskId,
        project: &ProjectKey,
        start_after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page<(SessionId, SessionRecord)>, PortError> {
        (self
            .0
            .list_sessions(task, project, start_after, limit)
            .await)
            .map_err(PortError::in_catalog)
    }

    async fn list_subkeys(
        &self,
        session: &SessionRef,
        start_after: Option<&Subpath>,
        limit: usize,
    ) -> Result<Page<(Subpath, SessionRecord)>, PortError> {
        (self.0.list_subkeys(session, start_after, limit).await).map_err(PortError::in_catalog)
    }

    async fn get_idempotency(
        &self,
        task: &TaskId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, PortError> {
        (self.0.get_idempotency(task, key).await).map_err(PortError::in_catalog)
    }

    async fn put_idempotency(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), PortError> {
        (self.0.put_idempotency(task, key, record).await).map_err(PortError::in_catalog)
    }

    async fn create_binding(
        &self,
        task: &TaskId,
        binding: &StoredBinding,
    ) -> Result<BindOutcome, PortError> {
        (self.0.create_binding(task, binding).await).map_err(PortError::in_catalog)
    }

    async fn get_binding(&self, task: &TaskId) -> Result<Option<StoredBinding>, PortError> {
        self.0
            .get_binding(task)
            .await
            .map_err(PortError::in_catalog)
    }

    async fn bump_epoch(&self, task: &TaskId) -> Result<u64, PortError> {
        self.0.bump_epoch(task).await.map_err(PortError::in_catalog)
    }

    async fn record_failure(&self, failure: &MirrorFailure) -> Result<(), PortError> {
        self.0
            .record_failure(failure)
            .await
            .map_err(PortError::in_catalog)
    }

    async fn list_failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<MirrorFailure>, PortError> {
        (self.0.list_failures(before, limit).await).map_err(PortError::in_catalog)
    }

    async fn list_task_sessions(
        &self,
        task: &TaskId,
        start_after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Page<(SessionKey, SessionRecord)>, PortError> {
        (self.0.list_task_sessions(task, start_after, limit).await).map_err(PortError::in_catalog)
    }

    async fn put_task_activity(
        &self,
        task: &TaskId,
        activity: Option<&TaskActivity>,
    ) -> Result<(), PortError> {
        (self.0.put_task_activity(task, activity).await).map_err(PortError::in_catalog)
    }

    async fn get_task(&self, task: &TaskId) -> Result<Option<TaskRow>, PortError> {
        self.0.get_task(task).await.map_err(PortError::in_catalog)
    }

    async fn list_tasks(
        &self,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Page<TaskRow>, PortError> {
        (self.0.list_tasks(after, limit).await).map_err(PortError::in_catalog)
    }

    async fn erase_task(&self, task: &TaskId) -> Result<u64, PortError> {
        self.0.erase_task(task).await.map_err(PortError::in_catalog)
    }

    async fn writer_fence(&self, task: &TaskId) -> Result<WriterFence, PortError> {
        (self.0.writer_fence(task).await).map_err(PortError::in_catalog)
    }

    async fn begin_erasure(&self, task: &TaskId, at_ms: u64) -> Result<bool, PortError> {
        (self.0.begin_erasure(task, at_ms).await).map_err(PortError::in_catalog)
    }

    async fn end_erasure(&self, task: &TaskId, at_ms: u64) -> Result<(), PortError> {
        (self.0.end_erasure(task, at_ms).await).map_err(PortError::in_catalog)
    }

    async fn count_appends(&self, at_ms: u64, count: u64) -> Result<(), PortError> {
        (self.0.count_appends(at_ms, count).await).map_err(PortError::in_catalog)
    }

    async fn appends_between(&self, from_ms: u64, to_ms: u64) -> Result<u64, PortError> {
        (self.0.appends_between(from_ms, to_ms).await).map_err(PortError::in_catalog)
    }

    /// Unmarked: a start-up check's message speaks for itself.
    async fn check(&self) -> Result<(), PortError> {
        self.0.check().await
    }
}
