//! The catalog in DynamoDB (aws-sdk-dynamodb), with the embedded catalog's
//! semantics. Tables are defined in `migrations/` and created by
//! `transcript-gateway migrate` ([`crate::migrate`], from [`schema`]); this adapter never
//! creates or alters a table, it only checks that they exist.
//!
//! Tables (`{prefix}` is `TG_DYNAMODB_TABLE_PREFIX`; persisted, never rename):
//!
//! - `{prefix}-sessions`: one item per transcript. Partition `task_id`, sort
//!   `sk` = `M#{project_key}#{session_id}` for a main transcript and
//!   `S#{project_key}#{session_id}#{subpath}` for a subkey. `#` sorts before
//!   every id character, so a `BETWEEN` on `sk` lists one project's sessions
//!   (or one session's subkeys) in id order with one `Query`. Record fields
//!   are plain attributes (numbers, the summary as a JSON string) so
//!   dashboards and the console can read them.
//! - `{prefix}-idempotency`: partition `task_id`, sort `idempotency_key`;
//!   expires through the TTL attribute `expires_at` (epoch seconds).
//! - `{prefix}-tasks`: partition `task_id`; the binding's attributes and the
//!   writer `epoch` counter share the item.
//!
//! Every read is strongly consistent. Every write that must not be lost or
//! reordered is conditional; a session write with an idempotency record is
//! one `TransactWriteItems`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::aws::AwsSettings;
use crate::backend::{CatalogPort, IdempotencyRecord, PortError, TimedOut};
use crate::domain::{ProjectKey, SessionId, SessionKey, SessionRef, TaskId};
use codec::{s, Item};

mod catalog;
mod codec;
pub mod schema;

pub use codec::session_sk;

/// Attribute names shared with `migrations/` (persisted, never rename).
pub mod attr {
    /// Partition key of every table.
    pub const TASK_ID: &str = "task_id";
    /// Sort key of the sessions table.
    pub const SK: &str = "sk";
    /// Sort key of the idempotency table.
    pub const IDEMPOTENCY_KEY: &str = "idempotency_key";
    /// TTL attribute of the idempotency table, epoch seconds.
    pub const EXPIRES_AT: &str = "expires_at";
    /// Partition key of the tasks table's `activity` index.
    pub const BUCKET: &str = "bucket";
    /// Sort key of the tasks table's `activity` index, epoch ms.
    pub const ACTIVE_MS: &str = "active_ms";
    /// The tasks table's index listing tasks newest activity first.
    pub const ACTIVITY_INDEX: &str = "activity";
}

/// The three tables of one deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableNames {
    /// Session index and summaries.
    pub sessions: String,
    /// Idempotency records (TTL).
    pub idempotency: String,
    /// Bindings and writer epochs.
    pub tasks: String,
    /// Recent mirror failures (TTL).
    pub failures: String,
}

/// Table suffixes as named in `migrations/`, in creation order.
pub const TABLE_SUFFIXES: [&str; 4] = ["sessions", "idempotency", "tasks", "failures"];

impl TableNames {
    /// The names under `prefix`, which must be 1–200 of `[A-Za-z0-9_.-]`.
    pub fn new(prefix: &str) -> Result<Self, PortError> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 200
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(PortError::other(format!(
                "dynamodb_table_prefix {prefix:?} must be 1 to 200 of A-Z, a-z, 0-9, '_', '.', '-'"
            )));
        }
        Ok(Self {
            sessions: table_name(prefix, "sessions"),
            idempotency: table_name(prefix, "idempotency"),
            tasks: table_name(prefix, "tasks"),
            failures: table_name(prefix, "failures"),
        })
    }

    /// Every name, in [`TABLE_SUFFIXES`] order.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.sessions,
            &self.idempotency,
            &self.tasks,
            &self.failures,
        ]
    }
}

/// `{prefix}-{suffix}`.
pub fn table_name(prefix: &str, suffix: &str) -> String {
    format!("{prefix}-{suffix}")
}

/// What the DynamoDB adapter needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamoSettings {
    /// Tables are named `{table_prefix}-{table}`.
    pub table_prefix: String,
    /// An endpoint instead of AWS's (an emulator).
    pub endpoint_url: Option<String>,
    /// Retries and time bounds.
    pub aws: AwsSettings,
}

/// Builds a DynamoDB client from the shared AWS configuration.
pub async fn client(settings: &DynamoSettings) -> Result<Client, PortError> {
    let endpoint = settings.endpoint_url.as_deref();
    let sdk = super::aws::sdk_config(&settings.aws, "DynamoDB", endpoint).await?;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
        .interceptor(super::aws::CallSpans::new("DynamoDB", "dynamodb"))
        .build();
    Ok(Client::from_conf(config))
}

