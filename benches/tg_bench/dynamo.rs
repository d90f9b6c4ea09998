//! The DynamoDB catalog in the benchmark: fresh tables for gateways that
//! use it, and the direct write the append series compare against.

use std::path::Path;
use std::process::Command;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use crate::gateway::Spec;
use crate::{err, Env, Res};

/// The `TG_*` settings of a gateway on DynamoDB with tables under `prefix`.
pub fn settings(endpoint: &str, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TG_CATALOG", "dynamodb".to_string()),
        ("TG_DYNAMODB_ENDPOINT_URL", endpoint.to_string()),
        ("TG_DYNAMODB_TABLE_PREFIX", prefix.to_string()),
    ]
}

/// Creates the tables under `prefix` with `transcript-gateway migrate`.
pub fn migrate(env: &Env, endpoint: &str, prefix: &str) -> Res<()> {
    let out = Command::new(&env.gateway_bin)
        .arg("migrate")
        .envs(settings(endpoint, prefix))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(Path::new("."))
        .output()?;
    if !out.status.success() {
        return Err(err(format!(
            "migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// `spec` with its catalog on DynamoDB, in fresh tables named after
/// `tables` (created here).
pub fn on_dynamodb(env: &Env, endpoint: &str, tables: &str, mut spec: Spec) -> Res<Spec> {
    let tables = tables.replace('/', "-");
    migrate(env, endpoint, &tables)?;
    for (k, v) in settings(endpoint, &tables) {
        spec = spec.with(k, v);
    }
    Ok(spec)
}

/// Conditional writes straight to the sessions table, as the baseline.
pub struct Direct {
    client: Client,
    table: String,
}

impl Direct {
    /// A client for the emulator, writing to the sessions table under `prefix`.
    pub async fn new(endpoint: &str, prefix: &str) -> Res<Self> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        Ok(Self {
            client: Client::new(&sdk),
            table: transcript_gateway::backend::dynamo::table_name(prefix, "sessions"),
        })
    }

    /// One conditional `PutItem` of a record-sized item that must not exist
    /// yet, as the gateway's first write of a session record.
    pub async fn put_new(&self, sk: &str) -> Res<()> {
        let n = |v: u64| AttributeValue::N(v.to_string());
        self.client
            .put_item()
            .table_name(&self.table)
            .item("task_id", AttributeValue::S("bench-direct-dynamodb".into()))
            .item("sk", AttributeValue::S(sk.to_string()))
            .item("version", n(1))
            .item("head", n(1))
            .item("parts", n(1))
            .item("bytes", n(1200))
            .item("mtime", n(transcript_gateway::domain::clock::now_ms()))
            .item("digest", AttributeValue::S("0".repeat(64)))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "PutItem: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                ))
            })?;
        Ok(())
    }
}
