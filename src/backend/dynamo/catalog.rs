//! The catalog port over the four tables: every read strongly consistent,
//! every write that must not be lost or reordered conditional, a session
//! write with an idempotency record one `TransactWriteItems`.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::codec::*;
use super::{attr, service_code, DynamoCatalog};
use crate::backend::{
    BindOutcome, CatalogPort, IdempotencyRecord, Page, PortError, SessionRecord, SessionWrite,
    StoredBinding, Versioned,
};
use crate::domain::{
    MirrorFailure, ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId,
};

#[async_trait]
impl CatalogPort for DynamoCatalog {
    async fn get_session(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Versioned<SessionRecord>>, PortError> {
        let item = self
            .get_item(
                "GetItem",
                &self.tables.sessions,
                Self::session_key_item(key),
                None,
            )
            .await?;
        item.as_ref().map(record_from_item).transpose()
    }

    async fn put_session(&self, write: SessionWrite<'_>) -> Result<u64, PortError> {
        let table = &self.tables.sessions;
        let version = write.expected_version + 1;
        let item = session_item(write.key, write.record, version)?;
        let mut put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .expression_attribute_names("#v", VERSION);
        put = if write.expected_version == 0 {
            put.condition_expression("attribute_not_exists(#v)")
        } else {
            put.condition_expression("#v = :expected")
                .expression_attribute_values(":expected", n(write.expected_version))
        };
        let put = put
            .build()
            .map_err(|e| PortError::other("build Put").caused_by(e))?;

        if write.idempotency.is_empty() || write.independent {
            // One PutItem for the record and one for each idempotency record
            // that stands on its own, all at once: no transaction to wait for.
            let record = self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(put.item))
                .set_condition_expression(put.condition_expression)
                .set_expression_attribute_names(put.expression_attribute_names)
                .set_expression_attribute_values(put.expression_attribute_values)
                .send();
            let idempotency = futures::future::try_join_all(
                write
                    .idempotency
                    .iter()
                    .map(|(k, r)| self.replace_idempotency(write.key.task_id(), k, r)),
            );
            let (stored, idempotency) = tokio::join!(record, idempotency);
            stored.map_err(|e| self.map_err("PutItem", table, e))?;
            idempotency?;
            return Ok(version);
        };

        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        for (idem_key, idem) in &write.idempotency {
            let idem_put = Put::builder()
                .table_name(&self.tables.idempotency)
                .set_item(Some(idempotency_item(write.key.task_id(), idem_key, idem)?))
                .build()
                .map_err(|e| PortError::other("build Put").caused_by(e))?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().put(idem_put).build());
        }
        let result = transaction.send().await;
        match result {
            Ok(_) => Ok(version),
            Err(err) => {
                // DynamoDB cancels the whole transaction when any condition
                // fails (reason ConditionalCheckFailed) or another transaction
                // holds the item (TransactionConflict). Either way nothing was
                // written and re-reading the record is the right next step.
                if let Some(canceled) = err
                    .as_service_error()
                    .and_then(|e| match e {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                {
                    let reasons: Vec<&str> = canceled
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code())
                        .collect();
                    let lost = reasons
                        .iter()
                        .any(|r| matches!(*r, "ConditionalCheckFailed" | "TransactionConflict"));
                    if lost {
                        return Err(PortError::PreconditionFailed(format!(
                            "session record changed (transaction canceled: {reasons:?})"
                        )));
                    }
                }
                Err(self.map_err("TransactWriteItems", table, err))
            }
        }
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<(), PortError> {
        let table = &self.tables.sessions;
        self.client
            .delete_item()
            .table_name(table)
            .set_key(Some(Self::session_key_item(key)))
            .send()
            .await
            .map_err(|e| self.map_err("DeleteItem", table, e))?;
        Ok(())
    }

    async fn list_sessions(
        &self,
        task: &TaskId,
        project: &ProjectKey,
        start_after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page<(SessionId, SessionRecord)>, PortError> {
        let (lo, hi) = sessions_range(project, start_after);
        let items = self
            .query_range("Query", task, &lo, &hi, limit.saturating_add(1), None)
            .await?;
        let more = items.len() > limit;
        let mut out = Vec::with_capacity(items.len().min(limit));
        for item in items.iter().take(limit) {
            let id = SessionId::new(get_s(item, SESSION_ID)?)
                .map_err(|e| PortError::other("corrupt session id in catalog").caused_by(e))?;
            out.push((id, record_from_item(item)?.value));
        }
        Ok(Page { items: out, more })
    }

    async fn list_subkeys(
        &self,
        session: &SessionRef,
        start_after: Option<&Subpath>,
        limit: usize,
    ) -> Result<Page<(Subpath, SessionRecord)>, PortError> {
        let (lo, hi, prefix) = subkeys_range(session, start_after);
        let items = self
            .query_range(
                "Query",
                &session.task_id,
                &lo,
                &hi,
                limit.saturating_add(1),
                None,
            )
            .await?;
        let more = items.len() > limit;
        let mut out = Vec::with_capacity(items.len().min(limit));
        for item in items.iter().take(limit) {
            let sk = get_s(item, attr::SK)?;
            let sub = sk
                .strip_prefix(prefix.as_str())
                .ok_or_else(|| corrupt(attr::SK))?;
            let sub = Subpath::new(sub)
                .map_err(|e| PortError::other("corrupt subpath in catalog").caused_by(e))?;
            out.push((sub, record_from_item(item)?.value));
        }
        Ok(Page { items: out, more })
    }

    async fn put_idempotency(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), PortError> {
        let table = &self.tables.idempotency;
        let result = self
            .idempotency_put(task, key, record)?
            // The first stays, unless it expired by the new one's time.
            .condition_expression("attribute_not_exists(#k) OR #e <= :now")
            .expression_attribute_names("#k", attr::IDEMPOTENCY_KEY)
            .expression_attribute_names("#e", EXPIRES_MS)
            .expression_attribute_values(":now", n(record.created_ms))
            .send()
            .await;
        match result.map_err(|e| self.map_err("PutItem", table, e)) {
            // The first record stays.
            Ok(_) | Err(PortError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get_idempotency(
        &self,
        task: &TaskId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, PortError> {
        let item = self
            .get_item(
                "GetItem",
                &self.tables.idempotency,
                Item::from([
                    (attr::TASK_ID.into(), s(task.as_str())),
                    (attr::IDEMPOTENCY_KEY.into(), s(key)),
                ]),
                None,
            )
            .await?;
        let Some(item) = item else {
            return Ok(None);
        };
        let receipt = serde_json::from_str(get_s(&item, RECEIPT)?)
            .map_err(|e| PortError::other("corrupt receipt in catalog").caused_by(e))?;
        Ok(Some(IdempotencyRecord {
            fingerprint: get_s(&item, FINGERPRINT)?.to_string(),
            receipt,
            created_ms: get_n(&item, CREATED_MS)?,
            expires_ms: match item.contains_key(EXPIRES_MS) {
                true => get_n(&item, EXPIRES_MS)?,
                false => get_n_or_zero(&item, attr::EXPIRES_AT)? * 1000,
            },
            part_dir: match item.get(PART_DIR) {
                Some(_) => Some(get_s(&item, PART_DIR)?.to_string()),
                None => None,
            },
        }))
    }

    async fn create_binding(
        &self,
        task: &TaskId,
        binding: &StoredBinding,
    ) -> Result<BindOutcome, PortError> {
        let table = &self.tables.tasks;
        // An update, not a put: the item may already hold the writer epoch.
        let result = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::task_key_item(task)))
            .update_expression("SET #c = :c, #p = :p, #cwd = :cwd, #t = :t")
            .condition_expression("attribute_not_exists(#c)")
            .expression_attribute_names("#c", CLAUDE_SESSION_ID)
            .expression_attribute_names("#p", PROJECT_KEY)
            .expression_attribute_names("#cwd", CWD)
            .expression_attribute_names("#t", BOUND_MS)
            .expression_attribute_values(":c", s(&binding.binding.claude_session_id))
            .expression_attribute_values(":p", s(&binding.binding.project_key))
            .expression_attribute_values(":cwd", s(&binding.binding.cwd))
            .expression_attribute_values(":t", n(binding.created_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(BindOutcome::Created(binding.clone())),
            Err(err) => err,
        };
        if service_code(&err) != Some("ConditionalCheckFailedException") {
            return Err(self.map_err("UpdateItem", table, err));
        }
        let returned = err.as_service_error().and_then(|e| match e {
            aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                c.item().cloned()
            }
            _ => None,
        });
        let existing = match returned
            .as_ref()
            .map(binding_from_item)
            .transpose()?
            .flatten()
        {
            Some(found) => Some(found),
            // Not every emulator returns the old item; a binding never goes
            // away once set, so a consistent read finds it.
            None => self.get_binding(task).await?,
        };
        existing.map(BindOutcome::Existing).ok_or_else(|| {
            PortError::other(format!(
                "binding of task {task} refused by its condition but not found"
            ))
        })
    }

    async fn get_binding(&self, task: &TaskId) -> Result<Option<StoredBinding>, PortError> {
        let item = self
            .get_item(
                "GetItem",
                &self.tables.tasks,
                Self::task_key_item(task),
                None,
            )
            .await?;
        Ok(item.as_ref().map(binding_from_item).transpose()?.flatten())
    }

    async fn bump_epoch(&self, task: &TaskId) -> Result<u64, PortError> {
        let table = &self.tables.tasks;
        let out = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::task_key_item(task)))
            .update_expression("ADD #e :one")
            .expression_attribute_names("#e", EPOCH)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.map_err("UpdateItem", table, e))?;
        get_n(&out.attributes.unwrap_or_default(), EPOCH)
    }

    async fn current_epoch(&self, task: &TaskId) -> Result<u64, PortError> {
        let item = self
            .get_item(
                "GetItem",
                &self.tables.tasks,
                Self::task_key_item(task),
                Some(EPOCH),
            )
            .await?;
        item.map_or(Ok(0), |i| get_n_or_zero(&i, EPOCH))
    }

    async fn record_failure(&self, failure: &MirrorFailure) -> Result<(), PortError> {
        let table = &self.tables.failures;
        let json = serde_json::to_string(failure)
            .map_err(|e| PortError::other("encode failure").caused_by(e))?;
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(Item::from([
                (FAILURE_BUCKET.into(), s(FAILURE_BUCKET_VALUE)),
                (attr::SK.into(), s(failure.sort_key())),
                (FAILURE.into(), s(json)),
                (
                    attr::EXPIRES_AT.into(),
                    n(failure.at_ms / 1000 + FAILURE_TTL.as_secs()),
                ),
            ])))
            .send()
            .await
            .map_err(|e| self.map_err("PutItem", table, e))?;
        Ok(())
    }