/// Connects to the configured tables. Nothing is called yet: `check` (run by
/// `serve` at start) verifies the tables.
pub async fn connect(settings: &DynamoSettings) -> Result<Arc<dyn CatalogPort>, PortError> {
    let tables = TableNames::new(&settings.table_prefix)?;
    let client = client(settings).await?;
    Ok(Arc::new(DynamoCatalog::new(
        client,
        tables,
        settings.endpoint_url.clone(),
    )))
}

/// The DynamoDB catalog.
#[derive(Debug)]
pub struct DynamoCatalog {
    client: Client,
    tables: TableNames,
    /// Where the tables live, for messages (`None`: the AWS default).
    endpoint: Option<String>,
    /// Set once `check` has described every table; later checks only probe.
    verified: AtomicBool,
}

/// The error code DynamoDB sent, if it answered at all.
fn service_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    match err {
        SdkError::ServiceError(ctx) => ctx.err().code(),
        _ => None,
    }
}

impl DynamoCatalog {
    /// A catalog over `client` and `tables`; `endpoint` is only for messages.
    pub fn new(client: Client, tables: TableNames, endpoint: Option<String>) -> Self {
        Self {
            client,
            tables,
            endpoint,
            verified: AtomicBool::new(false),
        }
    }

    fn location(&self) -> String {
        match &self.endpoint {
            Some(url) => format!("at {url}"),
            None => "in the configured AWS account and region".into(),
        }
    }

    fn missing_tables_hint(&self, table: &str) -> String {
        format!(
            "DynamoDB table {table:?} does not exist {}; create the tables with \
             `transcript-gateway migrate` (same TG_DYNAMODB_TABLE_PREFIX, \
             TG_DYNAMODB_ENDPOINT_URL and AWS settings), then start again",
            self.location()
        )
    }

