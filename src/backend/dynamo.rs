//! The catalog in DynamoDB (aws-sdk-dynamodb), with the embedded catalog's
//! semantics. Tables are defined in `migrations/` and created by
//! `transcript-gateway migrate` ([`crate::migrate`]); this adapter never
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use serde_json::value::RawValue;

use crate::backend::{
    BindOutcome, Binding, CatalogPort, IdempotencyRecord, Page, PortError, SessionRecord,
    SessionWrite, StoredBinding, Versioned,
};
use crate::config::{Config, RetryMode};
use crate::domain::{
    MirrorFailure, ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId,
};

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
}

const VERSION: &str = "version";
const PROJECT_KEY: &str = "project_key";
const SESSION_ID: &str = "session_id";
const SUBPATH: &str = "subpath";
const SUMMARY: &str = "summary";
const FINGERPRINT: &str = "fingerprint";
const RECEIPT: &str = "receipt";
const CREATED_MS: &str = "created_ms";
const EXPIRES_MS: &str = "expires_ms";
const CLAUDE_SESSION_ID: &str = "claude_session_id";
const CWD: &str = "cwd";
const BOUND_MS: &str = "bound_ms";
const EPOCH: &str = "epoch";

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
            return Err(PortError::Other(format!(
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

/// The failures table's partition attribute and its one value.
const FAILURE_BUCKET: &str = "bucket";
const FAILURE_BUCKET_VALUE: &str = "failures";
/// The failure itself, as JSON.
const FAILURE: &str = "failure";
/// How long DynamoDB keeps a failure.
const FAILURE_TTL: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// `{prefix}-{suffix}`.
pub fn table_name(prefix: &str, suffix: &str) -> String {
    format!("{prefix}-{suffix}")
}

/// Builds a DynamoDB client from the standard AWS chain and the configured
/// endpoint, retry mode, attempts and timeouts.
pub async fn client(config: &Config) -> Result<Client, PortError> {
    let retry = match config.aws_retry_mode {
        RetryMode::Standard => RetryConfig::standard(),
        RetryMode::Adaptive => RetryConfig::adaptive(),
    }
    .with_max_attempts(config.aws_max_attempts);
    let attempt = Duration::from_millis(config.aws_attempt_timeout_ms);
    let timeouts = TimeoutConfig::builder()
        .operation_timeout(Duration::from_millis(config.aws_operation_timeout_ms))
        .operation_attempt_timeout(attempt)
        .connect_timeout(attempt.min(Duration::from_secs(3)))
        .build();
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts)
        .load()
        .await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&shared);
    if shared.region().is_none() {
        if config.dynamodb_endpoint_url.is_some() {
            // Emulators accept any region; don't make local runs set one.
            builder = builder.region(aws_config::Region::from_static("us-east-1"));
        } else {
            return Err(PortError::Unavailable(
                "no AWS region configured for DynamoDB: set AWS_REGION (or a profile's region)"
                    .into(),
            ));
        }
    }
    if let Some(url) = &config.dynamodb_endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(Client::from_conf(builder.build()))
}

/// Connects to the configured tables. Nothing is called yet: `check` (run by
/// `serve` at start) verifies the tables.
pub async fn connect(config: &Config) -> Result<Arc<dyn CatalogPort>, PortError> {
    let tables = TableNames::new(&config.dynamodb_table_prefix)?;
    let client = client(config).await?;
    Ok(Arc::new(DynamoCatalog::new(
        client,
        tables,
        config.dynamodb_endpoint_url.clone(),
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

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, PortError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(name)),
    }
}

fn get_n(item: &Item, name: &str) -> Result<u64, PortError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(name)),
        _ => Err(corrupt(name)),
    }
}

/// A number attribute that may be absent (records written before it existed).
fn get_n_or_zero(item: &Item, name: &str) -> Result<u64, PortError> {
    if item.contains_key(name) {
        get_n(item, name)
    } else {
        Ok(0)
    }
}

