//! Removes abandoned uploads after their idle expiry.

use std::path::Path as FsPath;
use std::time::{Duration, SystemTime};

use super::AppState;

use super::*;

// ---------------------------------------------------------------------------------------
// abandoned uploads

/// Removes upload folders idle for longer than the expiry, now and then periodically.
pub fn spawn_sweeper(state: &AppState) {
    let dir = uploads_dir(state);
    let (sweep_secs, expiry_secs) = (state.config.upload_sweep_secs, state.config.upload_expiry_secs);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(sweep_secs));
        loop {
            tick.tick().await;
            let dir = dir.clone();
            let removed = tokio::task::spawn_blocking(move || sweep(&dir, Duration::from_secs(expiry_secs)))
                .await
                .unwrap_or(0);
            if removed > 0 {
                tracing::info!(removed, "expired uploads removed");
            }
        }
    });
}

/// Idle = the newest modification time of the folder and its files.
fn sweep(dir: &FsPath, expiry: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let mut newest = e
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Ok(inner) = std::fs::read_dir(&path) {
            for f in inner.flatten() {
                if let Ok(t) = f.metadata().and_then(|m| m.modified()) {
                    newest = newest.max(t);
                }
            }
        }
        if now.duration_since(newest).unwrap_or_default() > expiry && std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}
