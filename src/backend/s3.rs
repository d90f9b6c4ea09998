//! S3 object backend (aws-sdk-s3), for general purpose buckets, S3 Express
//! One Zone directory buckets and S3-compatible stores (SeaweedFS in tests).
//!
//! - Keys: the port's keys are relative; the object key is `{s3_prefix}/{key}`
//!   and listings strip the prefix again.
//! - `put_if_absent` is `PutObject` with `If-None-Match: *` and an
//!   `x-amz-checksum-crc32c` we compute, which S3 verifies on arrival. The SDK
//!   is told to add no checksum of its own (`WhenRequired`) and not to hash
//!   the payload for the signature (the CRC32C protects it end to end).
//! - `get` asks for checksum mode and hands back the stored CRC32C unverified
//!   (the engine verifies). An object overwritten without a CRC32C (a plain
//!   `PutObject`, or one with another algorithm) comes back with `None`.
//! - Retries and timeouts are the SDK's (standard or adaptive, max attempts,
//!   attempt and operation timeouts from config), so every call is bounded.
//!
//! S3 Express One Zone (bucket names ending in `--x-s3`): listings are not
//! sorted, `StartAfter` is not supported and prefixes must end with `/`. In
//! that mode `list` reads the whole directory with continuation tokens,
//! filters out keys up to `start_after` and sorts the rest itself; it returns
//! them in one page. Compaction keeps part directories small, so this stays
//! cheap. The SDK handles the zonal endpoint and session auth by itself.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{
    ConfigBag, Intercept, RequestChecksumCalculation, ResponseChecksumValidation,
    RuntimeComponents, StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::ChecksumMode;
use aws_sdk_s3::Client;
use aws_smithy_checksums::body::validate::Error as ChecksumValidationError;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;

use super::aws::AwsSettings;
use crate::backend::{ByteStream, Listed, ObjectBody, ObjectPort, Page, PortError, TimedOut};

/// Keys per `ListObjectsV2` page (S3's maximum).
const LIST_PAGE: i32 = 1000;
/// How long a download may stall before it fails (the SDK's stalled-stream
/// protection; a dead connection must not hang a load).
const STALL_GRACE: Duration = Duration::from_secs(5);
/// The suffix of S3 Express One Zone directory bucket names.
const EXPRESS_SUFFIX: &str = "--x-s3";

/// What the S3 adapter needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket (a directory bucket's name ends in `--x-s3`).
    pub bucket: String,
    /// The key prefix (no leading or trailing `/`; empty: the bucket root).
    pub prefix: String,
    /// An endpoint instead of AWS's (an emulator).
    pub endpoint_url: Option<String>,
    /// Path-style addressing (most emulators need it).
    pub force_path_style: bool,
    /// Retries and time bounds.
    pub aws: AwsSettings,
}

/// Connects to the configured bucket and checks it is usable.
pub async fn connect(settings: &S3Settings) -> Result<Arc<dyn ObjectPort>, PortError> {
    let store = S3Objects::open(settings).await?;
    store.check().await?;
    tracing::info!(bucket = %store.bucket, prefix = %store.prefix, endpoint = %store.endpoint, express = store.express, "S3 object store ready");
    Ok(Arc::new(store))
}

/// The S3 object store.
#[derive(Clone, Debug)]
pub struct S3Objects {
    client: Client,
    bucket: String,
    /// The key prefix without a trailing `/`; empty for the bucket root.
    prefix: String,
    /// True for an S3 Express One Zone directory bucket (unsorted listings).
    express: bool,
    /// Where requests go, for error messages.
    endpoint: String,
}

