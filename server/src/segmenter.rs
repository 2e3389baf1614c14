//! The segmentation service client: one API over the RunPod serverless job protocol,
//! against either the project's own worker (embedded default: a `neurovol-worker` child
//! process on a loopback port, restarted if it dies) or a real RunPod endpoint.
//!
//! ```text
//! let seg = Segmenter::start(backend, ClientSettings::default()).await?;
//! let job = seg.submit(&JobInput { nifti_url, labels_url, volumes_url, .. }, None).await?;
//! // persist `job` (JobHandle) and each JobState: both are serde types
//! let state = seg.wait(&job, Duration::from_secs(900)).await?;   // or poll seg.status(&job)
//! ```
//! Requests time out, and are retried with exponential backoff (plus jitter, honouring
//! `Retry-After`) on connection errors, 429 and 5xx. A job the worker no longer knows (it
//! restarted, or its result expired) is reported as [`JobState::Lost`]: submit it again.
//! Nothing here logs a URL (signed URLs are credentials) or the API key.
//!
//! This file depends on no other server module, so integration tests include it directly.

#![allow(dead_code)] // the pipeline (issue 6) is its caller

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, watch};

/// Where jobs go.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The project's worker, started as a child process on `127.0.0.1:<free port>`.
    Local(LocalWorkerSettings),
    /// A RunPod serverless endpoint (or anything speaking its API).
    RunPod {
        base_url: String,
        endpoint_id: String,
        api_key: String,
    },
}

#[derive(Clone, Debug)]
pub struct LocalWorkerSettings {
    /// The `neurovol-worker` binary.
    pub binary: PathBuf,
    /// `NEUROVOL_ASSETS` for the worker (folder with `models/`).
    pub assets: PathBuf,
    /// The worker's own limit per job (download + inference + upload).
    pub job_timeout: Duration,
    pub queue_capacity: usize,
    /// More environment for the child (e.g. `NEUROVOL_WORKER_MAX_INPUT_BYTES`).
    pub extra_env: Vec<(String, String)>,
}

impl LocalWorkerSettings {
    pub fn new(binary: PathBuf, assets: PathBuf) -> LocalWorkerSettings {
        LocalWorkerSettings {
            binary,
            assets,
            job_timeout: Duration::from_secs(900),
            queue_capacity: 16,
            extra_env: Vec::new(),
        }
    }
}

/// `neurovol-worker` beside the running binary if there is one, else the name (PATH).
pub fn default_worker_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("neurovol-worker")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("neurovol-worker"))
}

#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Per HTTP request.
    pub request_timeout: Duration,
    /// Retries after the first attempt (connection errors, 429, 5xx).
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Between status polls in [`Segmenter::wait`].
    pub poll_interval: Duration,
    /// How long to wait for a (re)starting local worker before calling it unavailable.
    pub worker_start_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            request_timeout: Duration::from_secs(30),
            max_retries: 5,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            poll_interval: Duration::from_secs(2),
            worker_start_timeout: Duration::from_secs(60),
        }
    }
}

/// One segmentation request. URLs are pre-signed (GET for the input, PUT for outputs).
#[derive(Clone, Serialize, Deserialize)]
pub struct JobInput {
    pub nifti_url: String,
    pub labels_url: String,
    pub volumes_url: String,
    pub model: String,
    /// Run mindgrab too, for the intracranial volume.
    pub brain_mask: bool,
}

impl JobInput {
    pub fn new(nifti_url: String, labels_url: String, volumes_url: String) -> JobInput {
        JobInput {
            nifti_url,
            labels_url,
            volumes_url,
            model: "model21_104class".into(),
            brain_mask: true,
        }
    }
}

impl std::fmt::Debug for JobInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobInput")
            .field("model", &self.model)
            .field("brain_mask", &self.brain_mask)
            .finish_non_exhaustive()
    }
}

/// What the pipeline persists to find a job again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHandle {
    pub id: String,
    /// `local:<worker instance>` or `runpod:<endpoint id>`: a handle from another local
    /// worker instance (restarted since) is [`JobState::Lost`] without asking.
    pub backend: String,
}

