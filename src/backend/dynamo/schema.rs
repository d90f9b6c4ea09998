//! The tables as `migrations/` define them: the migration files (persisted:
//! never edit a released file, add a new one), their checks, the AWS types
//! they turn into, and the check that a live table has the key they name.
//! The adapter checks its tables with it; `transcript-gateway migrate`
//! ([`crate::migrate`]) creates and updates them from it.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableDescription,
};
use serde::Deserialize;

/// A migration file or table definition that breaks the rules, or a live
/// table that does not match its definition.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A rule is broken; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// A migration file is not the JSON it should be.
    #[error("migrations/{file}")]
    Parse {
        /// The file name.
        file: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A definition cannot be turned into the SDK's types.
    #[error("building the table definition")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
}

/// The migration files, in order (persisted: never edit a released file,
/// add a new one).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_initial.json",
        include_str!("../../../migrations/0001_initial.json"),
    ),
    (
        "0002_failures.json",
        include_str!("../../../migrations/0002_failures.json"),
    ),
    (
        "0003_task_activity.json",
        include_str!("../../../migrations/0003_task_activity.json"),
    ),
];

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

fn parse_file(name: &str, text: &str) -> Result<MigrationFile, SchemaError> {
    let file: MigrationFile = serde_json::from_str(text).map_err(|source| SchemaError::Parse {
        file: name.to_string(),
        source,
    })?;
    let number: u32 = name
        .split('_')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            SchemaError::Invalid(format!("migrations/{name}: name must start with a number"))
        })?;
    if file.version != number {
        return Err(SchemaError::Invalid(format!(
            "migrations/{name}: version {} does not match the file number {number}",
            file.version
        )));
    }
    Ok(file)
}

fn validate(def: &TableDef) -> Result<(), SchemaError> {
    let fail = |msg: String| Err(SchemaError::Invalid(format!("table {:?}: {msg}", def.name)));
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
pub fn definitions() -> Result<Vec<TableDef>, SchemaError> {
    let mut tables: Vec<TableDef> = Vec::new();
    let mut last = 0;
    for (name, text) in MIGRATIONS {
        let file = parse_file(name, text)?;
        if file.version <= last {
            return Err(SchemaError::Invalid(format!(
                "migrations/{name}: versions must increase"
            )));
        }
        last = file.version;
        for def in file.tables {
            validate(&def)?;
            match tables.iter_mut().find(|t| t.name == def.name) {
                Some(existing) => {
                    if existing.key != def.key {
                        return Err(SchemaError::Invalid(format!(
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

/// A key definition as the SDK's key schema.
pub fn key_schema(key: &KeyDef) -> Result<Vec<KeySchemaElement>, SchemaError> {
    let mut out = vec![KeySchemaElement::builder()
        .attribute_name(&key.hash)
        .key_type(KeyType::Hash)
        .build()?];
    if let Some(range) = &key.range {
        out.push(
            KeySchemaElement::builder()
                .attribute_name(range)
                .key_type(KeyType::Range)
                .build()?,
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

/// The attribute types of `keys` (table and index keys) as the SDK wants them.
pub fn attribute_definitions(
    def: &TableDef,
    keys: &[&KeyDef],
) -> Result<Vec<AttributeDefinition>, SchemaError> {
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
                None => {
                    return Err(SchemaError::Invalid(format!(
                        "attribute {name:?} has no type"
                    )))
                }
            };
            Ok(AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()?)
        })
        .collect()
}

/// An index definition as the SDK's global secondary index.
pub fn gsi(index: &IndexDef) -> Result<GlobalSecondaryIndex, SchemaError> {
    Ok(GlobalSecondaryIndex::builder()
        .index_name(&index.name)
        .set_key_schema(Some(key_schema(&index.key)?))
        .projection(projection(index))
        .build()?)
}

/// An index's projection as the SDK's.
pub fn projection(index: &IndexDef) -> Projection {
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
) -> Result<(), SchemaError> {
    let live = key_of(desc.key_schema());
    if live != def.key {
        return Err(SchemaError::Invalid(format!(
            "DynamoDB table {table:?} has key {live:?}, but migrations/ define {:?}; \
             it was not created by `transcript-gateway migrate` (pick another \
             TG_DYNAMODB_TABLE_PREFIX)",
            def.key
        )));
    }
    Ok(())
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
