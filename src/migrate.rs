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

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;

use crate::backend::dynamo::{self, table_name};
use crate::backend::PortError;
use crate::config::{CatalogKind, Config};

/// The migration files, in order (persisted: never edit a released file,
/// add a new one).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.json",
        include_str!("../migrations/0001_initial.json"),
    ),
    (
        "0002_failures.json",
        include_str!("../migrations/0002_failures.json"),
    ),
];

/// Longest wait for a table or index to become `ACTIVE`.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(600);

/// A migration that could not be read or applied.
#[derive(Debug, thiserror::Error)]
#[error("migrate: {0}")]
pub struct MigrateError(pub String);

impl From<PortError> for MigrateError {
    fn from(err: PortError) -> Self {
        MigrateError(err.to_string())
    }
}

fn sdk_err<E>(
    op: &str,
    table: &str,
    err: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> MigrateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    MigrateError(format!(
        "DynamoDB {op} on {table}: {}",
        DisplayErrorContext(&err)
    ))
}

/// One migration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationFile {
    /// Must equal the file name's number.
    version: u32,
    /// What this migration is for.
    #[allow(dead_code)]
    description: String,
    /// Tables it defines or redefines.
    tables: Vec<TableDef>,
}

/// A key attribute's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum AttrType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

/// A primary or index key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDef {
    /// The partition key attribute.
    pub hash: String,
    /// The sort key attribute, if any.
    #[serde(default)]
    pub range: Option<String>,
}

/// A global secondary index.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    /// Index name.
    pub name: String,
    /// Its key.
    pub key: KeyDef,
    /// `ALL` or `KEYS_ONLY`.
    #[serde(default = "default_projection")]
    pub projection: String,
}

fn default_projection() -> String {
    "ALL".into()
}

/// One table as the migrations define it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// The name after `{prefix}-`.
    pub name: String,
    /// Free text for readers of the file.
    #[serde(default)]
    pub comment: Option<String>,
    /// Types of every key attribute (table and index keys).
    pub attributes: BTreeMap<String, AttrType>,
    /// The primary key (never changes once created).
    pub key: KeyDef,
    /// Only `PAY_PER_REQUEST` (on-demand) is supported.
    pub billing_mode: String,
    /// The TTL attribute (epoch seconds), if items expire.
    #[serde(default)]
    pub ttl_attribute: Option<String>,
    /// Global secondary indexes.
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
}

fn parse_file(name: &str, text: &str) -> Result<MigrationFile, MigrateError> {
    let file: MigrationFile =
        serde_json::from_str(text).map_err(|e| MigrateError(format!("migrations/{name}: {e}")))?;
    let number: u32 = name
        .split('_')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| MigrateError(format!("migrations/{name}: name must start with a number")))?;
    if file.version != number {
        return Err(MigrateError(format!(
            "migrations/{name}: version {} does not match the file number {number}",
            file.version
        )));
    }
    Ok(file)
}

fn validate(def: &TableDef) -> Result<(), MigrateError> {
    let fail = |msg: String| Err(MigrateError(format!("table {:?}: {msg}", def.name)));
    if def.billing_mode != "PAY_PER_REQUEST" {
        return fail(format!(
            "billing_mode {:?} is not supported; use PAY_PER_REQUEST",
            def.billing_mode
        ));
    }
    let keys = std::iter::once(&def.key).chain(def.global_secondary_indexes.iter().map(|i| &i.key));
    for key in keys {
        for name in std::iter::once(&key.hash).chain(key.range.as_ref()) {
            if !def.attributes.contains_key(name) {
                return fail(format!(
                    "key attribute {name:?} has no type in `attributes`"
                ));
            }
        }
    }
    for index in &def.global_secondary_indexes {
        if !matches!(index.projection.as_str(), "ALL" | "KEYS_ONLY") {
            return fail(format!(
                "index {:?}: projection must be ALL or KEYS_ONLY",
                index.name
            ));
        }
    }
    Ok(())
}

/// The tables every migration together defines, in first-definition order.
pub fn definitions() -> Result<Vec<TableDef>, MigrateError> {
    let mut tables: Vec<TableDef> = Vec::new();
    let mut last = 0;
    for (name, text) in MIGRATIONS {
        let file = parse_file(name, text)?;
        if file.version <= last {
            return Err(MigrateError(format!(
                "migrations/{name}: versions must increase"
            )));
        }
        last = file.version;
        for def in file.tables {
            validate(&def)?;
            match tables.iter_mut().find(|t| t.name == def.name) {
                Some(existing) => {
                    if existing.key != def.key {
                        return Err(MigrateError(format!(
                            "migrations/{name}: table {:?} may not change its key",
                            def.name
                        )));
                    }
                    *existing = def;
                }
                None => tables.push(def),
            }
        }
    }
    Ok(tables)
}