impl S3Objects {
    /// Builds the client from the standard AWS chain (region, credentials)
    /// and the gateway's S3, retry and timeout settings; makes no request.
    pub async fn open(settings: &S3Settings) -> Result<Self, PortError> {
        let bucket = settings.bucket.clone();
        if bucket.is_empty() {
            return Err(PortError::other("storage = s3 needs TG_S3_BUCKET"));
        }
        let endpoint_url = settings.endpoint_url.as_deref();
        let sdk = super::aws::sdk_config(&settings.aws, "S3", endpoint_url).await?;
        let builder = aws_sdk_s3::config::Builder::from(&sdk)
            .interceptor(super::aws::CallSpans::new("S3", "s3"))
            .force_path_style(settings.force_path_style)
            .stalled_stream_protection(
                StalledStreamProtectionConfig::enabled()
                    .grace_period(STALL_GRACE)
                    .build(),
            )
            // We send our own CRC32C; the SDK must not add a checksum (or
            // aws-chunked trailers) of its own.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        let endpoint = match (endpoint_url, sdk.region()) {
            (Some(url), _) => url.to_string(),
            (None, Some(region)) => format!("AWS S3 in {region}"),
            (None, None) => "AWS S3".into(),
        };
        Ok(Self {
            client: Client::from_conf(builder.build()),
            express: bucket.ends_with(EXPRESS_SUFFIX),
            bucket,
            prefix: settings.prefix.trim_matches('/').to_string(),
            endpoint,
        })
    }

    /// Lists as for a directory bucket (read all, filter, sort) whatever the
    /// bucket's name, so tests can run that path against an emulator.
    pub fn with_unsorted_listing(mut self) -> Self {
        self.express = true;
        self
    }

    /// The SDK client (tests use it to reach behind the gateway's back).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The bucket's object key for a port key.
    pub fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// The port key for a listed object key, if it lies under the prefix.
    fn port_key<'a>(&self, object_key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            Some(object_key)
        } else {
            object_key
                .strip_prefix(self.prefix.as_str())
                .and_then(|k| k.strip_prefix('/'))
        }
    }

    fn describe(&self, op: &str, key: &str) -> String {
        format!("S3 {op} s3://{}/{key} ({})", self.bucket, self.endpoint)
    }

    /// After a retried put met 412 or 409: whether the object there is the
    /// one an earlier attempt of this very call wrote (its answer lost).
    async fn is_ours(
        &self,
        object_key: &str,
        body: &Bytes,
        crc32c: u32,
    ) -> Result<bool, PortError> {
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(head) => head,
            // After a 409 ConditionalRequestConflict the other writer's
            // object may not be visible yet: not ours either way.
            Err(err) if is_no_such_key(&err) => return Ok(false),
            Err(err) => return Err(map_error(err, &self.describe("HeadObject", object_key))),
        };
        Ok(head.content_length() == Some(body.len() as i64)
            && head.checksum_crc32_c().and_then(decode_crc32c) == Some(crc32c))
    }

    /// Lists a general purpose bucket: sorted, with `StartAfter`.
    async fn list_sorted(
        &self,
        prefix: &str,
        start_after: Option<String>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError> {
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .max_keys(LIST_PAGE);
            if !recursive {
                req = req.delimiter("/");
            }
            req = match &token {
                Some(t) => req.continuation_token(t),
                None => req.set_start_after(start_after.clone()),
            };
            let out = req
                .send()
                .await
                .map_err(|e| map_error(e, &self.describe("ListObjectsV2", prefix)))?;
            let items = self.listed(out.contents());
            let truncated = out.is_truncated().unwrap_or(false);
            // A page may hold only common prefixes (subkey directories); the
            // caller pages by its last item, so never hand back an empty
            // page that says "more".
            match out.next_continuation_token() {
                Some(next) if truncated && items.is_empty() => token = Some(next.to_string()),
                _ => {
                    return Ok(Page {
                        items,
                        more: truncated,
                    })
                }
            }
        }
    }

    /// Lists a directory bucket: everything under `prefix`, then filters and
    /// sorts here (S3 Express One Zone neither sorts nor takes `StartAfter`).
    async fn list_express(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take());
            if !recursive {
                req = req.delimiter("/");
            }
            let out = req
                .send()
                .await
                .map_err(|e| map_error(e, &self.describe("ListObjectsV2", prefix)))?;
            items.extend(self.listed(out.contents()));
            match out.next_continuation_token() {
                Some(next) if out.is_truncated().unwrap_or(false) => token = Some(next.to_string()),
                _ => break,
            }
        }
        if let Some(after) = start_after {
            items.retain(|item: &Listed| item.key.as_str() > after);
        }
        if !recursive {
            // Belt and braces: only objects directly in the directory.
            let dir_len = self.port_key(prefix).map_or(0, str::len);
            items.retain(|item| !item.key.get(dir_len..).unwrap_or("").contains('/'));
        }
        items.sort_by(|a, b| a.key.cmp(&b.key));
        items.dedup_by(|a, b| a.key == b.key);
        Ok(Page { items, more: false })
    }

    fn listed(&self, contents: &[aws_sdk_s3::types::Object]) -> Vec<Listed> {
        contents
            .iter()
            .filter_map(|o| {
                let key = self.port_key(o.key()?)?;
                Some(Listed {
                    key: key.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect()
    }
}

#[async_trait]
impl ObjectPort for S3Objects {
    async fn put_if_absent(&self, key: &str, body: Bytes, crc32c: u32) -> Result<(), PortError> {
        let object_key = self.object_key(key);
        let attempts = AttemptCounter::default();
        let result = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .if_none_match("*")
            .checksum_crc32_c(encode_crc32c(crc32c))
            .content_length(body.len() as i64)
            .body(SdkByteStream::from(body.clone()))
            .customize()
            // The CRC32C protects the body end to end (S3 verifies it): a
            // SHA-256 of every part for the signature would add nothing.
            .disable_payload_signing()
            .interceptor(attempts.clone())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let mapped = map_error(err, &self.describe("PutObject", &object_key));
        if matches!(mapped, PortError::AlreadyExists(_)) && attempts.get() > 1 {
            // An earlier attempt may have landed and only its answer been lost
            // (a timeout, a reset connection); the retry then meets our own
            // object. Same size and CRC32C: it is ours, not another writer's.
            if self.is_ours(&object_key, &body, crc32c).await? {
                tracing::info!(key = %object_key, "a retried put found its own earlier attempt's object");
                return Ok(());
            }
        }
        Err(mapped)
    }

    async fn get(&self, key: &str) -> Result<Option<ObjectBody>, PortError> {
        let object_key = self.object_key(key);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) if is_no_such_key(&err) => return Ok(None),
            Err(err) => return Err(map_error(err, &self.describe("GetObject", &object_key))),
        };
        // A composite (multipart) checksum or another algorithm decodes to
        // None; the engine refuses such an object.
        let crc32c = out.checksum_crc32_c().and_then(decode_crc32c);
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        let what = self.describe("GetObject body", &object_key);
        let stream: ByteStream = futures::stream::unfold(Some(out.body), move |state| {
            let what = what.clone();
            async move {
                let mut body = state?;
                match body.next().await {
                    Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                    Some(Err(err)) => Some((Err(map_stream_error(err, &what)), None)),
                    None => None,
                }
            }
        })
        .boxed();
        Ok(Some(ObjectBody {
            crc32c,
            size,
            stream,
        }))
    }

    async fn list(
        &self,
        dir: &str,
        start_after: Option<&str>,
        recursive: bool,
    ) -> Result<Page<Listed>, PortError> {
        // Directory buckets need prefixes ending in '/'; ours always do.
        let prefix = self.object_key(dir);
        if self.express {
            self.list_express(&prefix, start_after, recursive).await
        } else {
            let start_after = start_after.map(|k| self.object_key(k));
            self.list_sorted(&prefix, start_after, recursive).await
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let object_key = self.object_key(key);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&object_key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_no_such_key(&err) => Ok(()),
            Err(err) => Err(map_error(err, &self.describe("DeleteObject", &object_key))),
        }
    }

    fn stored_key(&self, key: &str) -> String {
        self.object_key(key)
    }

    async fn check(&self) -> Result<(), PortError> {
        // A one-key listing of our prefix rather than HeadBucket: it proves
        // the same (bucket exists, credentials work, region is right) and
        // needs only s3:ListBucket conditioned on the prefix, so the IAM
        // policy can stay scoped to it.
        let prefix = self.object_key("");
        let err = match self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .max_keys(1)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().unwrap_or("no error code");
        let bucket = &self.bucket;
        let endpoint = &self.endpoint;
        let message = match status {
            Some(404) => format!("S3 bucket {bucket:?} does not exist at {endpoint} ({code})"),
            Some(403) => format!(
                "access to S3 bucket {bucket:?} at {endpoint} was denied ({code}); check the \
                 credentials, and that they allow s3:ListBucket on the bucket for prefix \
                 {prefix:?} and s3:GetObject, s3:PutObject, s3:DeleteObject under it"
            ),
            Some(301) | Some(400) if bucket_region(&err).is_some() => format!(
                "S3 bucket {bucket:?} is in region {}, not the configured one; set AWS_REGION",
                bucket_region(&err).unwrap_or_default()
            ),
            Some(status) => format!(
                "S3 bucket {bucket:?} at {endpoint}: listing {prefix:?} failed with HTTP {status}"
            ),
            None if super::aws::credentials_missing(&err) => {
                super::aws::no_credentials(&format!("S3 bucket {bucket:?} at {endpoint}"))
            }
            None => format!("cannot reach S3 bucket {bucket:?} at {endpoint}"),
        };
        Err(PortError::unavailable(message).caused_by(err))
    }
}

/// The `x-amz-checksum-crc32c` value: base64 of the 4 big-endian bytes.
fn encode_crc32c(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// Parses an `x-amz-checksum-crc32c` value; `None` for anything but a
/// full-object CRC32C (a multipart one looks like `AAAAAA==-3`).
fn decode_crc32c(value: &str) -> Option<u32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    let bytes: [u8; 4] = bytes.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn bucket_region<E>(err: &SdkError<E, HttpResponse>) -> Option<String> {
    err.raw_response()?
        .headers()
        .get("x-amz-bucket-region")
        .map(str::to_string)
}

fn is_no_such_key<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err.code() {
        Some("NoSuchKey") | Some("NotFound") => true,
        Some("NoSuchBucket") => false,
        _ => status == Some(404) && matches!(err, SdkError::ServiceError(_)),
    }
}

/// Maps an SDK failure (after the SDK's own retries) to storage words.
fn map_error<E>(err: SdkError<E, HttpResponse>, what: &str) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_string);
    match (status, code.as_deref()) {
        // S3 answers a taken key with 412 PreconditionFailed, or with 409
        // ConditionalRequestConflict when a concurrent conditional write is
        // still in progress; both mean another writer has the key.
        (Some(412), _) | (_, Some("PreconditionFailed")) => {
            PortError::AlreadyExists(format!("{what}: the key already exists"))
        }
        (Some(409), Some("ConditionalRequestConflict")) => PortError::AlreadyExists(format!(
            "{what}: a concurrent conditional write holds the key"
        )),
        // S3 and SeaweedFS: 400 BadDigest when the body does not match the
        // x-amz-checksum-crc32c we sent.
        (_, Some("BadDigest")) | (_, Some("XAmzContentChecksumMismatch")) => {
            PortError::checksum(what).caused_by(err)
        }
        (_, Some("NoSuchBucket")) => {
            PortError::unavailable(format!("{what}: the bucket does not exist")).caused_by(err)
        }
        (_, Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestTimeout"))
        | (_, Some("ServiceUnavailable" | "InternalError" | "RequestLimitExceeded")) => {
            PortError::unavailable(what).caused_by(err)
        }
        (Some(s), _) if s >= 500 || s == 429 => PortError::unavailable(what).caused_by(err),
        (Some(_), _) => PortError::other(what).caused_by(err),
        // No response at all: missing credentials, timeouts, refused or
        // reset connections.
        (None, _) if super::aws::credentials_missing(&err) => {
            PortError::unavailable(super::aws::no_credentials(what)).caused_by(err)
        }
        (None, _) => match err {
            SdkError::ConstructionFailure(_) => PortError::other(what).caused_by(err),
            SdkError::TimeoutError(_) => {
                PortError::unavailable(what).caused_by(TimedOut(Box::new(err)))
            }
            _ => PortError::unavailable(what).caused_by(err),
        },
    }
}

