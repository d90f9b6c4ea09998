//! The DynamoDB catalog against moto: the catalog conformance suite, binding
//! races, writer fencing, `migrate`, the fail-fast start without tables,
//! catalog drift repair (also on the embedded catalog), and cross-worker
//! resume. Tests skip, saying why, without `TG_TEST_DYNAMODB_ENDPOINT`;
//! race tests use `TG_TEST_DYNAMODB_SERIAL_ENDPOINT` (moto with requests
//! serialized: stock moto server does not apply conditional writes
//! atomically under concurrency, real DynamoDB does). With
//! `TG_TEST_S3_ENDPOINT` set, objects go to S3 too (the production pairing).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use transcript_gateway::backend::{
    dynamo, BindOutcome, CatalogPort, IdempotencyRecord, ObjectPort, Page, PortError,
    SessionRecord, SessionWrite, StoredBinding, TaskActivity, TaskCursor, TaskRow, Versioned,
    WriterFence,
};
use transcript_gateway::config::{CatalogKind, Config, StorageKind};
use transcript_gateway::domain::{ProjectKey, SessionId, SessionKey, SessionRef, Subpath, TaskId};
use transcript_gateway::engine::{AppendRequest, Engine, EngineConfig};
use transcript_gateway::migrate;

use crate::common::{
    append, embedded_ports, emulator_env, fresh_id, load, run_binary, ChildGateway, Session,
    TestGateway, PROJECT,
};

pub(crate) const ENDPOINT: &str = "TG_TEST_DYNAMODB_ENDPOINT";
pub(crate) const SERIAL_ENDPOINT: &str = "TG_TEST_DYNAMODB_SERIAL_ENDPOINT";

/// A config pointing the catalog at `endpoint` with table `prefix`.
fn dynamo_config(endpoint: &str, prefix: &str) -> Config {
    Config {
        catalog: CatalogKind::Dynamodb,
        dynamodb_endpoint_url: Some(endpoint.to_string()),
        dynamodb_table_prefix: prefix.to_string(),
        ..Config::default()
    }
}

/// Runs the migrations under a fresh prefix and opens the catalog on it.
pub(crate) async fn migrated_catalog(endpoint: &str) -> (Arc<dyn CatalogPort>, Config) {
    let config = dynamo_config(endpoint, &fresh_id("tg"));
    let report = migrate::run(&config).await.expect("migrate");
    assert_eq!(report.tables.len(), 4, "{report}");
    let catalog = dynamo::connect(&config.dynamodb()).await.expect("connect");
    catalog.check().await.expect("check after migrate");
    (catalog, config)
}

/// S3 when `TG_TEST_S3_ENDPOINT` is set, else files in `dir`.
pub(crate) async fn object_store(dir: &std::path::Path, prefix: &str) -> Arc<dyn ObjectPort> {
    match (
        std::env::var("TG_TEST_S3_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty()),
        std::env::var("TG_TEST_S3_BUCKET")
            .ok()
            .filter(|v| !v.is_empty()),
    ) {
        (Some(endpoint), Some(bucket)) => {
            let config = Config {
                storage: StorageKind::S3,
                s3_bucket: Some(bucket),
                s3_endpoint_url: Some(endpoint),
                s3_force_path_style: true,
                s3_prefix: prefix.to_string(),
                ..Config::default()
            };
            transcript_gateway::backend::s3::connect(&config.s3())
                .await
                .expect("connect S3")
        }
        _ => embedded_ports(dir).0,
    }
}

fn entries(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"type": "user", "tag": tag, "i": i, "uuid": fresh_id("u")}))
        .collect()
}

fn raw(values: &[Value]) -> Vec<Box<serde_json::value::RawValue>> {
    values
        .iter()
        .map(|v| serde_json::value::RawValue::from_string(v.to_string()).expect("json"))
        .collect()
}

fn session_key(task: &str, session: &str, subpath: Option<&str>) -> SessionKey {
    SessionKey {
        session: SessionRef {
            task_id: TaskId::new(task).expect("task"),
            project_key: ProjectKey::new(PROJECT).expect("project"),
            session_id: SessionId::new(session).expect("session"),
        },
        subpath: subpath.map(|s| Subpath::new(s).expect("subpath")),
    }
}

async fn engine_append(engine: &Engine, key: &SessionKey, batch: &[Value]) -> u64 {
    engine
        .append(AppendRequest {
            key: key.clone(),
            entries: raw(batch),
            idempotency_key: None,
            summary: None,
            writer_epoch: None,
        })
        .await
        .expect("append")
        .seq
        .0
}

