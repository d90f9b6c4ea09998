//! What the S3 and DynamoDB adapters share about AWS: one way to build the
//! SDK configuration (retries, timeouts, region, endpoint) and one reading
//! of credential errors.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::{Deserialize, Serialize};

use super::PortError;

/// The AWS SDK retry strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryMode {
    /// Exponential backoff with jitter.
    Standard,
    /// Standard plus client-side rate limiting after throttling.
    Adaptive,
}

/// How an adapter calls AWS: its retries and time bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsSettings {
    /// The retry strategy.
    pub retry_mode: RetryMode,
    /// Attempts per call, the first included (at least 1).
    pub max_attempts: u32,
    /// Bound on one call, all attempts included.
    pub operation_timeout: Duration,
    /// Bound on one attempt.
    pub attempt_timeout: Duration,
}

/// The region used with an explicit endpoint (an emulator) when none is
/// configured: emulators accept any, and SigV4 needs one.
const EMULATOR_REGION: &str = "us-east-1";
/// Longest wait for a TCP connection, within the attempt timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The SDK configuration for `service` (named in errors): the standard chain
/// for credentials and region, the retry mode and attempts, the timeouts,
/// and `endpoint` if given. Without a configured region an endpoint implies
/// [`EMULATOR_REGION`]; with neither it is an error. Makes no request.
pub async fn sdk_config(
    settings: &AwsSettings,
    service: &str,
    endpoint: Option<&str>,
) -> Result<SdkConfig, PortError> {
    let retry = match settings.retry_mode {
        RetryMode::Standard => RetryConfig::standard(),
        RetryMode::Adaptive => RetryConfig::adaptive(),
    }
    .with_max_attempts(settings.max_attempts.max(1));
    let attempt = settings.attempt_timeout.max(Duration::from_millis(1));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(attempt.min(MAX_CONNECT_TIMEOUT))
        .operation_attempt_timeout(attempt)
        .operation_timeout(settings.operation_timeout.max(Duration::from_millis(1)))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    match (sdk.region(), endpoint) {
        (Some(_), _) => Ok(sdk),
        (None, Some(_)) => Ok(sdk
            .to_builder()
            .region(Region::from_static(EMULATOR_REGION))
            .build()),
        (None, None) => Err(PortError::unavailable(format!(
            "no AWS region configured for {service}: set AWS_REGION (or a profile's region)"
        ))),
    }
}

/// Whether `err` (or anything in its source chain) is the credential chain
/// finding no credentials: an operator fix, said as such rather than as an
/// unreachable endpoint.
pub fn credentials_missing(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::domain::chain_has::<CredentialsError>(err)
}

/// The message for [`credentials_missing`], naming the service and call.
pub fn no_credentials(what: &str) -> String {
    format!(
        "{what}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
         or AWS_PROFILE, or run with an IAM role: web identity, ECS task role or EC2 \
         instance profile)"
    )
}

/// One client span per AWS call (`S3.PutObject`, `DynamoDB.Query`, …) with
/// `rpc.system = aws-api`, `rpc.service` and `rpc.method`, a child of
/// whatever span made the call; each retried attempt is an event on it and
/// counts in `tg.backend.retries{backend}`. The SDK's own spans are
/// DEBUG-level and unnamed by convention, hence this.
#[derive(Debug)]
pub struct CallSpans {
    /// The service as span names spell it (`S3`, `DynamoDB`).
    service: &'static str,
    /// The `backend` attribute of the retry counter (`s3`, `dynamodb`).
    backend: &'static str,
}

impl CallSpans {
    /// Spans for calls to `service`, counted under `backend`.
    pub const fn new(service: &'static str, backend: &'static str) -> Self {
        Self { service, backend }
    }
}

/// The span of the call in flight, kept in the call's config bag.
#[derive(Debug)]
struct CallSpan(tracing::Span);

impl Storable for CallSpan {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallSpans {
    fn name(&self) -> &'static str {
        "CallSpans"
    }

    // Not `read_before_execution`: a client's interceptors see that before
    // the operation's configuration (its name) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let method = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "aws.call",
            otel.name = format!("{}.{}", self.service, method),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = "aws-api",
            rpc.service = self.service,
            rpc.method = method,
            http.response.status_code = tracing::field::Empty,
        );
        cfg.interceptor_state().store_put(CallSpan(span));
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        if attempt > 1 {
            crate::metrics::METRICS.backend_retries.add(self.backend);
            if let Some(CallSpan(span)) = cfg.load::<CallSpan>() {
                tracing::info!(parent: span, attempt, "retrying after a failed attempt");
            }
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(CallSpan(span)) = cfg.load::<CallSpan>() {
            if let Some(response) = context.response() {
                span.record("http.response.status_code", response.status().as_u16());
            }
            if matches!(context.output_or_error(), Some(Err(_))) {
                span.record("otel.status_code", "ERROR");
            }
        }
        // The span ends here, not when the call's state is dropped.
        cfg.interceptor_state().unset::<CallSpan>();
        Ok(())
    }
}