/// Maps a failure while reading a body: the SDK's own checksum validation
/// (which runs when S3 returns a checksum) is a mismatch, anything else a
/// broken transfer.
fn map_stream_error(err: aws_smithy_types::byte_stream::error::Error, what: &str) -> PortError {
    match crate::domain::chain_has::<ChecksumValidationError>(&err) {
        true => PortError::checksum(what).caused_by(err),
        false => PortError::unavailable(what).caused_by(err),
    }
}

/// Counts the attempts the SDK makes for one call.
#[derive(Clone, Debug, Default)]
struct AttemptCounter(Arc<AtomicU32>);

impl AttemptCounter {
    fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(status: u16, code: &str) -> SdkError<PutObjectError, HttpResponse> {
        SdkError::service_error(
            PutObjectError::generic(ErrorMetadata::builder().code(code).build()),
            HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty()),
        )
    }

    #[test]
    fn crc32c_header_is_base64_of_big_endian_bytes() {
        let crc = crc32c::crc32c(b"hello\n");
        assert_eq!(crc, 0x353d_d8be);
        assert_eq!(encode_crc32c(crc), "NT3Yvg==");
        assert_eq!(decode_crc32c("NT3Yvg=="), Some(crc));
        for n in [0, 1, u32::MAX, 0x8000_0000] {
            assert_eq!(decode_crc32c(&encode_crc32c(n)), Some(n));
        }
    }

    #[test]
    fn composite_or_foreign_checksums_decode_to_none() {
        assert_eq!(decode_crc32c("NT3Yvg==-3"), None);
        assert_eq!(decode_crc32c("AAAAAAAAAAA="), None);
        assert_eq!(decode_crc32c(""), None);
    }

    #[test]
    fn taken_keys_map_to_already_exists() {
        for (status, code) in [
            (412, "PreconditionFailed"),
            (409, "ConditionalRequestConflict"),
        ] {
            assert!(matches!(
                map_error(service_error(status, code), "put"),
                PortError::AlreadyExists(_)
            ));
        }
    }

    #[test]
    fn service_failures_map_to_storage_words() {
        let cases = [
            (400, "BadDigest", "checksum"),
            (503, "SlowDown", "unavailable"),
            (500, "InternalError", "unavailable"),
            (429, "TooManyRequests", "unavailable"),
            (404, "NoSuchBucket", "unavailable"),
            (403, "AccessDenied", "other"),
        ];
        for (status, code, want) in cases {
            let got = map_error(service_error(status, code), "op");
            let kind = match got {
                PortError::ChecksumMismatch { .. } => "checksum",
                PortError::Unavailable { .. } => "unavailable",
                PortError::Other { .. } => "other",
                _ => "wrong",
            };
            assert_eq!(kind, want, "{status} {code}");
        }
        let timeout: SdkError<PutObjectError, HttpResponse> =
            SdkError::timeout_error("attempt timed out");
        assert!(matches!(
            map_error(timeout, "op"),
            PortError::Unavailable { .. }
        ));
    }

    #[test]
    fn missing_keys_are_told_from_missing_buckets() {
        assert!(is_no_such_key(&service_error(404, "NoSuchKey")));
        assert!(!is_no_such_key(&service_error(404, "NoSuchBucket")));
        assert!(!is_no_such_key(&service_error(403, "AccessDenied")));
    }

    #[tokio::test]
    async fn keys_get_and_lose_the_prefix() {
        let settings = S3Settings {
            bucket: "b--usw2-az1--x-s3".into(),
            prefix: "transcripts".into(),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            force_path_style: true,
            aws: AwsSettings {
                retry_mode: super::super::aws::RetryMode::Standard,
                max_attempts: 1,
                operation_timeout: Duration::from_secs(1),
                attempt_timeout: Duration::from_secs(1),
            },
        };
        let store = S3Objects::open(&settings).await.unwrap();
        assert!(store.express);
        assert_eq!(store.object_key("t/p/s/"), "transcripts/t/p/s/");
        assert_eq!(store.port_key("transcripts/t/p/s/x"), Some("t/p/s/x"));
        assert_eq!(store.port_key("transcriptsX/t"), None);
        let root = S3Objects::open(&S3Settings {
            prefix: String::new(),
            bucket: "plain".into(),
            ..settings
        })
        .await
        .unwrap();
        assert!(!root.express);
        assert_eq!(root.object_key("t/x"), "t/x");
        assert_eq!(root.port_key("t/x"), Some("t/x"));
    }
}