/// `output` of a completed job (the worker's report; unknown fields are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutput {
    pub model: String,
    #[serde(default)]
    pub engine: String,
    #[serde(default)]
    pub labels_sha256: String,
    #[serde(default)]
    pub volumes_sha256: String,
    #[serde(default)]
    pub labels_bytes: u64,
    #[serde(default)]
    pub volumes_bytes: u64,
    /// Seconds per step (download_s, segment_s, upload_s, total_s, ...).
    #[serde(default)]
    pub timings: std::collections::BTreeMap<String, f64>,
}

/// A job's state, as the pipeline stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Completed {
        output: JobOutput,
    },
    /// The worker refused or could not do the job (reason is user-presentable).
    Failed {
        reason: String,
    },
    Cancelled,
    TimedOut {
        reason: String,
    },
    /// The worker does not know the job (restarted, result expired): submit it again.
    Lost {
        reason: String,
    },
}

impl JobState {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
    /// Worth submitting again as is (the input itself was not refused).
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobState::Lost { .. } | JobState::TimedOut { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmenterError {
    #[error("the segmentation service is unavailable: {0}")]
    Unavailable(String),
    #[error("the segmentation service is busy (queue full)")]
    Busy,
    #[error("the segmentation service refused the API key")]
    Unauthorized,
    #[error("the segmentation service refused the request: {0}")]
    Rejected(String),
    #[error("unexpected answer from the segmentation service: {0}")]
    Protocol(String),
}

/// A running local worker.
#[derive(Clone, Debug)]
struct LocalConn {
    base_url: String,
    instance: String,
    pid: u32,
}

struct Supervisor {
    conn: watch::Receiver<Option<LocalConn>>,
    stop: Arc<Notify>,
    done: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

enum Target {
    Local {
        sup: Supervisor,
        api_key: String,
    },
    RunPod {
        base_url: String,
        endpoint_id: String,
        api_key: String,
    },
}

pub struct Segmenter {
    http: reqwest::Client,
    settings: ClientSettings,
    target: Target,
}

const LOCAL_ENDPOINT: &str = "local";

impl Segmenter {
    /// For `Local`, starts the worker and waits until it is ready (error if it cannot).
    pub async fn start(
        backend: Backend,
        settings: ClientSettings,
    ) -> Result<Segmenter, SegmenterError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                SegmenterError::Unavailable(format!("cannot build the HTTP client: {e}"))
            })?;
        let target = match backend {
            Backend::RunPod {
                base_url,
                endpoint_id,
                api_key,
            } => Target::RunPod {
                base_url: base_url.trim_end_matches('/').to_string(),
                endpoint_id,
                api_key,
            },
            Backend::Local(local) => {
                let api_key = hex::encode(rand::random::<[u8; 32]>());
                let sup = Supervisor::spawn(local, api_key.clone());
                let seg = Segmenter {
                    http,
                    settings,
                    target: Target::Local { sup, api_key },
                };
                seg.local_conn().await?;
                return Ok(seg);
            }
        };
        Ok(Segmenter {
            http,
            settings,
            target,
        })
    }

    async fn local_conn(&self) -> Result<LocalConn, SegmenterError> {
        let Target::Local { sup, .. } = &self.target else {
            return Err(SegmenterError::Protocol("not a local worker".into()));
        };
        let mut rx = sup.conn.clone();
        let wait = rx.wait_for(|c| c.is_some());
        match tokio::time::timeout(self.settings.worker_start_timeout, wait).await {
            Ok(Ok(c)) => c.clone().ok_or_else(|| {
                SegmenterError::Unavailable("the local worker is not running".into())
            }),
            Ok(Err(_)) => Err(SegmenterError::Unavailable(
                "the local worker supervisor stopped".into(),
            )),
            Err(_) => Err(SegmenterError::Unavailable(
                "the local worker did not start in time".into(),
            )),
        }
    }

    /// The local worker's process id (tests use it to kill the worker mid-job).
    pub fn local_worker_pid(&self) -> Option<u32> {
        match &self.target {
            Target::Local { sup, .. } => sup.conn.borrow().as_ref().map(|c| c.pid),
            Target::RunPod { .. } => None,
        }
    }