async fn engine_load(engine: &Engine, key: &SessionKey) -> Vec<Value> {
    crate::common::engine_load(engine, key)
        .await
        .expect("load")
        .unwrap_or_default()
}

/// Sends `writers` concurrent binding PUTs for one task, the i-th with
/// `value(i)`; returns the statuses and the bodies.
async fn binding_race(
    gw: &TestGateway,
    task: &str,
    writers: usize,
    value: impl Fn(usize) -> String,
) -> Vec<(u16, Value)> {
    let url = gw.url(&format!("/v1/tasks/{task}/binding"));
    let calls: Vec<_> = (0..writers)
        .map(|i| {
            let http = gw.http.clone();
            let url = url.clone();
            let body = json!({
                "claude_session_id": value(i),
                "project_key": format!("-workspace-{task}"),
                "cwd": format!("/workspace/{task}"),
            });
            tokio::spawn(async move {
                let resp = http
                    .put(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("PUT binding");
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::new();
    for call in calls {
        out.push(call.await.expect("join"));
    }
    out
}

async fn assert_binding_races(gw: &TestGateway, rounds: usize, writers: usize) {
    for _ in 0..rounds {
        let task = fresh_id("bind");
        let results = binding_race(gw, &task, writers, |i| format!("sess-{i}")).await;
        let created: Vec<_> = results.iter().filter(|(s, _)| *s == 201).collect();
        let conflicts = results
            .iter()
            .filter(|(s, b)| *s == 409 && b["error"]["code"] == "binding_conflict")
            .count();
        assert_eq!(created.len(), 1, "exactly one 201: {results:?}");
        assert_eq!(
            conflicts,
            writers - 1,
            "the rest 409 binding_conflict: {results:?}"
        );
        let winner = created[0].1["data"]["claude_session_id"]
            .as_str()
            .expect("winner")
            .to_string();
        let got: Value = gw
            .http
            .get(gw.url(&format!("/v1/tasks/{task}/binding")))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("json");
        assert_eq!(got["data"]["claude_session_id"], winner.as_str());
        // The same value again, concurrently: every one 200.
        let again = binding_race(gw, &task, writers, |_| winner.clone()).await;
        assert!(
            again.iter().all(|(s, _)| *s == 200),
            "same value must be 200: {again:?}"
        );
        // Same value from the start on a fresh task: one 201, the rest 200.
        let task = fresh_id("bind");
        let same = binding_race(gw, &task, writers, |_| "sess-same".into()).await;
        let statuses: Vec<u16> = same.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            writers - 1,
            "{statuses:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_binding_puts_have_exactly_one_winner() {
    let test = "concurrent_binding_puts_have_exactly_one_winner";
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::embedded().await;
    assert_binding_races(&gw, 3, 20).await;
    gw.stop().await;
    eprintln!("{test}: embedded in {:?}", started.elapsed());
    let Some(serial) = emulator_env(SERIAL_ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let (catalog, _) = migrated_catalog(&serial).await;
    let (objects, _) = embedded_ports(dir.path());
    let gw = TestGateway::over(objects, catalog, Config::default()).await;
    assert_binding_races(&gw, 5, 20).await;
    gw.stop().await;
    eprintln!("{test}: DynamoDB in {:?}", started.elapsed());
}

#[tokio::test]
async fn after_a_lease_bump_a_stale_epoch_append_is_refused_and_writes_nothing() {
    let test = "after_a_lease_bump_a_stale_epoch_append_is_refused_and_writes_nothing";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, config) = migrated_catalog(&endpoint).await;
    let objects = object_store(dir.path(), &config.dynamodb_table_prefix).await;
    let gw = TestGateway::over(objects, catalog, Config::default()).await;
    let s = Session::fresh();
    let lease = |gw: &TestGateway| {
        let url = gw.url(&format!("/v1/tasks/{}/lease", s.task));
        let http = gw.http.clone();
        async move {
            let resp = http.post(url).send().await.expect("lease");
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.expect("json")["data"]["epoch"]
                .as_u64()
                .expect("epoch")
        }
    };
    let post = |epoch: u64, batch: Value| {
        let http = gw.http.clone();
        let url = s.entries(&gw.base_url);
        async move {
            let resp = http
                .post(url)
                .header("x-writer-epoch", epoch.to_string())
                .json(&json!({ "entries": batch }))
                .send()
                .await
                .expect("append");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let old = lease(&gw).await;
    assert_eq!(old, 1, "the first lease is epoch 1");
    let (status, _) = post(old, json!([{"by": "A", "n": 1}])).await;
    assert_eq!(status, 200);
    let new = lease(&gw).await;
    assert_eq!(new, 2);
    let (status, _) = post(new, json!([{"by": "B", "n": 1}])).await;
    assert_eq!(status, 200);
    let (_, before) = load(&gw.http, &s.entries(&gw.base_url)).await;
    let (status, body) = post(old, json!([{"by": "A", "n": 2}])).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "stale_writer");
    let (status, after) = load(&gw.http, &s.entries(&gw.base_url)).await;
    assert_eq!(status, 200);
    assert_eq!(after, before, "a refused append writes nothing");
    assert_eq!(
        after,
        vec![json!({"by": "A", "n": 1}), json!({"by": "B", "n": 1})]
    );
    let (status, body) = post(new, json!([{"by": "B", "n": 2}])).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["seq"], 3,
        "the refused append took no sequence number"
    );
    gw.stop().await;
    eprintln!("{test}: {:?}", started.elapsed());
}

fn borrowed<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn migrate_is_idempotent_against_moto() {
    let test = "migrate_is_idempotent_against_moto";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let prefix = fresh_id("tg");
    let env = [
        ("TG_CATALOG", "dynamodb"),
        ("TG_DYNAMODB_ENDPOINT_URL", endpoint.as_str()),
        ("TG_DYNAMODB_TABLE_PREFIX", prefix.as_str()),
    ];
    let (code, first, err) = run_binary(&["migrate"], &env);
    let ok = code == Some(0);
    assert!(ok, "first migrate failed: {first}{err}");
    for table in ["sessions", "idempotency", "tasks", "failures"] {
        assert!(
            first.contains(&format!("{prefix}-{table}: created (ACTIVE)")),
            "first run must create {table}:\n{first}"
        );
    }
    assert!(first.contains("enabled TTL on expires_at"), "{first}");
    assert_eq!(
        first.matches("enabled TTL on expires_at").count(),
        3,
        "idempotency, failures and the per-minute counters in tasks expire: {first}"
    );
    assert!(first.contains("done; 7 change(s) applied"), "{first}");

    let (code, second, err) = run_binary(&["migrate"], &env);
    let ok = code == Some(0);
    assert!(ok, "second migrate failed: {second}{err}");
    for table in ["sessions", "idempotency", "tasks", "failures"] {
        assert!(
            second.contains(&format!("{prefix}-{table}: up to date")),
            "{second}"
        );
    }
    assert!(second.contains("nothing to do"), "{second}");

    // The tables are really there, with the key and TTL the migrations define.
    let config = dynamo_config(&endpoint, &prefix);
    let client = dynamo::client(&config.dynamodb()).await.expect("client");
    let ttl = client
        .describe_time_to_live()
        .table_name(format!("{prefix}-idempotency"))
        .send()
        .await
        .expect("describe TTL");
    let ttl = ttl.time_to_live_description.expect("ttl");
    assert_eq!(ttl.attribute_name.as_deref(), Some("expires_at"));
    let catalog = dynamo::connect(&config.dynamodb()).await.expect("connect");
    catalog.check().await.expect("check passes after migrate");
    eprintln!("{test}: {:?}", started.elapsed());
}

#[tokio::test]
async fn migrate_upgrades_a_tasks_table_from_before_the_activity_index_in_place() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType,
    };
    let test = "migrate_upgrades_a_tasks_table_from_before_the_activity_index_in_place";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let prefix = fresh_id("tg");
    let config = dynamo_config(&endpoint, &prefix);
    let client = dynamo::client(&config.dynamodb()).await.expect("client");
    // The tasks table as the first migration made it, holding a binding.
    let tasks = format!("{prefix}-tasks");
    client
        .create_table()
        .table_name(&tasks)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("task_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("task_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the old tasks table");
    let task = fresh_id("task");
    client
        .put_item()
        .table_name(&tasks)
        .item("task_id", AttributeValue::S(task.clone()))
        .item("claude_session_id", AttributeValue::S("c-1".into()))
        .item("project_key", AttributeValue::S("-w".into()))
        .item("cwd", AttributeValue::S("/w".into()))
        .item("bound_ms", AttributeValue::N("1".into()))
        .item("epoch", AttributeValue::N("3".into()))
        .send()
        .await
        .expect("an item from before");

    let env = [
        ("TG_CATALOG", "dynamodb"),
        ("TG_DYNAMODB_ENDPOINT_URL", endpoint.as_str()),
        ("TG_DYNAMODB_TABLE_PREFIX", prefix.as_str()),
    ];
    let (code, out, err) = run_binary(&["migrate"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "{tasks}: added index activity; enabled TTL on expires_at"
        )),
        "the old table is upgraded in place: {out}"
    );

    // The item from before is intact, and the task joins the listing once
    // its totals are stored.
    let catalog = dynamo::connect(&config.dynamodb()).await.expect("connect");
    catalog
        .check()
        .await
        .expect("check passes after the upgrade");
    let id = TaskId::new(task.clone()).unwrap();
    let row = catalog
        .get_task(&id)
        .await
        .unwrap()
        .expect("the task's item");
    assert_eq!(row.epoch, 3);
    assert_eq!(
        row.binding.expect("binding").binding.claude_session_id,
        "c-1"
    );
    assert!(catalog.list_tasks(None, 10).await.unwrap().items.is_empty());
    let totals = TaskActivity {
        active_ms: 42,
        sessions: 1,
        ..TaskActivity::default()
    };
    catalog.put_task_activity(&id, Some(&totals)).await.unwrap();
    let listed = catalog.list_tasks(None, 10).await.unwrap().items;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].activity.as_ref(), Some(&totals));
    assert_eq!(listed[0].epoch, 3, "the listing carries the item's epoch");
}

#[tokio::test]
async fn serve_without_tables_fails_fast_with_a_clear_message() {
    let test = "serve_without_tables_fails_fast_with_a_clear_message";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = fresh_id("absent");
    let data = dir.path().join("data");
    let started = Instant::now();
    let (code, _, err) = run_binary(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ],
        &[
            ("TG_INSECURE_NO_AUTH", "true"),
            ("TG_CATALOG", "dynamodb"),
            ("TG_DYNAMODB_ENDPOINT_URL", endpoint.as_str()),
            ("TG_DYNAMODB_TABLE_PREFIX", prefix.as_str()),
        ],
    );
    let took = started.elapsed();
    assert_ne!(code, Some(0), "serve must refuse to start without tables");
    assert!(
        took < Duration::from_secs(10),
        "must fail fast, took {took:?}"
    );
    assert!(
        err.contains(&format!("{prefix}-sessions"))
            && err.contains("does not exist")
            && err.contains("transcript-gateway migrate"),
        "the message must name the table and the fix:\n{err}"
    );
    eprintln!("{test}: exited in {took:?}");
}

/// What [`FlakyCatalog::put_session`] does.
const PASS: u8 = 0;
/// Refuse with `Unavailable`, writing nothing.
const FAIL: u8 = 1;
/// Answer `Ok` but write nothing (a lost write).
const DROP: u8 = 2;
/// As [`FAIL`], then repaired by the engine's background repairs alone.
const FAIL_THEN_WAIT: u8 = 3;
/// Store the session record but lose the idempotency records written with
/// it (an attempt that died between two independent writes).
const LOSE_IDEMPOTENCY: u8 = 4;

/// A catalog whose session writes can be made to fail or vanish.
struct FlakyCatalog {
    inner: Arc<dyn CatalogPort>,
    mode: AtomicU8,
}

#[async_trait]
impl CatalogPort for FlakyCatalog {
    async fn get_session(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Versioned<SessionRecord>>, PortError> {
        self.inner.get_session(key).await
    }
    async fn put_session(&self, write: SessionWrite<'_>) -> Result<u64, PortError> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Err(PortError::unavailable("injected catalog failure")),
            DROP => Ok(write.expected_version + 1),
            LOSE_IDEMPOTENCY => {
                let write = SessionWrite {
                    idempotency: Vec::new(),
                    ..write
                };
                self.inner.put_session(write).await
            }
            _ => self.inner.put_session(write).await,
        }
    }
    async fn delete_session(&self, key: &SessionKey) -> Result<(), PortError> {
        self.inner.delete_session(key).await
    }
    async fn list_sessions(
        &self,
        task: &TaskId,
        project: &ProjectKey,
        start_after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page<(SessionId, SessionRecord)>, PortError> {
        self.inner
            .list_sessions(task, project, start_after, limit)
            .await
    }
    async fn list_subkeys(
        &self,
        session: &SessionRef,
        start_after: Option<&Subpath>,
        limit: usize,
    ) -> Result<Page<(Subpath, SessionRecord)>, PortError> {
        self.inner.list_subkeys(session, start_after, limit).await
    }
    async fn record_failure(
        &self,
        failure: &transcript_gateway::domain::MirrorFailure,
    ) -> Result<(), PortError> {
        self.inner.record_failure(failure).await
    }
    async fn list_failures(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Page<transcript_gateway::domain::MirrorFailure>, PortError> {
        self.inner.list_failures(before, limit).await
    }
    async fn put_idempotency(
        &self,
        task: &TaskId,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<(), PortError> {
        self.inner.put_idempotency(task, key, record).await
    }
    async fn get_idempotency(
        &self,
        task: &TaskId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, PortError> {
        self.inner.get_idempotency(task, key).await
    }
    async fn create_binding(
        &self,
        task: &TaskId,
        binding: &StoredBinding,
    ) -> Result<BindOutcome, PortError> {
        self.inner.create_binding(task, binding).await
    }
    async fn get_binding(&self, task: &TaskId) -> Result<Option<StoredBinding>, PortError> {
        self.inner.get_binding(task).await
    }
    async fn bump_epoch(&self, task: &TaskId) -> Result<u64, PortError> {
        self.inner.bump_epoch(task).await
    }
    async fn list_task_sessions(
        &self,
        task: &TaskId,
        start_after: Option<&SessionKey>,
        limit: usize,
    ) -> Result<Page<(SessionKey, SessionRecord)>, PortError> {
        self.inner
            .list_task_sessions(task, start_after, limit)
            .await
    }
    async fn put_task_activity(
        &self,
        task: &TaskId,
        activity: Option<&TaskActivity>,
    ) -> Result<(), PortError> {
        self.inner.put_task_activity(task, activity).await
    }
    async fn get_task(&self, task: &TaskId) -> Result<Option<TaskRow>, PortError> {
        self.inner.get_task(task).await
    }
    async fn list_tasks(
        &self,
        after: Option<&TaskCursor>,
        limit: usize,
    ) -> Result<Page<TaskRow>, PortError> {
        self.inner.list_tasks(after, limit).await
    }
    async fn erase_task(&self, task: &TaskId) -> Result<u64, PortError> {
        self.inner.erase_task(task).await
    }
    async fn writer_fence(&self, task: &TaskId) -> Result<WriterFence, PortError> {
        self.inner.writer_fence(task).await
    }
    async fn begin_erasure(&self, task: &TaskId, at_ms: u64) -> Result<bool, PortError> {
        self.inner.begin_erasure(task, at_ms).await
    }
    async fn end_erasure(&self, task: &TaskId, at_ms: u64) -> Result<(), PortError> {
        self.inner.end_erasure(task, at_ms).await
    }
    async fn count_appends(&self, at_ms: u64, count: u64) -> Result<(), PortError> {
        self.inner.count_appends(at_ms, count).await
    }
    async fn appends_between(&self, from_ms: u64, to_ms: u64) -> Result<u64, PortError> {
        self.inner.appends_between(from_ms, to_ms).await
    }
    async fn check(&self) -> Result<(), PortError> {
        self.inner.check().await
    }
}

/// Part sizes as the catalog counts them: one JSON line per entry.
fn batch_bytes(batch: &[Value]) -> u64 {
    batch.iter().map(|v| v.to_string().len() as u64 + 1).sum()
}

/// Faults the catalog under acknowledged appends, checks it fell behind,
/// then checks the next append (`mode` FAIL) or a repair pass (`mode` DROP)
/// brings it back in line while the transcript stays whole.
async fn drift_is_repaired(objects: Arc<dyn ObjectPort>, catalog: Arc<dyn CatalogPort>, mode: u8) {
    let flaky = Arc::new(FlakyCatalog {
        inner: catalog.clone(),
        mode: AtomicU8::new(PASS),
    });
    let engine = Engine::new(objects.clone(), flaky.clone(), EngineConfig::default());
    let key = session_key(&fresh_id("drift"), &fresh_id("s"), None);
    let mut all = Vec::new();
    let mut bytes = 0;
    let b1 = entries(2, "ok");
    assert_eq!(engine_append(&engine, &key, &b1).await, 1);
    all.extend(b1.iter().cloned());
    bytes += batch_bytes(&b1);

    let injected = if mode == FAIL_THEN_WAIT { FAIL } else { mode };
    flaky.mode.store(injected, Ordering::SeqCst);
    for seq in 2..=3 {
        let batch = entries(3, "faulted");
        assert_eq!(
            engine_append(&engine, &key, &batch).await,
            seq,
            "an append whose catalog update fails is still acknowledged"
        );
        all.extend(batch.iter().cloned());
        bytes += batch_bytes(&batch);
    }
    let behind = catalog
        .get_session(&key)
        .await
        .expect("get")
        .expect("record");
    assert_eq!(behind.value.head.0, 1, "the catalog fell behind");
    assert_eq!(
        engine_load(&engine, &key).await,
        all,
        "the parts are the truth"
    );
    flaky.mode.store(PASS, Ordering::SeqCst);

    let repaired = if mode == FAIL {
        // The next append re-reads the catalog and catches it up.
        let batch = entries(1, "after");
        assert_eq!(engine_append(&engine, &key, &batch).await, 4);
        all.extend(batch.iter().cloned());
        bytes += batch_bytes(&batch);
        catalog
            .get_session(&key)
            .await
            .expect("get")
            .expect("record")
            .value
    } else if mode == FAIL_THEN_WAIT {
        // No more appends: the engine's background repairs catch it up.
        engine.start_repairs(Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let record = catalog
                .get_session(&key)
                .await
                .expect("get")
                .expect("record");
            if record.value.head.0 == 3 {
                break record.value;
            }
            assert!(
                Instant::now() < deadline,
                "the background repairs never caught the record up: {:?}",
                record.value
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        // A repair pass (here from another instance) brings it in line.
        let other = Engine::new(objects.clone(), catalog.clone(), EngineConfig::default());
        let record = other.repair(&key).await.expect("repair").expect("record");
        assert_eq!(
            catalog
                .get_session(&key)
                .await
                .expect("get")
                .expect("record")
                .value,
            record
        );
        record
    };
    let head = all_parts(mode);
    assert_eq!(repaired.head.0, head, "head repaired");
    assert_eq!(repaired.parts, head, "parts repaired");
    // `bytes` counts what is stored: each part with its header line.
    let dir = transcript_gateway::engine::keys::incarnation_dir(&key, 1);
    let stored: u64 = objects
        .list(&dir, None, false)
        .await
        .expect("list")
        .items
        .iter()
        .map(|item| item.size)
        .sum();
    assert!(stored > bytes, "headers are stored too");
    assert_eq!(repaired.bytes, stored, "bytes repaired");
    let listed = catalog
        .list_sessions(key.task_id(), &key.session.project_key, None, 10)
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].1.head.0, head);
    let fresh = Engine::new(objects, catalog, EngineConfig::default());
    assert_eq!(
        engine_load(&fresh, &key).await,
        all,
        "nothing lost, duplicated or reordered"
    );
}

fn all_parts(mode: u8) -> u64 {
    if mode == FAIL {
        4
    } else {
        3
    }
}

#[tokio::test]
async fn catalog_drift_is_repaired_on_the_embedded_catalog() {
    let started = Instant::now();
    for mode in [FAIL, DROP, FAIL_THEN_WAIT] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (objects, catalog) = embedded_ports(dir.path());
        drift_is_repaired(objects, catalog, mode).await;
    }
    eprintln!(
        "catalog_drift_is_repaired_on_the_embedded_catalog: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn catalog_drift_is_repaired_on_dynamodb() {
    let test = "catalog_drift_is_repaired_on_dynamodb";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let (catalog, config) = migrated_catalog(&endpoint).await;
    for mode in [FAIL, DROP, FAIL_THEN_WAIT] {
        let dir = tempfile::tempdir().expect("tempdir");
        let objects = object_store(dir.path(), &config.dynamodb_table_prefix).await;
        drift_is_repaired(objects, catalog.clone(), mode).await;
    }
    eprintln!("{test}: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_fresh_gateway_resumes_from_the_binding_and_loads_an_identical_transcript() {
    let test = "a_fresh_gateway_resumes_from_the_binding_and_loads_an_identical_transcript";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = fresh_id("tg");
    let config = dynamo_config(&endpoint, &prefix);
    migrate::run(&config).await.expect("migrate");
    let s = Session::fresh();
    let cwd = format!("/workspace/{}", s.task);
    let binding = json!({"claude_session_id": s.session, "project_key": s.project, "cwd": cwd});
    let subagent = format!("{}?subpath=subagents/agent-1", s.entries(""));

    // Worker A's gateway: append, bind, then go away with everything it cached.
    let mut appended = Vec::new();
    let mut sub_appended = Vec::new();
    {
        let objects = object_store(dir.path(), &prefix).await;
        let catalog = dynamo::connect(&config.dynamodb()).await.expect("connect");
        let a = TestGateway::over(objects, catalog, Config::default()).await;
        for turn in 0..5 {
            let batch = Value::Array(entries(4, &format!("turn-{turn}")));
            let (status, _) = append(&a.http, &s.entries(&a.base_url), batch.clone()).await;
            assert_eq!(status, 200);
            appended.extend(batch.as_array().cloned().unwrap_or_default());
        }
        let batch = Value::Array(entries(2, "subagent"));
        let (status, _) =
            append(&a.http, &format!("{}{subagent}", a.base_url), batch.clone()).await;
        assert_eq!(status, 200);
        sub_appended.extend(batch.as_array().cloned().unwrap_or_default());
        let resp = a
            .http
            .put(a.url(&format!("/v1/tasks/{}/binding", s.task)))
            .json(&binding)
            .send()
            .await
            .expect("bind");
        assert_eq!(resp.status().as_u16(), 201);
        a.stop().await;
    }

    // Worker B's gateway: new clients, no cache; only the task id is known.
    let objects = object_store(dir.path(), &prefix).await;
    let catalog = dynamo::connect(&config.dynamodb()).await.expect("connect");
    let b = TestGateway::over(objects, catalog, Config::default()).await;
    let got: Value = b
        .http
        .get(b.url(&format!("/v1/tasks/{}/binding", s.task)))
        .send()
        .await
        .expect("GET binding")
        .json()
        .await
        .expect("json");
    assert_eq!(got["data"]["claude_session_id"], s.session.as_str());
    assert_eq!(got["data"]["cwd"], cwd.as_str());
    let resumed = Session {
        task: s.task.clone(),
        project: got["data"]["project_key"]
            .as_str()
            .expect("project")
            .to_string(),
        session: got["data"]["claude_session_id"]
            .as_str()
            .expect("id")
            .to_string(),
    };
    let (status, loaded) = load(&b.http, &resumed.entries(&b.base_url)).await;
    assert_eq!(status, 200);
    assert_eq!(
        loaded, appended,
        "worker B loads exactly what worker A appended"
    );
    let (status, sub) = load(&b.http, &format!("{}{subagent}", b.base_url)).await;
    assert_eq!((status, &sub), (200, &sub_appended));
    let listed: Value = b
        .http
        .get(resumed.sessions(&b.base_url))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["data"]["sessions"][0]["session_id"],
        s.session.as_str()
    );
    // B continues the transcript where A left off.
    let (_, receipt) = append(&b.http, &resumed.entries(&b.base_url), json!([{"by": "B"}])).await;
    assert_eq!(receipt["data"]["seq"], 6);
    b.stop().await;
    eprintln!("{test}: {:?}", started.elapsed());
}

#[tokio::test]
async fn resume_across_gateway_processes_after_migrate() {
    let test = "resume_across_gateway_processes_after_migrate";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let prefix = fresh_id("tg");
    let mut env = vec![
        ("TG_CATALOG", "dynamodb".to_string()),
        ("TG_DYNAMODB_ENDPOINT_URL", endpoint.clone()),
        ("TG_DYNAMODB_TABLE_PREFIX", prefix.clone()),
    ];
    let (code, out, err) = run_binary(&["migrate"], &borrowed(&env));
    let ok = code == Some(0);
    assert!(ok, "{out}{err}");
    // Objects in S3 when the emulator runs (the production pairing), else
    // in the embedded directory both processes share.
    if let (Ok(s3), Ok(bucket)) = (
        std::env::var("TG_TEST_S3_ENDPOINT"),
        std::env::var("TG_TEST_S3_BUCKET"),
    ) {
        env.extend([
            ("TG_STORAGE", "s3".to_string()),
            ("TG_S3_ENDPOINT_URL", s3),
            ("TG_S3_BUCKET", bucket),
            ("TG_S3_FORCE_PATH_STYLE", "true".to_string()),
            ("TG_S3_PREFIX", prefix.clone()),
        ]);
    }
    let env = borrowed(&env);
    let http = reqwest::Client::new();
    let s = Session::fresh();
    let a = ChildGateway::start(&data, &env).await;
    let lease: Value = http
        .post(format!("{}/v1/tasks/{}/lease", a.base_url, s.task))
        .send()
        .await
        .expect("lease")
        .json()
        .await
        .expect("json");
    let epoch_a = lease["data"]["epoch"].as_u64().expect("epoch");
    let mut appended = Vec::new();
    for turn in 0..3 {
        let batch = Value::Array(entries(3, &format!("turn-{turn}")));
        let resp = http
            .post(s.entries(&a.base_url))
            .header("x-writer-epoch", epoch_a.to_string())
            .json(&json!({ "entries": batch }))
            .send()
            .await
            .expect("append");
        assert_eq!(resp.status().as_u16(), 200);
        appended.extend(batch.as_array().cloned().unwrap_or_default());
    }
    let resp = http
        .put(format!("{}/v1/tasks/{}/binding", a.base_url, s.task))
        .header("x-writer-epoch", epoch_a.to_string())
        .json(&json!({"claude_session_id": s.session, "project_key": s.project, "cwd": format!("/workspace/{}", s.task)}))
        .send()
        .await
        .expect("bind");
    assert_eq!(resp.status().as_u16(), 201);
    a.kill();

    // A fresh process: nothing cached, only the shared backends.
    let b = ChildGateway::start(&data, &env).await;
    let binding: Value = http
        .get(format!("{}/v1/tasks/{}/binding", b.base_url, s.task))
        .send()
        .await
        .expect("binding")
        .json()
        .await
        .expect("json");
    assert_eq!(binding["data"]["claude_session_id"], s.session.as_str());
    let lease: Value = http
        .post(format!("{}/v1/tasks/{}/lease", b.base_url, s.task))
        .send()
        .await
        .expect("lease")
        .json()
        .await
        .expect("json");
    assert!(lease["data"]["epoch"].as_u64().expect("epoch") > epoch_a);
    let (status, loaded) = load(&http, &s.entries(&b.base_url)).await;
    assert_eq!((status, &loaded), (200, &appended));
    // Worker A, presumed dead, comes back with its old epoch: refused.
    let resp = http
        .post(s.entries(&b.base_url))
        .header("x-writer-epoch", epoch_a.to_string())
        .json(&json!({ "entries": [{"zombie": true}] }))
        .send()
        .await
        .expect("append");
    assert_eq!(resp.status().as_u16(), 409);
    let (_, after) = load(&http, &s.entries(&b.base_url)).await;
    assert_eq!(after, appended);
    let exit = b.terminate();
    assert!(exit.success());
    eprintln!("{test}: {:?}", started.elapsed());
}

/// An append whose session record landed ahead of its part while its
/// idempotency record was lost (the attempt died between the two writes):
/// the client's retry on another instance must find the part by its key and
/// get the first answer, not store the batch again.
async fn a_lost_idempotency_record_is_found_in_the_part(
    objects: Arc<dyn ObjectPort>,
    catalog: Arc<dyn CatalogPort>,
) {
    let flaky = Arc::new(FlakyCatalog {
        inner: catalog.clone(),
        mode: AtomicU8::new(PASS),
    });
    let a = Engine::new(objects.clone(), flaky.clone(), EngineConfig::default());
    let key = session_key(&fresh_id("lost"), &fresh_id("s"), None);
    let request = |tag: &str| AppendRequest {
        key: key.clone(),
        entries: raw(&[json!({ "e": tag })]),
        idempotency_key: Some(tag.to_string()),
        summary: None,
        writer_epoch: None,
    };
    a.append(request("k1")).await.expect("first");
    flaky.mode.store(LOSE_IDEMPOTENCY, Ordering::SeqCst);
    let first = a.append(request("k2")).await.expect("second");
    flaky.mode.store(PASS, Ordering::SeqCst);
    let stored = catalog
        .get_idempotency(key.task_id(), "k2")
        .await
        .expect("get");
    assert!(
        stored.is_none(),
        "the idempotency record was lost: {stored:?}"
    );

    let b = Engine::new(objects, catalog, EngineConfig::default());
    let retry = b.append(request("k2")).await.expect("retry");
    assert_eq!(
        (retry.seq, retry.mtime),
        (first.seq, first.mtime),
        "the retry gets the first answer"
    );
    let loaded = engine_load(&b, &key).await;
    assert_eq!(
        loaded,
        vec![json!({"e": "k1"}), json!({"e": "k2"})],
        "stored once"
    );
}

#[tokio::test]
async fn a_lost_idempotency_record_is_found_in_the_part_on_the_embedded_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (objects, catalog) = embedded_ports(dir.path());
    a_lost_idempotency_record_is_found_in_the_part(objects, catalog).await;
}

#[tokio::test]
async fn a_lost_idempotency_record_is_found_in_the_part_on_dynamodb() {
    let test = "a_lost_idempotency_record_is_found_in_the_part_on_dynamodb";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let (catalog, config) = migrated_catalog(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = object_store(dir.path(), &config.dynamodb_table_prefix).await;
    a_lost_idempotency_record_is_found_in_the_part(objects, catalog).await;
}
