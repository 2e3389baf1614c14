//! Object storage for what the server keeps (for now: the de-identified ZIP of a scan).
//!
//! Embedded default: a local folder, `<data_dir>/objects/<key>`. Keys are random
//! (`new_key`), never derived from user data. Issue 6 puts this behind a trait with an
//! S3/R2 implementation; callers only use `put_file`, `get`, `delete`.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// A fresh random object key (128 bits, hex), with a suffix naming the kind of object.
pub fn new_key(suffix: &str) -> String {
    format!("{}{suffix}", hex::encode(rand::random::<[u8; 16]>()))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !key.starts_with('.')
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        if valid_key(key) {
            Ok(self.root.join(key))
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid object key"))
        }
    }

    /// Moves (or copies) a finished file into the store under `key`; returns its size.
    /// The object appears atomically (rename inside the store's folder).
    pub async fn put_file(&self, key: &str, src: &Path) -> io::Result<u64> {
        let dst = self.path(key)?;
        tokio::fs::create_dir_all(&self.root).await?;
        let staging = self.root.join(format!(".incoming-{}", hex::encode(rand::random::<[u8; 8]>())));
        if tokio::fs::rename(src, &staging).await.is_err() {
            // another file system: copy, then remove the source
            if let Err(e) = tokio::fs::copy(src, &staging).await {
                let _ = tokio::fs::remove_file(&staging).await;
                return Err(e);
            }
            let _ = tokio::fs::remove_file(src).await;
        }
        let size = tokio::fs::metadata(&staging).await?.len();
        if let Err(e) = tokio::fs::rename(&staging, &dst).await {
            let _ = tokio::fs::remove_file(&staging).await;
            return Err(e);
        }
        Ok(size)
    }

    #[allow(dead_code)] // read back by the pipeline (issue 6)
    pub async fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        tokio::fs::read(self.path(key)?).await
    }

    /// Deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_safe() {
        let a = new_key(".zip");
        assert_ne!(a, new_key(".zip"));
        assert!(valid_key(&a));
        assert!(!valid_key("../x"));
        assert!(!valid_key("a/b"));
        assert!(!valid_key(""));
    }
}
