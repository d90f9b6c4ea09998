//! `transcript-gateway migrate`: creates or updates the DynamoDB tables that
//! `migrations/*.json` define, idempotently, and reports what it did.
//!
//! The files are compiled into the binary (`include_str!`), so the binary
//! alone can set up an account. Each file is numbered (`0001_...`); a later
//! file may redefine a table to add indexes or a TTL attribute, never to
//! change its key. Migrate compares the live tables with the folded
//! definitions and applies only the difference: it creates missing tables,
//! adds missing global secondary indexes, enables TTL, and waits until each
//! table is `ACTIVE`. It never deletes or rewrites anything, so running it
//! again changes nothing and says so.

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate, IndexStatus,
    TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use crate::backend::dynamo::schema::{
    attribute_definitions, check_key_schema, definitions, gsi, key_schema, latest_version,
    projection, SchemaError, TableDef,
};
use crate::backend::dynamo::{self, table_name};
use crate::backend::{BoxError, PortError};
use crate::config::{CatalogKind, Config};

/// Longest wait for a table or index to become `ACTIVE`.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);

/// A migration that could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The migration files or a live table's key are wrong.
    #[error("migrate")]
    Schema(#[from] SchemaError),
    /// The DynamoDB client could not be set up.
    #[error("migrate")]
    Port(#[from] PortError),
    /// A DynamoDB call failed.
    #[error("migrate: DynamoDB {op} on {table}")]
    Call {
        /// The operation.
        op: &'static str,
        /// The table.
        table: String,
        /// The SDK's error.
        #[source]
        source: BoxError,
    },
    /// DynamoDB answered something migrate cannot go on from.
    #[error("migrate: {0}")]
    Unexpected(String),
}

fn sdk_err<E>(
    op: &'static str,
    table: &str,
    err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> MigrateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    MigrateError::Call {
        op,
        table: table.to_string(),
        source: Box::new(err),
    }
}

/// What migrate did to one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    /// The table's full name.
    pub table: String,
    /// Changes made, in order; empty when it was up to date.
    pub actions: Vec<String>,
    /// Things left alone that an operator may want to know.
    pub notes: Vec<String>,
}

/// What a migrate run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Where the tables live, for the reader.
    pub target: String,
    /// One entry per defined table, in definition order.
    pub tables: Vec<TableReport>,
}

impl Report {
    /// How many changes were made.
    pub fn changes(&self) -> usize {
        self.tables.iter().map(|t| t.actions.len()).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "migrate: DynamoDB tables {}", self.target)?;
        for t in &self.tables {
            if t.actions.is_empty() {
                writeln!(f, "  {}: up to date", t.table)?;
            } else {
                writeln!(f, "  {}: {}", t.table, t.actions.join("; "))?;
            }
            for note in &t.notes {
                writeln!(f, "  {}: note: {note}", t.table)?;
            }
        }
        let version = latest_version();
        match self.changes() {
            0 => writeln!(
                f,
                "migrate: nothing to do; all {} tables are up to date (migrations through {version:04})",
                self.tables.len()
            ),
            n => writeln!(
                f,
                "migrate: done; {n} change(s) applied (migrations through {version:04})"
            ),
        }
    }
}

/// Runs every migration against the configured account (or emulator).
pub async fn run(config: &Config) -> Result<Report, MigrateError> {
    if config.catalog != CatalogKind::Dynamodb {
        return Ok(Report {
            target: "not used: TG_CATALOG is `embedded` (its tables are created on open); \
                     set TG_CATALOG=dynamodb to migrate DynamoDB"
                .into(),
            tables: Vec::new(),
        });
    }
    // Validates the prefix before anything is created.
    dynamo::TableNames::new(&config.dynamodb_table_prefix)?;
    let client = dynamo::client(&config.dynamodb()).await?;
    let target = format!(
        "with prefix {:?} {}",
        config.dynamodb_table_prefix,
        config.dynamodb_endpoint_url.as_deref().map_or(
            "in the configured AWS account and region".to_string(),
            |u| format!("at {u}")
        )
    );
    apply(&client, &config.dynamodb_table_prefix, target).await
}

/// Brings every table under `prefix` in line with the definitions.
pub async fn apply(client: &Client, prefix: &str, target: String) -> Result<Report, MigrateError> {
    let mut report = Report {
        target,
        tables: Vec::new(),
    };
    for def in definitions()? {
        let table = table_name(prefix, &def.name);
        report.tables.push(apply_table(client, &def, &table).await?);
    }
    Ok(report)
}

async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, MigrateError> {
    match client.describe_table().table_name(table).send().await {
        Ok(out) => Ok(out.table),
        Err(e)
            if e.as_service_error()
                .map(|s| s.is_resource_not_found_exception())
                == Some(true) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_err("DescribeTable", table, e)),
    }
}

