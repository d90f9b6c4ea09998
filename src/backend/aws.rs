//! What the S3 and DynamoDB adapters share about AWS SDK errors.

use aws_credential_types::provider::error::CredentialsError;

/// Whether `err` (or anything in its source chain) is the credential chain
/// finding no credentials: an operator fix, said as such rather than as an
/// unreachable endpoint.
pub fn credentials_missing(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.downcast_ref::<CredentialsError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The message for [`credentials_missing`], naming the service and call.
pub fn no_credentials(what: &str) -> String {
    format!(
        "{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         or AWS_PROFILE, or run with an IAM role: web identity, ECS task role or EC2 \
         instance profile)"
    )
}
