//! The [`ObjectStore`] on Amazon S3 or an S3-compatible server (MinIO, Ceph, moto…):
//! `s3://bucket/prefix` as `--source` or `--lake`.
//!
//! Keys live under the URL's prefix (`s3://lake/prod` + `raw/x` is the object
//! `prod/raw/x` in bucket `lake`); `list` is a ListObjectsV2 string prefix, paged
//! with continuation tokens, returned sorted and relative to the store's prefix. A
//! PutObject is atomic by itself — readers see the old or the new object, never a
//! mix — which is the trait's promise, so no temporary object is needed.
//!
//! Configuration is the standard AWS chain (environment, profile, web identity,
//! ECS, IMDS) with the `[s3]` table of the config file on top; TLS is rustls with
//! the ring provider through an HTTP client built here (no aws-lc-rs C build).
//!
//! Retries belong to opnet's own [`crate::retry`] ([`retry::S3_REQUEST`]), not to
//! the SDK, whose retries are switched off: one policy, logged like every other
//! layer's ("Retrying after a transient failure"), with opnet's classification
//! ([`classify_response`], [`classify_dispatch`]), and no silent stacking of two
//! retry loops (3 SDK attempts inside each of ours would be up to 12 requests with
//! two unrelated backoffs). Every operation here is idempotent (a PUT of the same
//! bytes, GET, HEAD, one LIST page), so re-sending a whole request is safe.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, SharedCredentialsProvider};
use aws_sdk_s3::error::{ConnectorError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use super::{ObjectStore, StoreError};
use crate::retry::{self, Backoff};

/// S3's largest page of ListObjectsV2 (and its default).
pub const MAX_PAGE_SIZE: i32 = 1000;

/// The `[s3]` table: how `s3://` URLs of `source` and `lake` are reached. Every key is
/// optional; what is unset comes from the standard AWS chain (AWS_REGION,
/// AWS_ENDPOINT_URL[_S3], the profile, the instance metadata service). Credentials
/// are never configured here: they come from that chain too.
#[derive(Clone, Default, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint override for S3-compatible servers (`https://minio.internal:9000`).
    pub endpoint: Option<String>,
    /// AWS region (`eu-west-1`); S3-compatible servers usually accept `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`); most S3-compatible servers need it. Default false.
    pub force_path_style: Option<bool>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint.as_deref().map(crate::db::redact))
            .field("region", &self.region)
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// `s3://bucket[/prefix]`, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// `""` or `a/b/` (always with a trailing `/`), so that keys are `prefix + key`.
    pub prefix: String,
}