    /// Base URL of the API (`.../v2/<endpoint>`), key, and backend tag.
    async fn endpoint(&self) -> Result<(String, String, String), SegmenterError> {
        match &self.target {
            Target::RunPod {
                base_url,
                endpoint_id,
                api_key,
            } => Ok((
                format!("{base_url}/v2/{endpoint_id}"),
                api_key.clone(),
                format!("runpod:{endpoint_id}"),
            )),
            Target::Local { api_key, .. } => {
                let c = self.local_conn().await?;
                Ok((
                    format!("{}/v2/{LOCAL_ENDPOINT}", c.base_url),
                    api_key.clone(),
                    format!("local:{}", c.instance),
                ))
            }
        }
    }

    /// Sends with retries; returns the status and JSON body of the final answer
    /// (2xx or 404), or an error.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(reqwest::StatusCode, Value, String), SegmenterError> {
        let mut attempt = 0u32;
        loop {
            let (base, key, tag) = self.endpoint().await?;
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(&key);
            if let Some(b) = body {
                req = req.json(b);
            }
            let (retry, why, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = resp.text().await.unwrap_or_default();
                    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let msg = || {
                        json.get("error")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()))
                    };
                    if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                        return Ok((status, json, tag));
                    }
                    match status.as_u16() {
                        401 | 403 => return Err(SegmenterError::Unauthorized),
                        429 => (true, "busy".to_string(), retry_after),
                        500..=599 => (true, msg(), retry_after),
                        _ => return Err(SegmenterError::Rejected(msg())),
                    }
                }
                Err(e) => (true, describe(e), None),
            };
            if !retry || attempt >= self.settings.max_retries {
                return Err(if why == "busy" {
                    SegmenterError::Busy
                } else {
                    SegmenterError::Unavailable(why)
                });
            }
            let exp = self
                .settings
                .backoff_base
                .saturating_mul(1u32 << attempt.min(16));
            let jitter = exp.mul_f64(rand::random::<f64>() * 0.5);
            let delay = retry_after
                .unwrap_or(exp + jitter)
                .min(self.settings.backoff_max);
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, reason = %why, "segmenter request retried");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Submits a job (`timeout`: RunPod's `policy.executionTimeout`).
    pub async fn submit(
        &self,
        input: &JobInput,
        timeout: Option<Duration>,
    ) -> Result<JobHandle, SegmenterError> {
        let mut body = json!({ "input": input });
        if let Some(t) = timeout {
            body["policy"] = json!({ "executionTimeout": t.as_millis() as u64 });
        }
        let (status, v, tag) = self
            .call(reqwest::Method::POST, "/run", Some(&body))
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(SegmenterError::Rejected("no such endpoint".into()));
        }
        let id = v
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| SegmenterError::Protocol("no job id in the answer to /run".into()))?;
        tracing::info!(job = %id, backend = %tag, model = %input.model, "segmentation job submitted");
        Ok(JobHandle {
            id: id.to_string(),
            backend: tag,
        })
    }

    fn stale(&self, job: &JobHandle) -> bool {
        match &self.target {
            Target::Local { sup, .. } => {
                let current = sup
                    .conn
                    .borrow()
                    .as_ref()
                    .map(|c| format!("local:{}", c.instance));
                // while restarting (None) we cannot tell yet: ask once it is back
                current.is_some_and(|c| c != job.backend)
            }
            Target::RunPod { endpoint_id, .. } => job.backend != format!("runpod:{endpoint_id}"),
        }
    }

    fn lost(job: &JobHandle) -> JobState {
        tracing::warn!(job = %job.id, "segmentation job lost (worker restarted or result expired)");
        JobState::Lost {
            reason:
                "the segmentation worker no longer knows this job (it restarted); submit it again"
                    .into(),
        }
    }

    /// Current state of a job.
    pub async fn status(&self, job: &JobHandle) -> Result<JobState, SegmenterError> {
        if self.stale(job) {
            return Ok(Self::lost(job));
        }
        let (status, v, tag) = self
            .call(reqwest::Method::GET, &format!("/status/{}", job.id), None)
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND || tag != job.backend {
            return Ok(Self::lost(job));
        }
        parse_state(&v)
    }

    /// Asks the worker to cancel; returns the state it reports.
    pub async fn cancel(&self, job: &JobHandle) -> Result<JobState, SegmenterError> {
        if self.stale(job) {
            return Ok(Self::lost(job));
        }
        let (status, v, tag) = self
            .call(reqwest::Method::POST, &format!("/cancel/{}", job.id), None)
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND || tag != job.backend {
            return Ok(Self::lost(job));
        }
        tracing::info!(job = %job.id, "segmentation job cancel requested");
        parse_state(&v)
    }

    /// Polls until the job ends. After `deadline` it cancels the job and answers
    /// `TimedOut`. A worker that stays unreachable through all retries is an error.
    pub async fn wait(
        &self,
        job: &JobHandle,
        deadline: Duration,
    ) -> Result<JobState, SegmenterError> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let state = self.status(job).await?;
            if state.is_terminal() {
                return Ok(state);
            }
            if tokio::time::Instant::now() >= until {
                let _ = self.cancel(job).await;
                return Ok(JobState::TimedOut {
                    reason: format!("no result within {:.0} s", deadline.as_secs_f64()),
                });
            }
            tokio::time::sleep(
                self.settings
                    .poll_interval
                    .min(until - tokio::time::Instant::now()),
            )
            .await;
        }
    }

    /// Stops the local worker (it finishes or requeues its job within its grace period).
    pub async fn shutdown(&self) {
        if let Target::Local { sup, .. } = &self.target {
            sup.stop.notify_one();
            let handle = sup.done.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = handle {
                let _ = h.await;
            }
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        let t = c.to_string();
        if !t.contains("://") && !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    if timeout {
        format!("timed out ({s})")
    } else if connect {
        format!("cannot connect ({s})")
    } else {
        s
    }
}

fn parse_state(v: &Value) -> Result<JobState, SegmenterError> {
    let status = v
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| SegmenterError::Protocol("no status".into()))?;
    let error = || match v.get("error") {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => "no reason given".to_string(),
    };
    Ok(match status {
        "IN_QUEUE" => JobState::Queued,
        "IN_PROGRESS" => JobState::Running,
        "COMPLETED" => {
            let output = v
                .get("output")
                .cloned()
                .ok_or_else(|| SegmenterError::Protocol("COMPLETED without output".into()))?;
            let output = serde_json::from_value(output)
                .map_err(|e| SegmenterError::Protocol(format!("bad output: {e}")))?;
            JobState::Completed { output }
        }
        "FAILED" => JobState::Failed { reason: error() },
        "CANCELLED" => JobState::Cancelled,
        "TIMED_OUT" => JobState::TimedOut { reason: error() },
        other => return Err(SegmenterError::Protocol(format!("unknown status {other}"))),
    })
}

impl Supervisor {
    fn spawn(settings: LocalWorkerSettings, api_key: String) -> Supervisor {
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
            .envs(
                settings
                    .extra_env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_and_round_trip() {
        let s = parse_state(&json!({"id": "x", "status": "FAILED", "error": "bad input"})).unwrap();
        assert_eq!(
            s,
            JobState::Failed {
                reason: "bad input".into()
            }
        );
        let s = parse_state(
            &json!({"status": "COMPLETED", "output": {"model": "m", "timings": {"total_s": 1.5}}}),
        )
        .unwrap();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"state\":\"completed\""), "{text}");
        assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s);
        assert!(parse_state(&json!({"status": "WEIRD"})).is_err());
        assert!(
            JobState::Lost {
                reason: String::new()
            }
            .is_retryable()
        );
        assert!(!JobState::Running.is_terminal());
    }

    #[test]
    fn input_debug_hides_urls() {
        let i = JobInput::new(
            "http://h/a?sig=SECRET".into(),
            "http://h/b?sig=SECRET".into(),
            "http://h/c?sig=SECRET".into(),
        );
        assert!(!format!("{i:?}").contains("SECRET"));
    }
}
