//! S3 object backend (aws-sdk-s3).

use std::sync::Arc;

use crate::backend::{ObjectPort, PortError};
use crate::config::Config;

/// Connects to the configured bucket.
pub async fn connect(_config: &Config) -> Result<Arc<dyn ObjectPort>, PortError> {
    Err(PortError::Other(
        "the S3 backend is not available in this build".into(),
    ))
}