impl S3Url {
    /// Parse `s3://bucket`, `s3://bucket/` or `s3://bucket/a/b[/]`. Bucket names follow
    /// S3's rules (3–63 of `a-z 0-9 . -`, starting and ending with a letter or digit);
    /// the prefix may not have empty, `.` or `..` segments, which S3 would take
    /// literally but a person would not.
    pub fn parse(url: &str) -> Result<S3Url, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| "expected s3://bucket[/prefix]".to_string())?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("no bucket name (expected s3://bucket[/prefix])".into());
        }
        let valid_chars = bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
        let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !(3..=63).contains(&bucket.len())
            || !valid_chars
            || !ends_ok(bucket.chars().next())
            || !ends_ok(bucket.chars().last())
        {
            return Err(format!(
                "bucket name {bucket:?} is not valid (3-63 characters of a-z, 0-9, '.' and '-', \
                 starting and ending with a letter or digit)"
            ));
        }
        let trimmed = prefix.trim_end_matches('/');
        if trimmed.is_empty() {
            if !prefix.is_empty() && prefix != "/" {
                return Err(format!("prefix {prefix:?} has empty segments"));
            }
            return Ok(S3Url {
                bucket: bucket.to_string(),
                prefix: String::new(),
            });
        }
        for segment in trimmed.split('/') {
            match segment {
                "" => return Err(format!("prefix {prefix:?} has an empty segment ('//')")),
                "." | ".." => {
                    return Err(format!(
                        "prefix {prefix:?} has a {segment:?} segment (S3 keys are not paths)"
                    ));
                }
                _ => {}
            }
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: format!("{trimmed}/"),
        })
    }

    /// The S3 key of a store key: `prefix + key`. Keys are checked like a local
    /// directory's (relative, no `..`), and more strictly (no empty or `.` segments)
    /// because S3 would not normalise them: `a//b` and `a/b` are different objects.
    pub fn object_key(&self, key: &str) -> Result<String, StoreError> {
        let invalid = |reason| StoreError::InvalidKey {
            key: key.to_string(),
            reason,
        };
        if key.is_empty() {
            return Err(invalid("empty key"));
        }
        if key.starts_with('/') {
            return Err(invalid("keys are relative to the store root"));
        }
        for segment in key.split('/') {
            match segment {
                ".." => return Err(invalid("`..` is not allowed")),
                "." => return Err(invalid("`.` segments are not allowed")),
                "" => return Err(invalid("empty path segment")),
                _ => {}
            }
        }
        let full = format!("{}{key}", self.prefix);
        if full.len() > 1024 {
            return Err(invalid("longer than S3's 1024 bytes (with the prefix)"));
        }
        Ok(full)
    }

    /// The S3 prefix of a `list` prefix. A list prefix is a plain string prefix, so
    /// only its complete segments (those before the last `/`) are checked.
    pub fn list_prefix(&self, prefix: &str) -> Result<String, StoreError> {
        let invalid = |reason| StoreError::InvalidKey {
            key: prefix.to_string(),
            reason,
        };
        if prefix.starts_with('/') {
            return Err(invalid("keys are relative to the store root"));
        }
        if let Some((dirs, _)) = prefix.rsplit_once('/') {
            for segment in dirs.split('/') {
                match segment {
                    ".." => return Err(invalid("`..` is not allowed")),
                    "." => return Err(invalid("`.` segments are not allowed")),
                    "" => return Err(invalid("empty path segment")),
                    _ => {}
                }
            }
        }
        Ok(format!("{}{prefix}", self.prefix))
    }

    /// A listed S3 key back as a store key; `None` for keys outside the prefix and
    /// for "folder" markers (`a/b/`, as consoles create), which are not objects here.
    pub fn store_key<'a>(&self, object_key: &'a str) -> Option<&'a str> {
        let key = object_key.strip_prefix(self.prefix.as_str())?;
        (!key.is_empty() && !key.ends_with('/')).then_some(key)
    }

    /// `s3://bucket/prefix/key`; the store itself (`s3://bucket/prefix`) for `""`.
    pub fn location(&self, key: &str) -> String {
        let path = format!("{}{key}", self.prefix);
        let path = if key.is_empty() {
            path.trim_end_matches('/')
        } else {
            path.as_str()
        };
        if path.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{path}", self.bucket)
        }
    }
}

/// How an S3 failure behaves on a second try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The object is not there (404 NoSuchKey, or a HEAD's bodiless 404).
    NotFound,
    /// Throttling, 5xx, timeouts, dropped connections: may pass.
    Transient,
    /// Access denied, no such bucket, bad request, bad credentials: will not.
    Permanent,
}

/// Error codes worth retrying whatever their HTTP status (S3 sends `RequestTimeout`
/// as a 400, throttling as 503 `SlowDown` or 429, some compatible servers differ).
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "PriorRequestNotComplete",
];

