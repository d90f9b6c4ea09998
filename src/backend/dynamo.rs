//! DynamoDB catalog backend (aws-sdk-dynamodb).

use std::sync::Arc;

use crate::backend::{CatalogPort, PortError};
use crate::config::Config;

/// Connects to the configured tables.
pub async fn connect(_config: &Config) -> Result<Arc<dyn CatalogPort>, PortError> {
    Err(PortError::Other(
        "the DynamoDB catalog is not available in this build".into(),
    ))
}
