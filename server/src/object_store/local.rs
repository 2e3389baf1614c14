//! The local folder store (the embedded default): `<root>/<key>` with the app's own signed
//! URLs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::storage::{ObjectFolder, UrlSigner};

/// A folder of objects, `<root>/<key>`, with the app's own signed URLs.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
    store: ObjectFolder,
    signer: UrlSigner,
}

impl LocalObjectStore {
    pub fn new(root: impl Into<PathBuf>, signer: UrlSigner) -> LocalObjectStore {
        let root = root.into();
        LocalObjectStore {
            store: ObjectFolder::new(root.clone()),
            root,
            signer,
        }
    }

    /// The underlying folder store (`web/objects.rs` serves signed URLs from it).
    pub fn local(&self) -> &ObjectFolder {
        &self.store
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn not_found(e: std::io::Error) -> StoreError {
        if e.kind() == std::io::ErrorKind::NotFound {
            StoreError::NotFound
        } else {
            StoreError::Io(e)
        }
    }

    fn presign(&self, key: &str, method: &str, ttl: Duration) -> StoreResult<String> {
        check_key(key)?;
        self.signer
            .sign(key, method, ttl.min(crate::storage::MAX_SIGNED_URL_TTL))
            .map_err(|_| StoreError::InvalidKey)
    }
}

impl ObjectStore for LocalObjectStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn put_file<'a>(&'a self, key: &'a str, src: &'a Path) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            check_key(key)?;
            Ok(self.store.put_file(key, src).await?)
        })
    }

    fn put_bytes<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let dst = self.path(key)?;
            tokio::fs::create_dir_all(&self.root).await?;
            // staged under a name list() ignores, then renamed: the object appears whole
            let staging = self
                .root
                .join(format!(".incoming-{}", hex::encode(rand::random::<[u8; 8]>())));
            write_file_or_remove(&staging, |mut f| async move {
                f.write_all(&bytes).await?;
                f.flush().await?;
                Ok(0)
            })
            .await?;
            if let Err(e) = tokio::fs::rename(&staging, &dst).await {
                let _ = tokio::fs::remove_file(&staging).await;
                return Err(e.into());
            }
            Ok(())
        })
    }

    fn get_to_file<'a>(&'a self, key: &'a str, dst: &'a Path) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let mut src = tokio::fs::File::open(self.path(key)?).await.map_err(Self::not_found)?;
            write_file_or_remove(dst, |mut f| async move {
                let n = tokio::io::copy(&mut src, &mut f).await?;
                f.flush().await?;
                Ok(n)
            })
            .await
        })
    }

    fn get_bytes<'a>(&'a self, key: &'a str, max_bytes: u64) -> StoreFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let f = tokio::fs::File::open(self.path(key)?).await.map_err(Self::not_found)?;
            let len = f.metadata().await?.len();
            if len > max_bytes {
                return Err(StoreError::TooLarge);
            }
            let mut buf = Vec::with_capacity(len as usize);
            // `take` guards against a file growing between metadata and read
            f.take(max_bytes.saturating_add(1)).read_to_end(&mut buf).await?;
            if buf.len() as u64 > max_bytes {
                return Err(StoreError::TooLarge);
            }
            Ok(buf)
        })
    }

    fn size<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            match tokio::fs::metadata(self.path(key)?).await {
                Ok(m) if m.is_file() => Ok(Some(m.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            check_key(key)?;
            Ok(self.store.delete(key).await?)
        })
    }

    fn list<'a>(&'a self) -> StoreFuture<'a, Vec<String>> {
        Box::pin(async move {
            let mut dir = match tokio::fs::read_dir(&self.root).await {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut keys = Vec::new();
            while let Some(entry) = dir.next_entry().await? {
                // staging files (`.incoming-*`) and anything else that is not a key are skipped
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if crate::storage::valid_key(&name) && entry.file_type().await?.is_file() {
                    keys.push(name);
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn presign_get<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, String> {
        Box::pin(async move { self.presign(key, "GET", ttl) })
    }

    fn presign_put<'a>(&'a self, key: &'a str, ttl: Duration) -> StoreFuture<'a, String> {
        Box::pin(async move { self.presign(key, "PUT", ttl) })
    }
}