fn corrupt(name: &str) -> PortError {
    PortError::Other(format!(
        "corrupt DynamoDB catalog item: attribute {name:?} missing or mistyped"
    ))
}

/// The sort key of a transcript's record.
pub fn session_sk(key: &SessionKey) -> String {
    let s = &key.session;
    match &key.subpath {
        None => format!("M#{}#{}", s.project_key, s.session_id),
        Some(sub) => format!("S#{}#{}#{sub}", s.project_key, s.session_id),
    }
}

/// `[lo, hi]` of the main-transcript sort keys of `project` after `after`.
fn sessions_range(project: &ProjectKey, after: Option<&SessionId>) -> (String, String) {
    let prefix = format!("M#{project}#");
    // Every id character sorts after '!', and '$' right after '#': so `lo`
    // excludes `after` itself and `hi` ends the project's range.
    let lo = match after {
        Some(a) => format!("{prefix}{a}!"),
        None => prefix,
    };
    (lo, format!("M#{project}$"))
}

/// `[lo, hi]` of the subkey sort keys of `session` after `after`, and their prefix.
fn subkeys_range(session: &SessionRef, after: Option<&Subpath>) -> (String, String, String) {
    let prefix = format!("S#{}#{}#", session.project_key, session.session_id);
    let lo = match after {
        Some(a) => format!("{prefix}{a}!"),
        None => prefix.clone(),
    };
    let hi = format!("S#{}#{}$", session.project_key, session.session_id);
    (lo, hi, prefix)
}

/// Attributes of a session item that are not record fields.
const SESSION_META: [&str; 6] = [
    attr::TASK_ID,
    attr::SK,
    PROJECT_KEY,
    SESSION_ID,
    SUBPATH,
    VERSION,
];

/// A record as item attributes: each field of [`SessionRecord`] under its
/// serde name, numbers as `N`, anything else as `S` holding JSON text (the
/// summary verbatim). New record fields persist without a change here.
fn session_item(key: &SessionKey, record: &SessionRecord, version: u64) -> Result<Item, PortError> {
    let s = &key.session;
    let mut item = Item::from([
        (attr::TASK_ID.into(), self::s(s.task_id.as_str())),
        (attr::SK.into(), self::s(session_sk(key))),
        (PROJECT_KEY.into(), self::s(s.project_key.as_str())),
        (SESSION_ID.into(), self::s(s.session_id.as_str())),
        (VERSION.into(), n(version)),
    ]);
    if let Some(sub) = &key.subpath {
        item.insert(SUBPATH.into(), self::s(sub.as_str()));
    }
    let fields = match serde_json::to_value(record) {
        Ok(serde_json::Value::Object(fields)) => fields,
        Ok(_) | Err(_) => return Err(PortError::Other("encode session record".into())),
    };
    for (name, value) in fields {
        if SESSION_META.contains(&name.as_str()) {
            return Err(PortError::Other(format!(
                "session record field {name:?} collides with a key attribute"
            )));
        }
        let attribute = match (name.as_str(), value) {
            (_, serde_json::Value::Null) => continue,
            (SUMMARY, _) => match &record.summary {
                Some(raw) => self::s(raw.get()),
                None => continue,
            },
            (_, serde_json::Value::Number(v)) => AttributeValue::N(v.to_string()),
            (_, other) => self::s(other.to_string()),
        };
        item.insert(name, attribute);
    }
    Ok(item)
}

/// An idempotency record as an item, expiring after the TTL.
fn idempotency_item(
    task: &TaskId,
    key: &str,
    record: &IdempotencyRecord,
) -> Result<Item, PortError> {
    let receipt = serde_json::to_string(&record.receipt)
        .map_err(|e| PortError::Other(format!("encode receipt: {e}")))?;
    Ok(Item::from([
        (attr::TASK_ID.into(), s(task.as_str())),
        (attr::IDEMPOTENCY_KEY.into(), s(key)),
        (FINGERPRINT.into(), s(&record.fingerprint)),
        (RECEIPT.into(), s(receipt)),
        (CREATED_MS.into(), n(record.created_ms)),
        (EXPIRES_MS.into(), n(record.expires_at_ms())),
        // DynamoDB's TTL deletes the item (lazily) after this, in seconds.
        (
            attr::EXPIRES_AT.into(),
            n(record.expires_at_ms().div_ceil(1000)),
        ),
    ]))
}

