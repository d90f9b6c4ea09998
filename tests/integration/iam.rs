//! The IAM policies in `deploy/iam/` grant exactly the AWS calls the code
//! makes: the gateway's role what `src/backend/` calls, the migration role
//! what `src/migrate.rs` calls, and workers nothing at all.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The IAM action that authorises one AWS SDK operation (the fluent method
/// name the code calls).
fn action(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "put_object" => "s3:PutObject",
        // HeadObject is authorised by s3:GetObject.
        "get_object" | "head_object" => "s3:GetObject",
        "delete_object" => "s3:DeleteObject",
        "list_objects_v2" => "s3:ListBucket",
        "get_item" => "dynamodb:GetItem",
        "batch_get_item" => "dynamodb:BatchGetItem",
        "query" => "dynamodb:Query",
        "put_item" => "dynamodb:PutItem",
        "update_item" => "dynamodb:UpdateItem",
        "delete_item" => "dynamodb:DeleteItem",
        "describe_table" => "dynamodb:DescribeTable",
        "create_table" => "dynamodb:CreateTable",
        "update_table" => "dynamodb:UpdateTable",
        "describe_time_to_live" => "dynamodb:DescribeTimeToLive",
        "update_time_to_live" => "dynamodb:UpdateTimeToLive",
        // Authorised per item: see transact_item_actions.
        "transact_write_items" => return None,
        _ => return None,
    })
}

/// Every AWS SDK operation a source file calls: `.operation()` directly
/// before `.bucket(`, `.table_name(`, `.transact_items(` and friends, found
/// as a method call with no arguments on a line of its own or after
/// `client.`.
fn operations(source: &str) -> BTreeSet<String> {
    let known = [
        "put_object",
        "get_object",
        "head_object",
        "delete_object",
        "delete_objects",
        "list_objects_v2",
        "list_objects",
        "copy_object",
        "create_multipart_upload",
        "get_item",
        "query",
        "scan",
        "put_item",
        "update_item",
        "delete_item",
        "batch_write_item",
        "batch_get_item",
        "transact_write_items",
        "transact_get_items",
        "describe_table",
        "create_table",
        "update_table",
        "delete_table",
        "describe_time_to_live",
        "update_time_to_live",
        "list_tables",
    ];
    let mut found = BTreeSet::new();
    for op in known {
        if source.contains(&format!(".{op}()")) {
            found.insert(op.to_string());
        }
    }
    found
}

/// `TransactWriteItems` needs the action of each item kind it holds.
fn transact_item_actions(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (builder, act) in [
        (".put(", "dynamodb:PutItem"),
        (".update(", "dynamodb:UpdateItem"),
        (".delete(", "dynamodb:DeleteItem"),
        (".condition_check(", "dynamodb:ConditionCheckItem"),
    ] {
        if source.contains(&format!("TransactWriteItem::builder(){builder}")) {
            out.insert(act.to_string());
        }
    }
    out
}

fn actions_needed(files: &[&str]) -> BTreeSet<String> {
    let mut needed = BTreeSet::new();
    for file in files {
        let source = read(file);
        for op in operations(&source) {
            match action(&op) {
                Some(a) => {
                    needed.insert(a.to_string());
                }
                None if op == "transact_write_items" => {
                    let items = transact_item_actions(&source);
                    assert!(
                        !items.is_empty(),
                        "{file}: transaction items not recognised"
                    );
                    needed.extend(items);
                }
                None => panic!(
                    "{file} calls {op}: map it to its IAM action here and grant it in deploy/iam/"
                ),
            }
        }
    }
    needed
}

fn statements(policy: &Value) -> Vec<&Value> {
    policy["Statement"]
        .as_array()
        .expect("Statement")
        .iter()
        .collect()
}

fn list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect(),
        other => panic!("expected a string or a list, got {other}"),
    }
}

fn allowed_actions(policy: &Value) -> BTreeSet<String> {
    statements(policy)
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| list(&s["Action"]))
        .collect()
}