    /// Maps an SDK error to a port error. Throttling, timeouts, network and
    /// server faults are `Unavailable` (the SDK has already retried them,
    /// within the configured attempts); a failed condition is
    /// `PreconditionFailed`; a malformed request is `Other`.
    fn map_err<E>(&self, op: &str, table: &str, err: SdkError<E, HttpResponse>) -> PortError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = service_code(&err).map(str::to_string);
        let what = format!("DynamoDB {op} on {table}");
        match code.as_deref() {
            Some("ConditionalCheckFailedException") => PortError::PreconditionFailed(what),
            Some("ResourceNotFoundException") => {
                PortError::unavailable(self.missing_tables_hint(table)).caused_by(err)
            }
            Some("ValidationException" | "SerializationException") => {
                PortError::other(what).caused_by(err)
            }
            // Throttling, server faults, and credential or permission refusals:
            // the client can only wait (or an operator must act).
            Some(_) => PortError::unavailable(what).caused_by(err),
            None if super::aws::credentials_missing(&err) => {
                PortError::unavailable(super::aws::no_credentials(&what)).caused_by(err)
            }
            None => match err {
                SdkError::ConstructionFailure(_) => PortError::other(what).caused_by(err),
                SdkError::TimeoutError(_) => {
                    PortError::unavailable(what).caused_by(TimedOut(Box::new(err)))
                }
                _ => PortError::unavailable(what).caused_by(err),
            },
        }
    }

    async fn get_item(
        &self,
        op: &str,
        table: &str,
        key: Item,
        projection: Option<&str>,
    ) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .set_projection_expression(projection.map(str::to_string))
            .send()
            .await
            .map_err(|e| self.map_err(op, table, e))?;
        Ok(out.item)
    }

    /// A `PutItem` of an idempotency record under `key` (unconditional
    /// until the caller adds a condition).
    fn idempotency_put(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder, PortError>
    {
        Ok(self
            .client
            .put_item()
            .table_name(&self.tables.idempotency)
            .set_item(Some(codec::idempotency_item(task, key, record)?)))
    }

    /// Stores an idempotency record under `key`, replacing any.
    async fn replace_idempotency(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), PortError> {
        let table = &self.tables.idempotency;
        self.idempotency_put(task, key, record)?
            .send()
            .await
            .map_err(|e| self.map_err("PutItem", table, e))?;
        Ok(())
    }

    fn session_key_item(key: &SessionKey) -> Item {
        Item::from([
            (attr::TASK_ID.into(), s(key.task_id().as_str())),
            (attr::SK.into(), s(session_sk(key))),
        ])
    }

    fn task_key_item(task: &TaskId) -> Item {
        Item::from([(attr::TASK_ID.into(), s(task.as_str()))])
    }

    /// Runs one `Query` over the sessions table between `lo` and `hi`
    /// (inclusive), collecting up to `want` items across 1 MB pages.
    async fn query_range(
        &self,
        task: &TaskId,
        lo: &str,
        hi: &str,
        want: usize,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, PortError> {
        let table = &self.tables.sessions;
        let query = self
            .client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :lo AND :hi")
            .expression_attribute_names("#pk", attr::TASK_ID)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(task.as_str()))
            .expression_attribute_values(":lo", s(lo))
            .expression_attribute_values(":hi", s(hi))
            .set_projection_expression(projection.map(str::to_string));
        self.query_pages(table, query, want).await
    }

    /// A `Query` of the failures table's one partition, oldest first.
    fn failures_query(&self) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.tables.failures)
            .consistent_read(true)
            .key_condition_expression("#b = :b")
            .expression_attribute_names("#b", codec::FAILURE_BUCKET)
            .expression_attribute_values(":b", s(codec::FAILURE_BUCKET_VALUE))
    }

    /// Runs `query` page after page until `want` items or the end.
    async fn query_pages(
        &self,
        table: &str,
        query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
        want: usize,
    ) -> Result<Vec<Item>, PortError> {
        let mut items = Vec::new();
        let mut next = query.clone();
        loop {
            let limit = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
            let out = next
                .limit(limit)
                .send()
                .await
                .map_err(|e| self.map_err("Query", table, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() && items.len() < want => {
                    next = query.clone().set_exclusive_start_key(Some(last));
                }
                _ => break,
            }
        }
        Ok(items)
    }

    /// Deletes every item of `keys` from `table`, a few at once; returns how many.
    async fn delete_items(&self, table: &str, keys: Vec<Item>) -> Result<u64, PortError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let count = keys.len() as u64;
        futures::stream::iter(keys)
            .map(|key| async move {
                self.client
                    .delete_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .send()
                    .await
                    .map_err(|e| self.map_err("DeleteItem", table, e))
            })
            .buffer_unordered(16)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(count)
    }

    /// Describes every table: it must exist, be usable and have the key
    /// schema `migrations/` defines.
    async fn verify_tables(&self) -> Result<(), PortError> {
        let defs = schema::definitions()
            .map_err(|e| PortError::other("the compiled-in table definitions").caused_by(e))?;
        for def in &defs {
            let table = table_name(self.prefix(), &def.name);
            let out = match self.client.describe_table().table_name(&table).send().await {
                Ok(out) => out,
                Err(e) if service_code(&e) == Some("ResourceNotFoundException") => {
                    return Err(PortError::unavailable(self.missing_tables_hint(&table)));
                }
                Err(e) => return Err(self.map_err("DescribeTable", &table, e)),
            };
            let Some(desc) = out.table else {
                return Err(PortError::other(format!(
                    "DynamoDB DescribeTable on {table}: no description returned"
                )));
            };
            schema::check_key_schema(def, &table, &desc)
                .map_err(|e| PortError::other("a table's key").caused_by(e))?;
            for index in &def.global_secondary_indexes {
                let live = desc
                    .global_secondary_indexes()
                    .iter()
                    .any(|i| i.index_name() == Some(index.name.as_str()));
                if !live {
                    return Err(PortError::unavailable(format!(
                        "DynamoDB table {table:?} has no index {:?}; upgrade the tables \
                         with `transcript-gateway migrate`, then start again",
                        index.name
                    )));
                }
            }
            use aws_sdk_dynamodb::types::TableStatus;
            match desc.table_status {
                Some(TableStatus::Active | TableStatus::Updating) | None => {}
                Some(other) => {
                    return Err(PortError::unavailable(format!(
                        "DynamoDB table {table:?} is {}; wait until it is ACTIVE \
                         (`transcript-gateway migrate` waits for it)",
                        other.as_str()
                    )))
                }
            }
        }
        Ok(())
    }

    fn prefix(&self) -> &str {
        self.tables
            .tasks
            .strip_suffix("-tasks")
            .unwrap_or(&self.tables.tasks)
    }

    /// A cheap data-plane probe of every table (readiness after the first check).
    async fn probe_tables(&self) -> Result<(), PortError> {
        let probe =
            TaskId::new("readiness-probe").map_err(|e| PortError::other("probe").caused_by(e))?;
        let session = SessionKey::main(SessionRef {
            task_id: probe.clone(),
            project_key: ProjectKey::new("probe")
                .map_err(|e| PortError::other("probe").caused_by(e))?,
            session_id: SessionId::new("probe")
                .map_err(|e| PortError::other("probe").caused_by(e))?,
        });
        let (a, b, c) = tokio::join!(
            self.get_session(&session),
            self.get_idempotency(&probe, "probe"),
            self.writer_fence(&probe),
        );
        a.map(drop)?;
        b.map(drop)?;
        c.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_prefixes_are_validated() {
        let names = TableNames::new("tg-test").unwrap();
        assert_eq!(
            names.all(),
            [
                "tg-test-sessions",
                "tg-test-idempotency",
                "tg-test-tasks",
                "tg-test-failures"
            ]
        );
        for bad in ["", "a b", "a/b", &"x".repeat(201)] {
            assert!(TableNames::new(bad).is_err(), "{bad:?}");
        }
    }
}
