//! The port conformance suite: one `pub async fn` per behaviour, run against
//! every adapter by the integration tests.
