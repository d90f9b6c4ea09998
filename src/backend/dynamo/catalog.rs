//! The catalog port over the four tables: every read strongly consistent,
//! every write that must not be lost or reordered conditional, a session
//! write with an idempotency record one `TransactWriteItems`.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::codec::*;
use super::{attr, service_code, DynamoCatalog};
use crate::backend::{
    BindOutcome, CatalogPort, IdempotencyRecord, Page, PortError, SessionRecord, SessionWrite,
    StoredBinding, TaskActivity, TaskCursor, TaskRow, Versioned, WriterFence,
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
            .query_range(task, &lo, &hi, limit.saturating_add(1), None)
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
            .query_range(&session.task_id, &lo, &hi, limit.saturating_add(1), None)
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

    async fn record_failure(&self, failure: &MirrorFailure) -> Result<(), PortError> {
        let table = &self.tables.failures;
        let json = serde_json::to_string(failure)
            .map_err(|e| PortError::other("encode failure").caused_by(e))?;
        let mut counter = self
            .client
            .update_item()
            .table_name(&self.tables.tasks)
            .key(attr::TASK_ID, s(&failure.task_id))
            .expression_attribute_names("#f", FAILURES)
            .expression_attribute_values(":one", n(1));
        counter = match failure.is_drift() {
            true => counter
                .update_expression("ADD #f :one SET #d = :t")
                .expression_attribute_names("#d", DRIFT)
                .expression_attribute_values(":t", AttributeValue::Bool(true)),
            false => counter.update_expression("ADD #f :one"),
        };
        let mut item = failure_key(failure.sort_key());
        item.insert(FAILURE.into(), s(json));
        let expires = failure.at_ms / 1000 + FAILURE_TTL.as_secs();
        item.insert(attr::EXPIRES_AT.into(), n(expires));
        let (counted, kept) = tokio::join!(
            counter.send(),
            self.client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .send()
        );
        kept.map_err(|e| self.map_err("PutItem", table, e))?;
        counted.map_err(|e| self.map_err("UpdateItem", &self.tables.tasks, e))?;
        Ok(())
    }

    async fn list_failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<MirrorFailure>, PortError> {
        let table = &self.tables.failures;
        let query = (self.failures_query())
            .scan_index_forward(false)
            .set_exclusive_start_key(before.map(failure_key));
        let found = self
            .query_pages(table, query, limit.saturating_add(1))
            .await?;
        let mut items = found
            .iter()
            .map(failure_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, more })
    }

    async fn list_task_sessions(
        &self,
        task: &TaskId,
        start_after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Page<(SessionKey, SessionRecord)>, PortError> {
        let table = &self.tables.sessions;
        let mut query = self
            .client
            .query()
            .table_name(table)
            .consistent_read(true)
            .expression_attribute_names("#pk", attr::TASK_ID)
            .expression_attribute_values(":pk", s(task.as_str()));
        query = match start_after {
            Some(after) => query
                .key_condition_expression("#pk = :pk AND #sk > :after")
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":after", s(session_sk(after))),
            None => query.key_condition_expression("#pk = :pk"),
        };
        let want = limit.saturating_add(1);
        let items = self.query_pages(table, query, want).await?;
        let more = items.len() > limit;
        let items = items
            .iter()
            .take(limit)
            .map(|item| Ok((key_from_item(item)?, record_from_item(item)?.value)))
            .collect::<Result<Vec<_>, PortError>>()?;
        Ok(Page { items, more })
    }

    async fn put_task_activity(
        &self,
        task: &TaskId,
        activity: Option<&TaskActivity>,
    ) -> Result<(), PortError> {
        let table = &self.tables.tasks;
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(Self::task_key_item(task)))
            .expression_attribute_names("#b", attr::BUCKET)
            .expression_attribute_names("#a", attr::ACTIVE_MS)
            .expression_attribute_names("#t", ACTIVITY);
        let update = match activity {
            Some(activity) => {
                let json = serde_json::to_string(activity)
                    .map_err(|e| PortError::other("encode task totals").caused_by(e))?;
                update
                    .update_expression("SET #b = :b, #a = :a, #t = :t")
                    .expression_attribute_values(":b", s(TASKS_BUCKET_VALUE))
                    .expression_attribute_values(":a", n(activity.active_ms))
                    .expression_attribute_values(":t", s(json))
            }
            // Out of the listing, never creating the item.
            None => update
                .update_expression("REMOVE #b, #a, #t")
                .condition_expression("attribute_exists(#k)")
                .expression_attribute_names("#k", attr::TASK_ID),
        };
        match update
            .send()
            .await
            .map_err(|e| self.map_err("UpdateItem", table, e))
        {
            Ok(_) | Err(PortError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn get_task(&self, task: &TaskId) -> Result<Option<TaskRow>, PortError> {
        let item = self
            .get_item(
                "GetItem",
                &self.tables.tasks,
                Self::task_key_item(task),
                None,
            )
            .await?;
        item.as_ref().map(task_row_from_item).transpose()
    }

    async fn list_tasks(
        &self,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Page<TaskRow>, PortError> {
        let table = &self.tables.tasks;
        let start = after.map(|c| {
            Item::from([
                (attr::TASK_ID.into(), s(c.task_id.as_str())),
                (attr::BUCKET.into(), s(TASKS_BUCKET_VALUE)),
                (attr::ACTIVE_MS.into(), n(c.active_ms)),
            ])
        });
        let query = self
            .client
            .query()
            .table_name(table)
            .index_name(attr::ACTIVITY_INDEX)
            .key_condition_expression("#b = :b")
            .expression_attribute_names("#b", attr::BUCKET)
            .expression_attribute_values(":b", s(TASKS_BUCKET_VALUE))
            .scan_index_forward(false)
            .set_exclusive_start_key(start);
        let want = limit.saturating_add(1);
        let items = self.query_pages(table, query, want).await?;
        let more = items.len() > limit;
        let items = items
            .iter()
            .take(limit)
            .map(task_row_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, more })
    }

    async fn erase_task(&self, task: &TaskId) -> Result<u64, PortError> {
        let by_task = |table: &str, sort: &str| {
            self.client
                .query()
                .table_name(table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", attr::TASK_ID)
                .expression_attribute_names("#sk", sort)
                .expression_attribute_values(":pk", s(task.as_str()))
                .projection_expression("#pk, #sk")
        };
        let sessions = by_task(&self.tables.sessions, attr::SK);
        let sessions = self.query_pages(&self.tables.sessions, sessions, usize::MAX);
        let idempotency = by_task(&self.tables.idempotency, attr::IDEMPOTENCY_KEY);
        let idempotency = self.query_pages(&self.tables.idempotency, idempotency, usize::MAX);
        let (sessions, idempotency) = tokio::try_join!(sessions, idempotency)?;
        let mut removed = self.delete_items(&self.tables.sessions, sessions).await?;
        removed += self
            .delete_items(&self.tables.idempotency, idempotency)
            .await?;

        // Failures share one partition; the task's are picked out of it.
        let failures =
            (self.query_pages(&self.tables.failures, self.failures_query(), usize::MAX)).await?;
        let mut doomed = Vec::new();
        for item in &failures {
            let failure = failure_from_item(item)?;
            if failure.task_id == task.as_str() {
                doomed.push(failure_key(failure.sort_key()));
            }
        }
        removed += self.delete_items(&self.tables.failures, doomed).await?;
        Ok(removed)
    }

    async fn writer_fence(&self, task: &TaskId) -> Result<WriterFence, PortError> {
        let item = self
            .get_item(
                "GetItem",
                &self.tables.tasks,
                Self::task_key_item(task),
                Some(WRITER_FENCE),
            )
            .await?;
        let Some(item) = item else {
            return Ok(WriterFence::default());
        };
        Ok(WriterFence {
            epoch: get_n_or_zero(&item, EPOCH)?,
            erasing_ms: match item.contains_key(ERASING_MS) {
                true => Some(get_n(&item, ERASING_MS)?),
                false => None,
            },
        })
    }

    async fn begin_erasure(&self, task: &TaskId, at_ms: u64) -> Result<bool, PortError> {
        let table = &self.tables.tasks;
        let out = self
            .client
            .put_item()
            .table_name(table)
            .item(attr::TASK_ID, s(task.as_str()))
            .item(ERASING_MS, n(at_ms))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.map_err("PutItem", table, e))?;
        // An item that was only another erasure's marker held nothing.
        Ok(out
            .attributes
            .is_some_and(|old| !old.is_empty() && !old.contains_key(ERASING_MS)))
    }

    async fn end_erasure(&self, task: &TaskId, at_ms: u64) -> Result<(), PortError> {
        let table = &self.tables.tasks;
        let result = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(Self::task_key_item(task)))
            .condition_expression("#x = :at")
            .expression_attribute_names("#x", ERASING_MS)
            .expression_attribute_values(":at", n(at_ms))
            .send()
            .await;
        match result.map_err(|e| self.map_err("DeleteItem", table, e)) {
            // Another erasure's marker stays for it to remove.
            Ok(_) | Err(PortError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn count_appends(&self, at_ms: u64, count: u64) -> Result<(), PortError> {
        let table = &self.tables.tasks;
        let minute = at_ms / 60_000;
        self.client
            .update_item()
            .table_name(table)
            .key(attr::TASK_ID, s(appends_item_id(minute)))
            .update_expression("ADD #c :n SET #e = :e")
            .expression_attribute_names("#c", APPENDS)
            .expression_attribute_names("#e", attr::EXPIRES_AT)
            .expression_attribute_values(":n", n(count))
            .expression_attribute_values(":e", n((minute + 24 * 60 + 1) * 60))
            .send()
            .await
            .map_err(|e| self.map_err("UpdateItem", table, e))?;
        Ok(())
    }

    async fn appends_between(&self, from_ms: u64, to_ms: u64) -> Result<u64, PortError> {
        let table = &self.tables.tasks;
        let (first, last) = (from_ms / 60_000, to_ms / 60_000);
        if last < first || last - first >= 100 {
            return Err(PortError::other(format!(
                "appends between minutes {first} and {last}: at most 100 minutes at once"
            )));
        }
        let mut keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .consistent_read(true)
            .projection_expression("#c")
            .expression_attribute_names("#c", APPENDS);
        for minute in first..=last {
            keys = keys.keys(Item::from([(
                attr::TASK_ID.into(),
                s(appends_item_id(minute)),
            )]));
        }
        let mut pending = Some(
            keys.build()
                .map_err(|e| PortError::other("build BatchGetItem").caused_by(e))?,
        );
        let mut total = 0;
        while let Some(request) = pending.take() {
            let out = self
                .client
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await
                .map_err(|e| self.map_err("BatchGetItem", table, e))?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default()
            {
                total += get_n_or_zero(&item, APPENDS)?;
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(table))
                .filter(|k| !k.keys.is_empty());
        }
        Ok(total)
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
