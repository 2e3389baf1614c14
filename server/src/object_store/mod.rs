//! One object-store interface for what the server keeps (de-identified ZIPs, NIfTI volumes,
//! segmentations), with two implementations:
//!
//! - [`LocalObjectStore`]: a folder (`storage::ObjectFolder`) plus the app's own HMAC-signed
//!   URLs (`storage::UrlSigner`, served by `web/objects.rs`). The embedded default.
//! - [`S3ObjectStore`]: an S3-compatible bucket (Cloudflare R2 in production) through
//!   `aws-sdk-s3`, with the store's own pre-signed URLs for the segmentation worker.
//!
//! Keys are the random names from `storage::new_key`; both stores refuse anything else
//! than ASCII letters, digits, `.`, `-`, `_` (at most 128, not starting with `.`), so a key
//! can never name a path outside the store or a staging file.
//!
//! Errors say what the caller can do: `NotFound`, `InvalidKey` and `TooLarge` are final;
//! `Unavailable` and `Io` ([`StoreError::is_transient`]) are worth retrying later. An S3
//! server that is down yields `Unavailable` after the SDK's own few quick retries (connect
//! timeout 5 s, each attempt at most 60 s), never a hang. Messages never hold a URL, a
//! signature or a secret.

mod local;
mod s3;

pub use local::LocalObjectStore;
pub use s3::{S3ObjectStore, S3Settings};

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

pub type StoreResult<T> = Result<T, StoreError>;
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object not found")]
    NotFound,
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    #[error("invalid object key")]
    InvalidKey,
    #[error("object too large")]
    TooLarge,
    #[error("object store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether trying again later may succeed (the store was down, or an I/O error).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Io(_))
    }
}

pub trait ObjectStore: Send + Sync {
    /// `"local"` or `"s3"`.
    fn kind(&self) -> &'static str;
    /// Moves a finished file into the store under `key` (source removed on success); returns size.
    fn put_file<'a>(&'a self, key: &'a str, src: &'a Path) -> StoreFuture<'a, u64>;
    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()>;
    /// Streams the object to `dst` (created/truncated; removed again on error); returns size.
    fn get_to_file<'a>(&'a self, key: &'a str, dst: &'a Path) -> StoreFuture<'a, u64>;
    /// Whole object in memory; `TooLarge` beyond `max_bytes`.
    fn get_bytes<'a>(&'a self, key: &'a str, max_bytes: u64) -> StoreFuture<'a, Vec<u8>>;
    /// Size if the object exists.
    fn size<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<u64>>;
    /// Deleting a missing object is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;
    /// Every key (tests and orphan checks).
    fn list<'a>(&'a self) -> StoreFuture<'a, Vec<String>>;
    /// Pre-signed URLs for the segmentation worker; ttl is capped at 15 minutes.
    fn presign_get<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, String>;
    fn presign_put<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, String>;
}

fn check_key(key: &str) -> StoreResult<()> {
    if crate::storage::valid_key(key) {
        Ok(())
    } else {
        Err(StoreError::InvalidKey)
    }
}

/// Writes `dst` with `fill`; removes it again when `fill` fails.
async fn write_file_or_remove<F, Fut>(dst: &Path, fill: F) -> StoreResult<u64>
where
    F: FnOnce(tokio::fs::File) -> Fut,
    Fut: Future<Output = StoreResult<u64>>,
{
    let file = tokio::fs::File::create(dst).await?;
    let result = fill(file).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(dst).await;
    }
    result
}
