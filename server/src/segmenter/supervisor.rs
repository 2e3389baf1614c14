//! The local worker's supervisor: keeps one `neurovol-worker` child running on a loopback
//! port, publishes its address, restarts it with back-off when it exits, and stops it
//! (gracefully, by closing its stdin) when asked.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, watch};

use super::*;

/// A running local worker.
#[derive(Clone, Debug)]
pub(super) struct LocalConn {
    pub(super) base_url: String,
    pub(super) instance: String,
    pub(super) pid: u32,
}

pub(super) struct Supervisor {
    pub(super) conn: watch::Receiver<Option<LocalConn>>,
    pub(super) stop: Arc<Notify>,
    pub(super) done: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Supervisor {
    pub(super) fn spawn(settings: LocalWorkerSettings, api_key: String) -> Supervisor {
        let (tx, rx) = watch::channel(None);
        let stop = Arc::new(Notify::new());
        let done = tokio::spawn(supervise(settings, api_key, tx, stop.clone()));
        Supervisor {
            conn: rx,
            stop,
            done: Mutex::new(Some(done)),
        }
    }
}

/// Keeps one worker child running: start, wait for its ready line, publish its address,
/// restart with backoff when it exits, stop (graceful via stdin EOF) when asked.
async fn supervise(
    settings: LocalWorkerSettings,
    api_key: String,
    conn: watch::Sender<Option<LocalConn>>,
    stop: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = tokio::time::Instant::now();
        let instance = hex::encode(rand::random::<[u8; 8]>());
        let mut cmd = tokio::process::Command::new(&settings.binary);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--exit-on-stdin-eof")
            .env("NEUROVOL_WORKER_API_KEY", &api_key)
            .env("NEUROVOL_WORKER_ENDPOINT_ID", LOCAL_ENDPOINT)
            .env("NEUROVOL_ASSETS", &settings.assets)
            .env(
                "NEUROVOL_WORKER_JOB_TIMEOUT",
                settings.job_timeout.as_secs_f64().to_string(),
            )
            .env("NEUROVOL_WORKER_QUEUE", settings.queue_capacity.to_string())
            // finish-or-requeue well inside the 30 s this supervisor waits at shutdown
            .env("NEUROVOL_WORKER_SHUTDOWN_GRACE", "20")
            .envs(settings.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, binary = %settings.binary.display(), "cannot start the local segmentation worker");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.notified() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let mut lines = child.stdout.take().map(|o| BufReader::new(o).lines());
        let ready = async {
            let lines = lines.as_mut()?;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("neurovol-worker ready at ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        };
        let base_url = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(60), ready) => r.ok().flatten(),
            _ = stop.notified() => {
                let _ = child.kill().await;
                return;
            }
        };
        if let Some(base_url) = base_url {
            tracing::info!(pid, instance = %instance, "local segmentation worker ready");
            let _ = conn.send(Some(LocalConn {
                base_url,
                instance,
                pid,
            }));
            // drain stdout so the child never blocks on a full pipe
            if let Some(mut lines) = lines {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            }
            tokio::select! {
                status = child.wait() => {
                    let _ = conn.send(None);
                    tracing::warn!(pid, status = ?status.ok(), "local segmentation worker exited; restarting");
                }
                _ = stop.notified() => {
                    let _ = conn.send(None);
                    drop(stdin); // EOF: the worker finishes or requeues its job and exits
                    if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
                        let _ = child.kill().await;
                    }
                    return;
                }
            }
        } else {
            tracing::error!(pid, "the local segmentation worker did not become ready");
            let _ = child.kill().await;
        }
        drop(stdin);
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.notified() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
