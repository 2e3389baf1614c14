//! An S3-compatible bucket (Cloudflare R2 in production) through `aws-sdk-s3`.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// Connection to an S3-compatible bucket. For Cloudflare R2: `endpoint`
/// `https://<account>.r2.cloudflarestorage.com`, region `auto`, path-style addressing.
#[derive(Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    /// `"auto"` for R2.
    pub region: String,
    pub access_key_id: String,
    /// Never printed (`Debug` shows a placeholder).
    pub secret_access_key: String,
    pub force_path_style: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: String::new(),
            bucket: String::new(),
            region: "auto".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            force_path_style: true,
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// TCP (+TLS) connect: a stopped or unreachable server fails fast.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, body upload included, until the response headers.
pub const S3_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// All attempts of one operation together.
pub const S3_OPERATION_TIMEOUT: Duration = Duration::from_secs(150);
/// Attempts per operation (the SDK's standard retry mode: 5xx, throttling, connect errors).
pub const S3_MAX_ATTEMPTS: u32 = 3;

pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    endpoint: String,
}

impl std::fmt::Debug for S3ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3ObjectStore")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// Turns an SDK error into a [`StoreError`]: 404/`NoSuchKey` → `NotFound`; everything else
/// (other HTTP errors, timeouts, connection failures) → `Unavailable`, with a message built
/// from error codes and the connector's error chain (no URL, no signature).
fn s3_error<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code();
            if matches!(code, Some("NoSuchKey" | "NotFound")) || (status == 404 && code != Some("NoSuchBucket")) {
                StoreError::NotFound
            } else {
                StoreError::Unavailable(format!("{op}: {} (HTTP {status})", code.unwrap_or("error")))
            }
        }
        SdkError::TimeoutError(_) => StoreError::Unavailable(format!("{op}: timed out")),
        _ => StoreError::Unavailable(format!("{op}: {}", segment_api::describe_error(&err))),
    }
}

fn body_error(op: &'static str, e: aws_sdk_s3::primitives::ByteStreamError) -> StoreError {
    StoreError::Unavailable(format!(
        "{op}: reading the response body failed: {}",
        segment_api::describe_error(&e)
    ))
}

impl S3ObjectStore {
    /// Builds the client (no request is made: the bucket need not exist yet, see
    /// [`S3ObjectStore::ensure_bucket`]).
    pub async fn connect(settings: S3Settings) -> StoreResult<S3ObjectStore> {
        use aws_sdk_s3::config::retry::RetryConfig;
        use aws_sdk_s3::config::timeout::TimeoutConfig;
        use aws_sdk_s3::config::{
            BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
        };
        use aws_smithy_http_client::tls;

        let invalid = |what: &str| StoreError::Unavailable(format!("invalid S3 settings: {what}"));
        let endpoint = settings.endpoint.trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err(invalid("the endpoint must be an http(s) URL"));
        }
        if settings.bucket.is_empty() {
            return Err(invalid("no bucket"));
        }
        if settings.access_key_id.is_empty() || settings.secret_access_key.is_empty() {
            return Err(invalid("missing access key id or secret access key"));
        }
        let region = if settings.region.trim().is_empty() {
            "auto".to_string()
        } else {
            settings.region.trim().to_string()
        };