/// Classify an HTTP response S3 answered with an error.
pub fn classify_response(status: u16, code: Option<&str>) -> Failure {
    if code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return Failure::Transient;
    }
    match status {
        // A HEAD has no body, hence no code: its 404 is a missing key. A missing
        // bucket (NoSuchBucket) is a configuration error, not an absent object.
        404 if matches!(code, None | Some("NoSuchKey") | Some("NotFound")) => Failure::NotFound,
        408 | 429 => Failure::Transient,
        // 501 NotImplemented: the server lacks a feature; the same on every try.
        501 => Failure::Permanent,
        500..=599 => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// Classify a request that got no response: the connection failed, timed out, or
/// the request could not be signed because credentials could not be loaded.
pub fn classify_dispatch(e: &ConnectorError) -> Failure {
    if e.is_io() || e.is_timeout() {
        return Failure::Transient;
    }
    if e.is_user() {
        return Failure::Permanent;
    }
    // Credentials are resolved before sending; their errors come back as "other"
    // dispatch failures. No credentials or a broken profile stay that way; a
    // metadata service or STS that timed out or failed may answer next time.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(ce) = c.downcast_ref::<CredentialsError>() {
            return match ce {
                CredentialsError::ProviderTimedOut(_) | CredentialsError::ProviderError(_) => {
                    Failure::Transient
                }
                _ => Failure::Permanent,
            };
        }
        cause = c.source();
    }
    match e.as_other() {
        Some(aws_smithy_types::retry::ErrorKind::ClientError) => Failure::Permanent,
        // Transient, throttling, server error, or unknown: a connection-level
        // failure, worth another try.
        _ => Failure::Transient,
    }
}

/// Classify any SDK error, with a reason for the message.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> (Failure, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = e.code();
            let mut reason = format!("HTTP {status}");
            if let Some(code) = code {
                reason.push_str(&format!(" {code}"));
            }
            if let Some(message) = e.message() {
                reason.push_str(&format!(": {message}"));
            }
            let failure = classify_response(status, code);
            if status == 403 {
                reason.push_str(
                    " (check the credentials and the IAM policy: s3:GetObject, s3:PutObject, \
                     s3:ListBucket)",
                );
            }
            (failure, reason)
        }
        SdkError::DispatchFailure(d) => {
            let failure = d
                .as_connector_error()
                .map(classify_dispatch)
                .unwrap_or(Failure::Transient);
            (failure, causes(err))
        }
        // No (complete) answer in time, or an answer that could not be read: the
        // request may well succeed on another try.
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => (Failure::Transient, causes(err)),
        // The request could not even be built (a bad key or configuration).
        _ => (Failure::Permanent, causes(err)),
    }
}

/// An error and its causes, `: `-separated ("dispatch failure: io error: … Connection
/// refused"). The SDK's own `DisplayErrorContext` appends a `Debug` dump as well,
/// which is more than an operator's log line needs.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let part = c.to_string();
        // Some layers repeat their source's text in their own.
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// What [`S3Store::connect`] needs besides the URL.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// The config file's `[s3]` table with its overrides applied.
    pub config: S3Config,
    /// ListObjectsV2 page size (1..=1000). Only tests need anything but 1000: small
    /// pages exercise pagination without thousands of objects.
    pub page_size: i32,
    /// A credentials provider instead of the default chain (tests and embedding,
    /// e.g. `SharedCredentialsProvider::new(Credentials::new(..))`). Never from the
    /// config file: secrets come from the chain.
    pub credentials: Option<SharedCredentialsProvider>,
    /// Retries of one request.
    pub retry: Backoff,
}

impl S3Options {
    pub fn new(config: &S3Config) -> Self {
        S3Options {
            config: config.clone(),
            page_size: MAX_PAGE_SIZE,
            credentials: None,
            retry: retry::S3_REQUEST,
        }
    }
}

/// A bucket (and prefix) as an [`ObjectStore`].
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    url: S3Url,
    page_size: i32,
    retry: Backoff,
}