fn record_from_item(item: &Item) -> Result<Versioned<SessionRecord>, PortError> {
    let mut fields = serde_json::Map::new();
    let mut summary = None;
    for (name, value) in item {
        if SESSION_META.contains(&name.as_str()) {
            continue;
        }
        let bad = || PortError::Other(format!("corrupt session attribute {name:?} in catalog"));
        let value = match (name.as_str(), value) {
            (SUMMARY, AttributeValue::S(text)) => {
                summary = Some(RawValue::from_string(text.clone()).map_err(|_| bad())?);
                continue;
            }
            (_, AttributeValue::N(text)) => serde_json::from_str(text).map_err(|_| bad())?,
            (_, AttributeValue::S(text)) => serde_json::from_str(text).map_err(|_| bad())?,
            (_, AttributeValue::Null(_)) => continue,
            _ => return Err(bad()),
        };
        fields.insert(name.clone(), value);
    }
    let mut record: SessionRecord = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| PortError::Other(format!("corrupt session record in catalog: {e}")))?;
    record.summary = summary;
    Ok(Versioned {
        version: get_n(item, VERSION)?,
        value: record,
    })
}

fn binding_from_item(item: &Item) -> Result<Option<StoredBinding>, PortError> {
    if !item.contains_key(CLAUDE_SESSION_ID) {
        return Ok(None);
    }
    Ok(Some(StoredBinding {
        binding: Binding {
            claude_session_id: get_s(item, CLAUDE_SESSION_ID)?.to_string(),
            project_key: get_s(item, PROJECT_KEY)?.to_string(),
            cwd: get_s(item, CWD)?.to_string(),
        },
        created_ms: get_n_or_zero(item, BOUND_MS)?,
    }))
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
        let detail = format!("DynamoDB {op} on {table}: {}", DisplayErrorContext(&err));
        match code.as_deref() {
            Some("ConditionalCheckFailedException") => PortError::PreconditionFailed(detail),
            Some("ResourceNotFoundException") => {
                PortError::Unavailable(self.missing_tables_hint(table))
            }
            Some("ValidationException" | "SerializationException") => PortError::Other(detail),
            // Throttling, server faults, and credential or permission refusals:
            // the client can only wait (or an operator must act).
            Some(_) => PortError::Unavailable(detail),
            None if super::aws::credentials_missing(&err) => PortError::Unavailable(
                super::aws::no_credentials(&format!("DynamoDB {op} on {table}")),
            ),
            None => match err {
                SdkError::ConstructionFailure(_) => PortError::Other(detail),
                _ => PortError::Unavailable(detail),
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
        op: &str,
        task: &TaskId,
        lo: &str,
        hi: &str,
        want: usize,
        projection: Option<&str>,
    ) -> Result<Vec<Item>, PortError> {
        let table = &self.tables.sessions;
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let limit = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
            let out = self
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
                .set_projection_expression(projection.map(str::to_string))
                .limit(limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.map_err(op, table, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) if !last.is_empty() && items.len() < want => start = Some(last),
                _ => break,
            }
        }
        items.truncate(want);
        Ok(items)
    }

    /// Describes every table: it must exist, be usable and have the key
    /// schema `migrations/` defines.
    async fn verify_tables(&self) -> Result<(), PortError> {
        let defs = crate::migrate::definitions().map_err(|e| PortError::Other(e.to_string()))?;
        for def in &defs {
            let table = table_name(self.prefix(), &def.name);
            let out = match self.client.describe_table().table_name(&table).send().await {
                Ok(out) => out,
                Err(e) if service_code(&e) == Some("ResourceNotFoundException") => {
                    return Err(PortError::Unavailable(self.missing_tables_hint(&table)));
                }
                Err(e) => return Err(self.map_err("DescribeTable", &table, e)),
            };
            let Some(desc) = out.table else {
                return Err(PortError::Other(format!(
                    "DynamoDB DescribeTable on {table}: no description returned"
                )));
            };
            crate::migrate::check_key_schema(def, &table, &desc)
                .map_err(|e| PortError::Other(e.to_string()))?;
            use aws_sdk_dynamodb::types::TableStatus;
            match desc.table_status {
                Some(TableStatus::Active | TableStatus::Updating) | None => {}
                Some(other) => {
                    return Err(PortError::Unavailable(format!(
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
        let probe = TaskId::new("readiness-probe").map_err(|e| PortError::Other(e.to_string()))?;
        let session = SessionKey::main(SessionRef {
            task_id: probe.clone(),
            project_key: ProjectKey::new("probe").map_err(|e| PortError::Other(e.to_string()))?,
            session_id: SessionId::new("probe").map_err(|e| PortError::Other(e.to_string()))?,
        });
        let (a, b, c) = tokio::join!(
            self.get_session(&session),
            self.get_idempotency(&probe, "probe"),
            self.current_epoch(&probe),
        );
        a.map(drop)?;
        b.map(drop)?;
        c.map(drop)
    }
}

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
            .map_err(|e| PortError::Other(format!("build Put: {e}")))?;

        let Some((idem_key, idem)) = write.idempotency else {
            self.client
                .put_item()
                .table_name(table)
                .set_item(Some(put.item))
                .set_condition_expression(put.condition_expression)
                .set_expression_attribute_names(put.expression_attribute_names)
                .set_expression_attribute_values(put.expression_attribute_values)
                .send()
                .await
                .map_err(|e| self.map_err("PutItem", table, e))?;
            return Ok(version);
        };

        let idem_put = Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(idempotency_item(write.key.task_id(), idem_key, idem)?))
            .build()
            .map_err(|e| PortError::Other(format!("build Put: {e}")))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().put(idem_put).build())
            .send()
            .await;
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
                    // moto may omit the reasons; its message names them.
                    let message = canceled.message().unwrap_or_default();
                    let lost = reasons
                        .iter()
                        .any(|r| matches!(*r, "ConditionalCheckFailed" | "TransactionConflict"))
                        || (reasons.is_empty()
                            && (message.contains("ConditionalCheckFailed")
                                || message.contains("TransactionConflict")));
                    if lost {
                        return Err(PortError::PreconditionFailed(format!(
                            "session record changed (transaction canceled: {reasons:?} {message})"
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
                .map_err(|e| PortError::Other(format!("corrupt session id in catalog: {e}")))?;
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
                .map_err(|e| PortError::Other(format!("corrupt subpath in catalog: {e}")))?;
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
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(idempotency_item(task, key, record)?))
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
            .map_err(|e| PortError::Other(format!("corrupt receipt in catalog: {e}")))?;
        Ok(Some(IdempotencyRecord {
            fingerprint: get_s(&item, FINGERPRINT)?.to_string(),
            receipt,
            created_ms: get_n(&item, CREATED_MS)?,
            expires_ms: match item.contains_key(EXPIRES_MS) {
                true => get_n(&item, EXPIRES_MS)?,
                false => get_n_or_zero(&item, attr::EXPIRES_AT)? * 1000,
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
            PortError::Other(format!(
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
            .map_err(|e| PortError::Other(format!("encode failure: {e}")))?;
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
                    .map_err(|e| PortError::Other(format!("corrupt failure in catalog: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Seq;

    fn key(project: &str, session: &str, sub: Option<&str>) -> SessionKey {
        SessionKey {
            session: SessionRef {
                task_id: TaskId::new("t1").unwrap(),
                project_key: ProjectKey::new(project).unwrap(),
                session_id: SessionId::new(session).unwrap(),
            },
            subpath: sub.map(|s| Subpath::new(s).unwrap()),
        }
    }

    fn in_range(sk: &str, (lo, hi): &(String, String)) -> bool {
        lo.as_str() <= sk && sk <= hi.as_str()
    }

    #[test]
    fn sort_keys_follow_the_documented_layout() {
        assert_eq!(session_sk(&key("-w-t1", "s1", None)), "M#-w-t1#s1");
        assert_eq!(
            session_sk(&key("-w-t1", "s1", Some("subagents/agent-1"))),
            "S#-w-t1#s1#subagents/agent-1"
        );
    }

    #[test]
    fn session_ranges_hold_exactly_one_projects_main_transcripts_after_the_cursor() {
        let all = sessions_range(&ProjectKey::new("p").unwrap(), None);
        for inside in ["s", "s-a", "-", "Z.9_x"] {
            assert!(
                in_range(&session_sk(&key("p", inside, None)), &all),
                "{inside}"
            );
        }
        for outside in [
            key("p-x", "s", None),
            key("pp", "s", None),
            key("P", "s", None),
            key("p", "s", Some("a")),
        ] {
            assert!(!in_range(&session_sk(&outside), &all), "{outside}");
        }
        let after = sessions_range(
            &ProjectKey::new("p").unwrap(),
            Some(&SessionId::new("s-b").unwrap()),
        );
        for (id, expected) in [
            ("s-a", false),
            ("s-b", false),
            ("s-b-", true),
            ("s-b.", true),
            ("s-b0", true),
            ("s-ba", true),
            ("s-c", true),
            ("s", false),
        ] {
            assert_eq!(
                in_range(&session_sk(&key("p", id, None)), &after),
                expected,
                "{id}"
            );
        }
    }

    #[test]
    fn subkey_ranges_hold_exactly_one_sessions_subkeys_after_the_cursor() {
        let session = key("p", "s1", None).session;
        let (lo, hi, prefix) = subkeys_range(&session, None);
        let range = (lo, hi);
        assert!(in_range(&session_sk(&key("p", "s1", Some("a/b"))), &range));
        assert!(!in_range(&session_sk(&key("p", "s1", None)), &range));
        assert!(!in_range(&session_sk(&key("p", "s1-x", Some("a"))), &range));
        assert!(!in_range(&session_sk(&key("p", "s", Some("a"))), &range));
        assert!(session_sk(&key("p", "s1", Some("a/b"))).starts_with(&prefix));
        let after = Subpath::new("a").unwrap();
        let (lo, hi, _) = subkeys_range(&session, Some(&after));
        let range = (lo, hi);
        for (sub, expected) in [("a", false), ("a/b", true), ("a-", true), ("b", true)] {
            assert_eq!(
                in_range(&session_sk(&key("p", "s1", Some(sub))), &range),
                expected,
                "{sub}"
            );
        }
    }

    #[test]
    fn records_round_trip_through_items() {
        let record = SessionRecord {
            head: Seq(7),
            parts: 7,
            bytes: 1234,
            mtime: 1_700_000_000_123,
            compacted_through: Seq(3),
            summary: Some(RawValue::from_string("{\"a\": [1, 2]}".into()).unwrap()),
            summary_version: 4,
            ..SessionRecord::default()
        };
        let k = key("p", "s1", Some("sub/x"));
        let item = session_item(&k, &record, 9).unwrap();
        assert!(matches!(item.get("head"), Some(AttributeValue::N(v)) if v == "7"));
        assert!(matches!(item.get("bytes"), Some(AttributeValue::N(v)) if v == "1234"));
        assert!(matches!(item.get(SUMMARY), Some(AttributeValue::S(v)) if v == "{\"a\": [1, 2]}"));
        let back = record_from_item(&item).unwrap();
        assert_eq!(back.version, 9);
        assert_eq!(back.value, record);
        let bare = session_item(&k, &SessionRecord::default(), 1).unwrap();
        assert_eq!(
            record_from_item(&bare).unwrap().value,
            SessionRecord::default()
        );
    }

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