async fn apply_table(
    client: &Client,
    def: &TableDef,
    table: &str,
) -> Result<TableReport, MigrateError> {
    let mut report = TableReport {
        table: table.to_string(),
        actions: Vec::new(),
        notes: Vec::new(),
    };
    let desc = match describe(client, table).await? {
        Some(desc) => desc,
        None => {
            create_table(client, def, table).await?;
            let desc = wait_active(client, table).await?;
            report.actions.push("created (ACTIVE)".into());
            desc
        }
    };
    check_key_schema(def, table, &desc)?;
    if desc.table_status != Some(TableStatus::Active) && report.actions.is_empty() {
        wait_active(client, table).await?;
    }
    let billing = desc
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .map_or("PROVISIONED", |m| m.as_str());
    if billing != def.billing_mode {
        report.notes.push(format!(
            "billing mode is {billing}, migrations/ define {}; left as is",
            def.billing_mode
        ));
    }

    let live: Vec<&str> = desc
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    for index in &def.global_secondary_indexes {
        if live.contains(&index.name.as_str()) {
            continue;
        }
        let keys = [&def.key, &index.key];
        client
            .update_table()
            .table_name(table)
            .set_attribute_definitions(Some(attribute_definitions(def, &keys)?))
            .global_secondary_index_updates(
                GlobalSecondaryIndexUpdate::builder()
                    .create(
                        CreateGlobalSecondaryIndexAction::builder()
                            .index_name(&index.name)
                            .set_key_schema(Some(key_schema(&index.key)?))
                            .projection(projection(index))
                            .build()
                            .map_err(SchemaError::from)?,
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_err("UpdateTable", table, e))?;
        wait_active(client, table).await?;
        report.actions.push(format!("added index {}", index.name));
    }
    for extra in live {
        if !def.global_secondary_indexes.iter().any(|i| i.name == extra) {
            report
                .notes
                .push(format!("index {extra} is not in migrations/; left as is"));
        }
    }

    if let Some(attribute) = &def.ttl_attribute {
        if let Some(action) = ensure_ttl(client, table, attribute).await? {
            report.actions.push(action);
        }
    }
    Ok(report)
}

async fn create_table(client: &Client, def: &TableDef, table: &str) -> Result<(), MigrateError> {
    let mut keys = vec![&def.key];
    keys.extend(def.global_secondary_indexes.iter().map(|i| &i.key));
    let indexes = def
        .global_secondary_indexes
        .iter()
        .map(gsi)
        .collect::<Result<Vec<_>, _>>()?;
    let result = client
        .create_table()
        .table_name(table)
        .set_attribute_definitions(Some(attribute_definitions(def, &keys)?))
        .set_key_schema(Some(key_schema(&def.key)?))
        .billing_mode(BillingMode::PayPerRequest)
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        // Another migrate created it meanwhile: fine, we wait for it below.
        Err(e)
            if e.as_service_error()
                .map(|s| s.is_resource_in_use_exception())
                == Some(true) =>
        {
            Ok(())
        }
        Err(e) => Err(sdk_err("CreateTable", table, e)),
    }
}

/// Waits until the table and all its indexes are `ACTIVE`.
async fn wait_active(client: &Client, table: &str) -> Result<TableDescription, MigrateError> {
    let deadline = Instant::now() + ACTIVE_TIMEOUT;
    let mut pause = Duration::from_millis(100);
    loop {
        if let Some(desc) = describe(client, table).await? {
            let indexes_active = desc
                .global_secondary_indexes()
                .iter()
                .all(|i| i.index_status() == Some(&IndexStatus::Active));
            if desc.table_status == Some(TableStatus::Active) && indexes_active {
                return Ok(desc);
            }
        }
        if Instant::now() > deadline {
            return Err(MigrateError::Unexpected(format!(
                "table {table} did not become ACTIVE within {} s",
                ACTIVE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Enables TTL on `attribute` unless it already is; returns the action taken.
async fn ensure_ttl(
    client: &Client,
    table: &str,
    attribute: &str,
) -> Result<Option<String>, MigrateError> {
    let out = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_err("DescribeTimeToLive", table, e))?;
    let desc = out.time_to_live_description;
    let status = desc.as_ref().and_then(|d| d.time_to_live_status.clone());
    let live_attr = desc.as_ref().and_then(|d| d.attribute_name.as_deref());
    match status {
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling) => {
            return match live_attr {
                Some(a) if a == attribute => Ok(None),
                other => Err(MigrateError::Unexpected(format!(
                    "table {table} has TTL on {other:?}, migrations/ define {attribute:?}; \
                     change it by hand (DynamoDB allows one TTL attribute)"
                ))),
            };
        }
        Some(TimeToLiveStatus::Disabling) => {
            return Err(MigrateError::Unexpected(format!(
                "table {table}: TTL is being disabled; run migrate again in an hour"
            )));
        }
        _ => {}
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attribute)
                .build()
                .map_err(SchemaError::from)?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("UpdateTimeToLive", table, e))?;
    Ok(Some(format!("enabled TTL on {attribute}")))
}
