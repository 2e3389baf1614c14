//! The one temp-dir guard: a private folder removed when the guard is dropped, on success,
//! on every error and on panic, so that no request, step or command leaves files behind.

use std::path::{Path, PathBuf};

pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<parent>/<prefix>-<random>` (and `parent` if needed).
    pub fn new(parent: &Path, prefix: &str) -> std::io::Result<TempDir> {
        std::fs::create_dir_all(parent)?;
        let dir = parent.join(format!("{prefix}-{}", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::create_dir(&dir)?;
        Ok(TempDir(dir))
    }

    /// Takes charge of a folder that already exists (e.g. an upload's chunks).
    pub fn adopt(dir: PathBuf) -> TempDir {
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