    async fn list_failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<MirrorFailure>, PortError> {
        let table = &self.tables.failures;
        let mut items = Vec::new();
        let mut start: Option<Item> = before.map(|b| {
            Item::from([
                (FAILURE_BUCKET.into(), s(FAILURE_BUCKET_VALUE)),
                (attr::SK.into(), s(b)),
            ])
        });
        let want = limit.saturating_add(1);
        loop {
            let out = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression("#b = :b")
                .expression_attribute_names("#b", FAILURE_BUCKET)
                .expression_attribute_values(":b", s(FAILURE_BUCKET_VALUE))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit((want - items.len()).min(1000) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.map_err("Query", table, e))?;
            for item in out.items() {
                let text = get_s(item, FAILURE)?;
                let failure: MirrorFailure = serde_json::from_str(text)
                    .map_err(|e| PortError::other("corrupt failure in catalog").caused_by(e))?;
                items.push(failure);
            }
            match out.last_evaluated_key {
                Some(last) if items.len() < want => start = Some(last),
                _ => break,
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, more })
    }

    async fn check(&self) -> Result<(), PortError> {
        if self.verified.load(Ordering::Relaxed) {
            return self.probe_tables().await;
        }
        self.verify_tables().await?;
        self.verified.store(true, Ordering::Relaxed);
        Ok(())
    }
}