        // rustls on ring (as reqwest). HTTPS trusts the system's root certificates
        // (ca-certificates, or SSL_CERT_FILE / SSL_CERT_DIR); checked here, because the SDK
        // would only find out at the first request (and panics then in debug builds).
        // Plain http (a local test server) loads none.
        let trust = if endpoint.starts_with("https://") {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(StoreError::Unavailable(
                    "no system root certificates for HTTPS (install ca-certificates or set SSL_CERT_FILE)".into(),
                ));
            }
            tls::TrustStore::default()
        } else {
            tls::TrustStore::empty()
        };
        let tls_context = tls::TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| StoreError::Unavailable(format!("TLS setup: {e}")))?;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .tls_context(tls_context)
            .build_https();
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            None,
            None,
            "neurovol-config",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new(region))
            .credentials_provider(credentials)
            .force_path_style(settings.force_path_style)
            .http_client(http_client)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(S3_CONNECT_TIMEOUT)
                    .operation_attempt_timeout(S3_ATTEMPT_TIMEOUT)
                    .operation_timeout(S3_OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(S3_MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(300))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            // Only the checksums S3 requires: R2 and other S3-compatible servers do not all
            // take the SDK's default CRC32 trailers on streamed uploads, nor do pre-signed PUTs
            // from the worker carry them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(S3ObjectStore {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket,
            endpoint,
        })
    }

    /// Creates the bucket when it does not exist (tests, first start against a fresh server).
    pub async fn ensure_bucket(&self) -> StoreResult<()> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 404 => {}
            Err(e) => return Err(s3_error("head bucket", e)),
        }
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se))
                if matches!(se.err().code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) =>
            {
                Ok(())
            }
            Err(e) => Err(s3_error("create bucket", e)),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn presign(&self, key: &str, put: bool, ttl: Duration) -> StoreResult<String> {
        use aws_sdk_s3::presigning::PresigningConfig;
        check_key(key)?;
        let cfg = PresigningConfig::expires_in(ttl.min(crate::storage::MAX_SIGNED_URL_TTL).max(Duration::from_secs(1)))
            .map_err(|e| StoreError::Unavailable(format!("presign: {e}")))?;
        let req = if put {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(cfg)
                .await
                .map_err(|e| s3_error("presign put", e))?
        } else {
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(cfg)
                .await
                .map_err(|e| s3_error("presign get", e))?
        };
        Ok(req.uri().to_string())
    }

    async fn get_object(
        &self,
        op: &'static str,
        key: &str,
    ) -> StoreResult<aws_sdk_s3::operation::get_object::GetObjectOutput> {
        check_key(key)?;
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error(op, e))
    }
}

impl ObjectStore for S3ObjectStore {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn put_file<'a>(&'a self, key: &'a str, src: &'a Path) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_key(key)?;
            let size = tokio::fs::metadata(src).await?.len();
            // streamed from the file (re-read on retries), with its exact length
            let body = ByteStream::read_from()
                .path(src)
                .length(aws_sdk_s3::primitives::Length::Exact(size))
                .build()
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(segment_api::describe_error(&e))))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(size as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("put", e))?;
            if let Err(e) = tokio::fs::remove_file(src).await
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, "object stored, but removing its source file failed");
            }
            Ok(size)
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            check_key(key)?;
            let len = bytes.len() as i64;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_length(len)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| s3_error("put", e))?;
            Ok(())
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a str, dst: &'a Path) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut body = self.get_object("get", key).await?.body;
            write_file_or_remove(dst, |mut f| async move {
                let mut n = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|e| body_error("get", e))?;
                    f.write_all(&chunk).await?;
                    n += chunk.len() as u64;
                }
                f.flush().await?;
                Ok(n)
            })
            .await
        })
    }

    fn get_bytes<'a>(&'a self, key: &'a str, max_bytes: u64) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let out = self.get_object("get", key).await?;
            let announced = out.content_length().unwrap_or(0).max(0) as u64;
            if announced > max_bytes {
                return Err(StoreError::TooLarge);
            }
            let mut body = out.body;
            let mut buf = Vec::with_capacity(announced as usize);
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| body_error("get", e))?;
                if (buf.len() + chunk.len()) as u64 > max_bytes {
                    return Err(StoreError::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(buf)
        })
    }

    fn size<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            check_key(key)?;
            match self.client.head_object().bucket(&self.bucket).key(key).send().await {
                Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
                Err(e) => match s3_error("head", e) {
                    StoreError::NotFound => Ok(None),
                    other => Err(other),
                },
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            check_key(key)?;
            // S3 answers 204 for a missing key; some servers answer 404
            match self.client.delete_object().bucket(&self.bucket).key(key).send().await {
                Ok(_) => Ok(()),
                Err(e) => match s3_error("delete", e) {
                    StoreError::NotFound => Ok(()),
                    other => Err(other),
                },
            }
        })
    }

    fn list<'a>(&'a self) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| s3_error("list", e))?;
                keys.extend(out.contents().iter().filter_map(|o| o.key()).map(str::to_string));
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn presign_get<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, String> {
        Box::pin(self.presign(key, false, ttl))
    }

    fn presign_put<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, String> {
        Box::pin(self.presign(key, true, ttl))
    }
}