/// The newest migration's number.
pub fn latest_version() -> u32 {
    MIGRATIONS
        .iter()
        .filter_map(|(name, _)| name.split('_').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

fn key_schema(key: &KeyDef) -> Result<Vec<KeySchemaElement>, MigrateError> {
    let mut out = vec![KeySchemaElement::builder()
        .attribute_name(&key.hash)
        .key_type(KeyType::Hash)
        .build()
        .map_err(|e| MigrateError(e.to_string()))?];
    if let Some(range) = &key.range {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(range)
                .key_type(KeyType::Range)
                .build()
                .map_err(|e| MigrateError(e.to_string()))?,
        );
    }
    Ok(out)
}

fn key_of(schema: &[KeySchemaElement]) -> KeyDef {
    let find = |t: KeyType| {
        schema
            .iter()
            .find(|k| k.key_type == t)
            .map(|k| k.attribute_name.clone())
    };
    KeyDef {
        hash: find(KeyType::Hash).unwrap_or_default(),
        range: find(KeyType::Range),
    }
}

fn attribute_definitions(
    def: &TableDef,
    keys: &[&KeyDef],
) -> Result<Vec<AttributeDefinition>, MigrateError> {
    let mut names: Vec<&String> = keys
        .iter()
        .flat_map(|k| std::iter::once(&k.hash).chain(k.range.as_ref()))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let t = match def.attributes.get(name) {
                Some(AttrType::S) => ScalarAttributeType::S,
                Some(AttrType::N) => ScalarAttributeType::N,
                Some(AttrType::B) => ScalarAttributeType::B,
                None => return Err(MigrateError(format!("attribute {name:?} has no type"))),
            };
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(|e| MigrateError(e.to_string()))
        })
        .collect()
}

fn gsi(index: &IndexDef) -> Result<GlobalSecondaryIndex, MigrateError> {
    GlobalSecondaryIndex::builder()
        .index_name(&index.name)
        .set_key_schema(Some(key_schema(&index.key)?))
        .projection(projection(index))
        .build()
        .map_err(|e| MigrateError(e.to_string()))
}

fn projection(index: &IndexDef) -> Projection {
    let t = if index.projection == "KEYS_ONLY" {
        ProjectionType::KeysOnly
    } else {
        ProjectionType::All
    };
    Projection::builder().projection_type(t).build()
}

/// Fails unless the live table has the key the definition names.
pub fn check_key_schema(
    def: &TableDef,
    table: &str,
    desc: &TableDescription,
) -> Result<(), MigrateError> {
    let live = key_of(desc.key_schema());
    if live != def.key {
        return Err(MigrateError(format!(
            "DynamoDB table {table:?} has key {live:?}, but migrations/ define {:?}; \
             it was not created by `transcript-gateway migrate` (pick another \
             TG_DYNAMODB_TABLE_PREFIX)",
            def.key
        )));
    }
    Ok(())
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
    let client = dynamo::client(config).await?;
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
                            .map_err(|e| MigrateError(e.to_string()))?,
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
            return Err(MigrateError(format!(
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
                other => Err(MigrateError(format!(
                    "table {table} has TTL on {other:?}, migrations/ define {attribute:?}; \
                     change it by hand (DynamoDB allows one TTL attribute)"
                ))),
            };
        }
        Some(TimeToLiveStatus::Disabling) => {
            return Err(MigrateError(format!(
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
                .map_err(|e| MigrateError(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| sdk_err("UpdateTimeToLive", table, e))?;
    Ok(Some(format!("enabled TTL on {attribute}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::dynamo::{attr, TABLE_SUFFIXES};

    #[test]
    fn migrations_define_the_tables_the_adapter_uses() {
        let defs = definitions().unwrap();
        let names: Vec<_> = defs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, TABLE_SUFFIXES);
        let key = |hash: &str, range: Option<&str>| KeyDef {
            hash: hash.into(),
            range: range.map(Into::into),
        };
        assert_eq!(defs[0].key, key(attr::TASK_ID, Some(attr::SK)));
        assert_eq!(defs[1].key, key(attr::TASK_ID, Some(attr::IDEMPOTENCY_KEY)));
        assert_eq!(defs[1].ttl_attribute.as_deref(), Some(attr::EXPIRES_AT));
        assert_eq!(defs[2].key, key(attr::TASK_ID, None));
        assert!(defs.iter().all(|d| d.billing_mode == "PAY_PER_REQUEST"));
        assert_eq!(latest_version(), MIGRATIONS.len() as u32);
    }

    #[test]
    fn a_file_whose_version_differs_from_its_name_is_refused() {
        let text = r#"{"version": 2, "description": "x", "tables": []}"#;
        assert!(parse_file("0001_x.json", text).is_err());
        assert!(parse_file("0002_x.json", text).is_ok());
        assert!(parse_file(
            "0002_x.json",
            r#"{"version": 2, "description": "x", "tables": [], "typo": 1}"#
        )
        .is_err());
    }

    #[test]
    fn definitions_with_untyped_keys_or_provisioned_billing_are_refused() {
        let mut def = definitions().unwrap().remove(0);
        def.attributes.clear();
        assert!(validate(&def).is_err());
        let mut def = definitions().unwrap().remove(0);
        def.billing_mode = "PROVISIONED".into();
        assert!(validate(&def).is_err());
    }
}
