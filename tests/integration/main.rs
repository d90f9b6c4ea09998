//! The integration suite: one test binary (one link) with a module per area.
//! Emulator-backed modules skip, saying why, when their `TG_TEST_*`
//! environment variables are absent; `scripts/test` sets them.

// A test's unwrap is its assertion: a failure fails the test.
#![allow(clippy::unwrap_used)]

mod acknowledgement;
mod admin;
mod api;
mod auth;
mod common;
mod compaction;
#[cfg(feature = "conformance")]
mod conformance;
mod crash;
mod dedup;
mod deploy;
mod documented;
mod durability;
mod dynamo;
mod embedded;
mod export;
mod failures;
mod faults;
mod hostile;
mod iam;
mod incarnations;
mod openapi;
mod resources;
mod runbook;
mod s3;
mod startup;
mod tail;
mod tamper;
mod telemetry;

#[cfg(not(feature = "conformance"))]
#[test]
fn conformance_tests_need_the_conformance_feature() {
    eprintln!(
        "SKIP the port conformance suite: built without `--features conformance` \
         (scripts/test builds with it)"
    );
}
