//! Direct S3 access for baselines and seeding: the same aws-sdk-s3 the
//! gateway uses, with the same conditional, checksummed puts.

use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::Client;
use base64::Engine as _;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::{err, Res};

/// A client for the emulator's bucket.
#[derive(Clone)]
pub struct Direct {
    client: Client,
    /// The bucket.
    pub bucket: String,
}

/// A signed request, ready to send.
#[derive(Clone, Debug)]
pub struct Presigned {
    /// The URL with its query-string signature.
    pub url: String,
    /// The headers the signature covers.
    pub headers: reqwest::header::HeaderMap,
}

impl Presigned {
    /// Sends the PUT with `body` over `http`; fails unless S3 answers 200.
    pub async fn send(&self, http: &reqwest::Client, body: Bytes) -> Res<()> {
        let resp = http
            .put(&self.url)
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(err(format!("presigned PUT answered {status}: {text}")));
        }
        resp.bytes().await?;
        Ok(())
    }
}

/// What one reference-pattern load took.
#[derive(Debug, Default, Clone)]
pub struct RefLoad {
    /// ListObjectsV2 pages, ms.
    pub list_ms: f64,
    /// The parallel GETs with per-line parsing, ms.
    pub fetch_ms: f64,
    /// Everything, ms.
    pub total_ms: f64,
    /// Entries parsed.
    pub entries: usize,
    /// Listing pages.
    pub pages: usize,
}

impl Direct {
    /// A path-style client with the emulator's static credentials (from
    /// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`). Like the gateway's, it
    /// adds no checksum of its own and sends no `Expect: 100-continue`.
    pub fn new(endpoint: &str, bucket: &str) -> Res<Self> {
        let key = std::env::var("AWS_ACCESS_KEY_ID")
            .map_err(|_| err("AWS_ACCESS_KEY_ID is not set (scripts/bench sets it)"))?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
            .map_err(|_| err("AWS_SECRET_ACCESS_KEY is not set (scripts/bench sets it)"))?;
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(Credentials::new(key, secret, None, None, "tg-bench"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(30))
                    .operation_timeout(Duration::from_secs(90))
                    .build(),
            )
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Self {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
        })
    }

    /// A `PutObject` of `body`'s length to `key` with `If-None-Match: *` and
    /// its `x-amz-checksum-crc32c`, as the gateway writes a part (no body yet).
    fn conditional_put(
        &self,
        key: &str,
        body: &Bytes,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        let crc = crc32c::crc32c(body);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .checksum_crc32_c(base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()))
            .content_length(body.len() as i64)
    }

    /// [`Direct::conditional_put`] of `body`, sent.
    pub async fn put_if_absent(&self, key: &str, body: Bytes) -> Res<()> {
        self.conditional_put(key, &body)
            .body(body.into())
            .send()
            .await
            .map_err(|e| err(format!("PutObject {key}: {}", DisplayErrorContext(&e))))?;
        Ok(())
    }

    /// A presigned `PutObject` of `body` to `key` with `If-None-Match: *` and
    /// its CRC32C: signed here, once, so sending it costs only the request.
    pub async fn presign_put(&self, key: &str, body: &Bytes) -> Res<Presigned> {
        let presigned = self
            .conditional_put(key, body)
            .presigned(
                aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                    .map_err(|e| err(format!("presigning config: {e}")))?,
            )
            .await
            .map_err(|e| {
                err(format!(
                    "presign PutObject {key}: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in presigned.headers() {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| err(e.to_string()))?,
                reqwest::header::HeaderValue::from_str(value).map_err(|e| err(e.to_string()))?,
            );
        }
        Ok(Presigned {
            url: presigned.uri().to_string(),
            headers,
        })
    }

    /// Puts many objects with `concurrency` in flight.
    pub async fn put_many(
        &self,
        items: impl Iterator<Item = (String, Bytes)>,
        concurrency: usize,
    ) -> Res<usize> {
        let count = futures::stream::iter(items)
            .map(|(key, body)| async move { self.put_if_absent(&key, body).await })
            .buffer_unordered(concurrency)
            .try_fold(0usize, |n, ()| async move { Ok(n + 1) })
            .await?;
        Ok(count)
    }

    /// One whole object.
    pub async fn get(&self, key: &str) -> Res<Bytes> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| err(format!("GetObject {key}: {}", DisplayErrorContext(&e))))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| err(format!("GetObject {key} body: {e}")))?;
        Ok(body.into_bytes())
    }

    /// Every key under `prefix` (ListObjectsV2 pages of 1,000) and the page count.
    pub async fn list(&self, prefix: &str) -> Res<(Vec<String>, usize)> {
        let mut keys = Vec::new();
        let mut pages = 0;
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    err(format!(
                        "ListObjectsV2 {prefix}: {}",
                        DisplayErrorContext(&e)
                    ))
                })?;
            pages += 1;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from)),
            );
            match out.next_continuation_token() {
                Some(next) if out.is_truncated().unwrap_or(false) => token = Some(next.into()),
                _ => return Ok((keys, pages)),
            }
        }
    }

    /// The reference adapter's load, in Rust: list every page, GET every part
    /// with `concurrency` in flight (in order) and parse each line. The parsed
    /// entries are kept until the end, as an adapter returning them would.
    pub async fn reference_load(&self, dir: &str, concurrency: usize) -> Res<RefLoad> {
        let start = Instant::now();
        let (keys, pages) = self.list(dir).await?;
        let parts: Vec<String> = keys.into_iter().filter(|k| is_part_of(dir, k)).collect();
        let listed = Instant::now();
        let chunks: Vec<Vec<Value>> = futures::stream::iter(parts)
            .map(|key| async move {
                let body = self.get(&key).await?;
                parse_lines(&body)
            })
            .buffered(concurrency)
            .try_collect()
            .await?;
        let done = Instant::now();
        let entries = chunks.iter().map(Vec::len).sum();
        drop(chunks);
        Ok(RefLoad {
            list_ms: (listed - start).as_secs_f64() * 1e3,
            fetch_ms: (done - listed).as_secs_f64() * 1e3,
            total_ms: (done - start).as_secs_f64() * 1e3,
            entries,
            pages,
        })
    }
}

/// Whether `key` is a part directly in `dir`.
pub fn is_part_of(dir: &str, key: &str) -> bool {
    key.strip_prefix(dir).is_some_and(|name| {
        name.starts_with("part-") && name.ends_with(".jsonl") && !name.contains('/')
    })
}

/// Parses every line of a JSONL body.
pub fn parse_lines(body: &[u8]) -> Res<Vec<Value>> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|e| err(format!("bad JSON line: {e}"))))
        .collect()
}