/// Time to set up a TCP (and TLS) connection, and to wait for a response to start.
/// A body that stalls after that is caught by the SDK's stalled-stream protection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl S3Store {
    /// A client for `url`. Loads the AWS configuration (environment, profile, and —
    /// only when no region is configured — the instance metadata service); sends no
    /// request to S3 itself, so a wrong bucket shows on first use.
    pub async fn connect(url: &str, options: &S3Options) -> Result<S3Store, StoreError> {
        let parsed = S3Url::parse(url).map_err(|reason| StoreError::Open {
            url: url.to_string(),
            reason,
        })?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            // opnet's retry owns retries (see the module comment).
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            );
        let cfg = &options.config;
        // Only what opnet's configuration sets overrides the SDK's own sources
        // (AWS_REGION, AWS_ENDPOINT_URL[_S3], the profile).
        if let Some(region) = &cfg.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        if let Some(credentials) = &options.credentials {
            loader = loader.credentials_provider(credentials.clone());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(StoreError::Open {
                url: url.to_string(),
                reason: "no AWS region configured: set [s3] region, OPNET_S3_REGION or \
                         AWS_REGION (S3-compatible servers usually accept us-east-1)"
                    .into(),
            });
        }
        let s3 = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(cfg.force_path_style.unwrap_or(false))
            .build();
        tracing::info!(
            bucket = %parsed.bucket,
            prefix = %parsed.prefix,
            region = %sdk.region().map(|r| r.to_string()).unwrap_or_default(),
            endpoint = %sdk.endpoint_url().unwrap_or("(AWS)"),
            path_style = cfg.force_path_style.unwrap_or(false),
            "S3 store"
        );
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(s3),
            url: parsed,
            page_size: options.page_size.clamp(1, MAX_PAGE_SIZE),
            retry: options.retry,
        })
    }

    pub fn url(&self) -> &S3Url {
        &self.url
    }

    /// Run one request under the retry policy.
    async fn call<T, F, Fut>(&self, op: &str, key: &str, f: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let what = format!("S3 {op} {}", self.location(key));
        retry::retry(&self.retry, &what, StoreError::is_transient, f).await
    }

    /// The [`StoreError`] of a failed request, naming the full location.
    fn error<E>(&self, op: &str, key: &str, err: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = self.location(key);
        let (failure, reason) = classify(err);
        match failure {
            Failure::NotFound => StoreError::NotFound { location },
            Failure::Transient | Failure::Permanent => StoreError::Remote {
                location,
                reason: format!("S3 {op}: {reason}"),
                transient: failure == Failure::Transient,
            },
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let object_key = self.url.object_key(key)?;
        let bucket = self.url.bucket.as_str();
        self.call("GetObject", key, || async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(&object_key)
                .send()
                .await
                .map_err(|e| self.error("GetObject", key, &e))?;
            // A body cut off half-way: retried like a failed request.
            let body = out.body.collect().await.map_err(|e| StoreError::Remote {
                location: self.location(key),
                reason: format!("S3 GetObject: reading the body: {}", causes(&e)),
                transient: true,
            })?;
            Ok(body.into_bytes().to_vec())
        })
        .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let object_key = self.url.object_key(key)?;
        let bucket = self.url.bucket.as_str();
        // `Bytes`: each attempt gets a cheap handle on the same buffer, not a copy.
        let body = bytes::Bytes::from(bytes);
        self.call("PutObject", key, || {
            let body = ByteStream::from(body.clone());
            let object_key = &object_key;
            async move {
                self.client
                    .put_object()
                    .bucket(bucket)
                    .key(object_key)
                    .body(body)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| self.error("PutObject", key, &e))
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let list_prefix = self.url.list_prefix(prefix)?;
        let bucket = self.url.bucket.as_str();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // One retry loop per page: a failure on page 7 does not restart page 1.
            let page = self
                .call("ListObjectsV2", prefix, || {
                    let token = token.clone();
                    let list_prefix = &list_prefix;
                    async move {
                        self.client
                            .list_objects_v2()
                            .bucket(bucket)
                            .prefix(list_prefix)
                            .max_keys(self.page_size)
                            .set_continuation_token(token)
                            .send()
                            .await
                            .map_err(|e| self.error("ListObjectsV2", prefix, &e))
                    }
                })
                .await?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(|k| self.url.store_key(k))
                    .map(str::to_string),
            );
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => break,
            }
        }
        // S3 lists in UTF-8 byte order already; compatible servers may not.
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let object_key = self.url.object_key(key)?;
        let bucket = self.url.bucket.as_str();
        let found = self
            .call("HeadObject", key, || async {
                self.client
                    .head_object()
                    .bucket(bucket)
                    .key(&object_key)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| self.error("HeadObject", key, &e))
            })
            .await;
        match found {
            Ok(()) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn location(&self, key: &str) -> String {
        self.url.location(key)
    }
}

#[cfg(test)]
mod tests;
