//! The port conformance suite (`transcript_gateway::backend::conformance`,
//! built with the `conformance` feature) against every adapter: the
//! embedded backend, S3 on SeaweedFS (also in the listing mode of directory
//! buckets) and DynamoDB on moto. Each test calls the suite's entry points,
//! so a check added to the suite reaches every backend.

use std::sync::Arc;
use std::time::Instant;

use transcript_gateway::backend::s3::S3Objects;
use transcript_gateway::backend::{conformance as suite, s3, ObjectPort};

use crate::common::{concurrent_engines_append_gap_free, embedded_ports, emulator_env, fresh_id};
use crate::dynamo::{migrated_catalog, object_store, ENDPOINT, SERIAL_ENDPOINT};
use crate::s3::{s3_config, s3_target};

#[tokio::test]
async fn embedded_ports_pass_the_port_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (objects, catalog) = embedded_ports(dir.path());
    let mut checks = suite::run_objects(objects, &fresh_id("ns"), 32, 10_050).await;
    checks.extend(suite::run_catalog(catalog.as_ref(), &fresh_id("t")).await);
    checks.extend(suite::run_catalog_races(catalog, &fresh_id("t"), 50).await);
    eprintln!("embedded conformance: {} checks: {checks:?}", checks.len());
}

#[tokio::test]
async fn s3_objects_pass_the_port_conformance_suite() {
    let Some((endpoint, bucket)) = s3_target("s3_objects_pass_the_port_conformance_suite") else {
        return;
    };
    let config = s3_config(&endpoint, &bucket);
    let objects = s3::connect(&config.s3()).await.expect("connect");
    let started = Instant::now();
    // SeaweedFS answers the losers of a conditional-create race slowly
    // (1–4 s), so the race is kept small; three ListObjectsV2 pages of 1000.
    let checks = suite::run_objects(objects, &fresh_id("ns"), 8, 2_100).await;
    eprintln!(
        "S3 object conformance: {} checks in {:?}: {checks:?}",
        checks.len(),
        started.elapsed()
    );
}

#[tokio::test]
async fn directory_bucket_listing_mode_passes_the_listing_conformance() {
    let Some((endpoint, bucket)) =
        s3_target("directory_bucket_listing_mode_passes_the_listing_conformance")
    else {
        return;
    };
    let config = s3_config(&endpoint, &bucket);
    // S3 Express One Zone neither sorts listings nor takes StartAfter; the
    // adapter's workaround must give the same answers as a sorted listing.
    let objects: Arc<dyn ObjectPort> = Arc::new(
        S3Objects::open(&config.s3())
            .await
            .expect("open")
            .with_unsorted_listing(),
    );
    let ns = fresh_id("ns");
    suite::listings_are_sorted_and_scoped(objects.as_ref(), &ns).await;
    suite::long_listings_page(objects.as_ref(), &ns, 2_100).await;
}

#[tokio::test]
async fn dynamo_catalog_passes_the_catalog_conformance_suite() {
    let test = "dynamo_catalog_passes_the_catalog_conformance_suite";
    let Some(endpoint) = emulator_env(ENDPOINT, test) else {
        return;
    };
    let started = Instant::now();
    let (catalog, _) = migrated_catalog(&endpoint).await;
    let checks = suite::run_catalog(catalog.as_ref(), &fresh_id("t")).await;
    eprintln!(
        "{test}: {} sequential checks in {:?}: {checks:?}",
        checks.len(),
        started.elapsed()
    );

    // Races need moto with serialized requests (see the module doc).
    let Some(serial) = emulator_env(SERIAL_ENDPOINT, test) else {
        return;
    };
    let (catalog, config) = migrated_catalog(&serial).await;
    let races = suite::run_catalog_races(catalog.clone(), &fresh_id("t"), 20).await;
    eprintln!("{test}: race checks {races:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = object_store(dir.path(), &config.dynamodb_table_prefix).await;
    concurrent_engines_append_gap_free(objects, catalog, &fresh_id("t"), 4, 8).await;
    eprintln!("{test}: all behaviours in {:?}", started.elapsed());
}