/// The table (and index) ARNs of every migration's tables with the default prefix.
fn table_arns() -> BTreeSet<String> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("migrations"))
        .expect("migrations/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "found the migrations: {files:?}");
    let mut arns = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let migration: Value = serde_json::from_str(&text).unwrap();
        for table in migration["tables"].as_array().unwrap() {
            let arn = format!(
                "arn:aws:dynamodb:REGION:ACCOUNT:table/transcript-gateway-{}",
                table["name"].as_str().unwrap()
            );
            // A query of an index is authorised on the index's own ARN.
            for index in table["global_secondary_indexes"]
                .as_array()
                .into_iter()
                .flatten()
            {
                arns.insert(format!("{arn}/index/{}", index["name"].as_str().unwrap()));
            }
            arns.insert(arn);
        }
    }
    arns
}

#[test]
fn the_gateway_policy_grants_exactly_what_the_backends_call() {
    let policy: Value = serde_json::from_str(&read("deploy/iam/gateway-policy.json")).unwrap();
    // The S3 adapter and every file of the DynamoDB adapter.
    let mut files = vec!["src/backend/s3.rs".to_string()];
    for entry in std::fs::read_dir(root().join("src/backend/dynamo")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        files.push(format!("src/backend/dynamo/{name}"));
    }
    assert!(files.len() >= 3, "found the adapters: {files:?}");
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    let mut needed = actions_needed(&files);
    assert!(
        needed.contains("s3:PutObject") && needed.contains("dynamodb:Query"),
        "the scan found the calls: {needed:?}"
    );
    // Directory buckets: the SDK opens a session before any object call.
    assert!(read("src/backend/s3.rs").contains("x-s3"));
    needed.insert("s3express:CreateSession".into());
    assert_eq!(allowed_actions(&policy), needed);
    assert!(
        statements(&policy).iter().all(|s| s["Effect"] == "Allow"),
        "no Deny needed"
    );
    for statement in statements(&policy) {
        let actions = list(&statement["Action"]);
        let resources = list(&statement["Resource"]);
        assert!(
            !resources.iter().any(|r| r == "*" || r.ends_with(":*")),
            "{statement}: resources must be scoped"
        );
        if actions.iter().any(|a| a.starts_with("dynamodb:")) {
            assert_eq!(
                resources.iter().cloned().collect::<BTreeSet<_>>(),
                table_arns()
            );
        }
        if actions.iter().any(|a| a == "s3:GetObject") {
            assert_eq!(
                resources,
                vec!["arn:aws:s3:::BUCKET/transcripts/*".to_string()]
            );
        }
        if actions.iter().any(|a| a == "s3:ListBucket") {
            assert_eq!(resources, vec!["arn:aws:s3:::BUCKET".to_string()]);
            assert_eq!(
                list(&statement["Condition"]["StringLike"]["s3:prefix"]),
                vec!["transcripts/*".to_string()],
                "listing stays inside the prefix"
            );
        }
    }
}

#[test]
fn the_migration_policy_grants_exactly_what_migrate_calls() {
    let policy: Value = serde_json::from_str(&read("deploy/iam/migrate-policy.json")).unwrap();
    let needed = actions_needed(&["src/migrate.rs"]);
    assert!(needed.contains("dynamodb:CreateTable"), "{needed:?}");
    assert_eq!(allowed_actions(&policy), needed);
    for statement in statements(&policy) {
        let resources: BTreeSet<String> = list(&statement["Resource"]).into_iter().collect();
        assert_eq!(resources, table_arns());
    }
}

#[test]
fn workers_need_no_aws_access_at_all() {
    let policy: Value = serde_json::from_str(&read("deploy/iam/worker-policy.json")).unwrap();
    assert!(
        allowed_actions(&policy).is_empty(),
        "a worker is allowed nothing"
    );
    let denied: BTreeSet<String> = statements(&policy)
        .into_iter()
        .filter(|s| s["Effect"] == "Deny")
        .flat_map(|s| list(&s["Action"]))
        .collect();
    for service in ["s3:*", "s3express:*", "dynamodb:*"] {
        assert!(denied.contains(service), "{service} is denied explicitly");
    }
    // And the Python adapter, what a worker runs, holds no AWS client.
    let adapter = read("clients/python/src/transcript_gateway/_store.py");
    assert!(
        !adapter.contains("boto"),
        "the adapter must not talk to AWS"
    );
}

#[test]
fn the_scan_recognises_calls_and_refuses_unknown_ones() {
    let source =
        "client\n    .put_object()\n    .bucket(b)\n; self.client.describe_table().table_name(t)";
    assert_eq!(
        operations(source),
        ["describe_table", "put_object"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(
        action("scan"),
        None,
        "an unmapped operation cannot pass unnoticed"
    );
}
