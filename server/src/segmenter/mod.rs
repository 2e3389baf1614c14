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
//! Nothing here logs a URL (signed URLs are credentials) or the API key. The job's JSON
//! (input, output, statuses) is `segment_api`'s, the same types the worker serves.

mod supervisor;

use std::path::PathBuf;
use std::time::Duration;

use segment_api::{ErrorReply, JobReport, Policy, RunRequest, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use segment_api::{JobInput, JobOutput, JobTimings};

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

impl Backend {
    /// Whether jobs can go anywhere, checked once at start so that a server without a
    /// segmentation service stops with one line instead of leaving every scan waiting.
    /// `Local`: the worker binary exists and is executable (a bare name is looked up on
    /// `PATH`). `RunPod`: configured (its endpoint answers only when asked).
    pub fn check_runnable(&self) -> Result<(), String> {
        match self {
            Backend::RunPod { .. } => Ok(()),
            Backend::Local(local) => match find_executable(&local.binary) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "the segmentation worker {} is not there or not executable (build it with \
                     scripts/build.sh, set NEUROVOL_WORKER_BIN to it, or configure \
                     NEUROVOL_RUNPOD_ENDPOINT_ID and NEUROVOL_RUNPOD_API_KEY)",
                    local.binary.display()
                )),
            },
        }
    }
}

/// The executable `binary` names: itself when it has a folder part, else the first match
/// on `PATH` (as `Command::new` will look it up).
fn find_executable(binary: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if binary.components().count() > 1 {
        return runnable(binary).then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| runnable(p))
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

/// What the pipeline persists to find a job again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobHandle {
    pub id: String,
    /// `local:<worker instance>` or `runpod:<endpoint id>`: a handle from another local
    /// worker instance (restarted since) is [`JobState::Lost`] without asking.
    pub backend: String,
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

use supervisor::{LocalConn, Supervisor};

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
    pub async fn start(backend: Backend, settings: ClientSettings) -> Result<Segmenter, SegmenterError> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SegmenterError::Unavailable(format!("cannot build the HTTP client: {e}")))?;
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
        Ok(Segmenter { http, settings, target })
    }

    async fn local_conn(&self) -> Result<LocalConn, SegmenterError> {
        let Target::Local { sup, .. } = &self.target else {
            return Err(SegmenterError::Protocol("not a local worker".into()));
        };
        let mut rx = sup.conn.clone();
        let wait = rx.wait_for(|c| c.is_some());
        match tokio::time::timeout(self.settings.worker_start_timeout, wait).await {
            Ok(Ok(c)) => c
                .clone()
                .ok_or_else(|| SegmenterError::Unavailable("the local worker is not running".into())),
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
                        ErrorReply::deserialize(&json)
                            .map(|r| r.error)
                            .unwrap_or_else(|_| format!("HTTP {}", status.as_u16()))
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
            let exp = self.settings.backoff_base.saturating_mul(1u32 << attempt.min(16));
            let jitter = exp.mul_f64(rand::random::<f64>() * 0.5);
            let delay = retry_after.unwrap_or(exp + jitter).min(self.settings.backoff_max);
            tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, reason = %why, "segmenter request retried");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Submits a job (`timeout`: RunPod's `policy.executionTimeout`).
    pub async fn submit(&self, input: &JobInput, timeout: Option<Duration>) -> Result<JobHandle, SegmenterError> {
        let body = RunRequest {
            input: Some(input.clone()),
            policy: timeout.map(|t| Policy {
                execution_timeout_ms: Some(t.as_millis() as u64),
            }),
        };
        let body =
            serde_json::to_value(&body).map_err(|e| SegmenterError::Protocol(format!("cannot encode the job: {e}")))?;
        let (status, v, tag) = self.call(reqwest::Method::POST, "/run", Some(&body)).await?;
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
                let current = sup.conn.borrow().as_ref().map(|c| format!("local:{}", c.instance));
                // while restarting (None) we cannot tell yet: ask once it is back
                current.is_some_and(|c| c != job.backend)
            }
            Target::RunPod { endpoint_id, .. } => job.backend != format!("runpod:{endpoint_id}"),
        }
    }

    fn lost(job: &JobHandle) -> JobState {
        tracing::warn!(job = %job.id, "segmentation job lost (worker restarted or result expired)");
        JobState::Lost {
            reason: "the segmentation worker no longer knows this job (it restarted); submit it again".into(),
        }
    }

    /// Current state of a job.
    pub async fn status(&self, job: &JobHandle) -> Result<JobState, SegmenterError> {
        self.ask(reqwest::Method::GET, "status", job).await
    }

    /// Asks the worker to cancel; returns the state it reports.
    pub async fn cancel(&self, job: &JobHandle) -> Result<JobState, SegmenterError> {
        let state = self.ask(reqwest::Method::POST, "cancel", job).await?;
        if !matches!(state, JobState::Lost { .. }) {
            tracing::info!(job = %job.id, "segmentation job cancel requested");
        }
        Ok(state)
    }

    /// `/status/{id}` or `/cancel/{id}`: the state the worker reports, or `Lost` when it
    /// (or this worker instance) does not know the job.
    async fn ask(&self, method: reqwest::Method, verb: &str, job: &JobHandle) -> Result<JobState, SegmenterError> {
        if self.stale(job) {
            return Ok(Self::lost(job));
        }
        let (status, v, tag) = self.call(method, &format!("/{verb}/{}", job.id), None).await?;
        if status == reqwest::StatusCode::NOT_FOUND || tag != job.backend {
            return Ok(Self::lost(job));
        }
        parse_state(&v)
    }

    /// Polls until the job ends. After `deadline` it cancels the job and answers
    /// `TimedOut`. A worker that stays unreachable through all retries is an error.
    pub async fn wait(&self, job: &JobHandle, deadline: Duration) -> Result<JobState, SegmenterError> {
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
            tokio::time::sleep(self.settings.poll_interval.min(until - tokio::time::Instant::now())).await;
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
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    let s = segment_api::describe_error(&e.without_url());
    if timeout {
        format!("timed out ({s})")
    } else if connect {
        format!("cannot connect ({s})")
    } else {
        s
    }
}

/// A worker's (or RunPod's) report as the pipeline's state.
fn parse_state(v: &Value) -> Result<JobState, SegmenterError> {
    let report = JobReport::deserialize(v).map_err(|e| SegmenterError::Protocol(format!("bad job report: {e}")))?;
    let reason = || report.error.clone().unwrap_or_else(|| "no reason given".to_string());
    Ok(match report.status {
        Status::InQueue => JobState::Queued,
        Status::InProgress => JobState::Running,
        Status::Completed => {
            let output = report
                .job_output()
                .ok_or_else(|| SegmenterError::Protocol("COMPLETED without output".into()))?
                .map_err(|e| SegmenterError::Protocol(format!("bad output: {e}")))?;
            JobState::Completed { output }
        }
        Status::Failed => JobState::Failed { reason: reason() },
        Status::Cancelled => JobState::Cancelled,
        Status::TimedOut => JobState::TimedOut { reason: reason() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_parse_and_round_trip() {
        let s = parse_state(&json!({"id": "x", "status": "FAILED", "error": "bad input"})).unwrap();
        assert_eq!(
            s,
            JobState::Failed {
                reason: "bad input".into()
            }
        );
        let s = parse_state(&json!({"status": "COMPLETED", "output": {"model": "m", "timings": {"total_s": 1.5}}}))
            .unwrap();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"state\":\"completed\""), "{text}");
        assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s);
        assert!(parse_state(&json!({"status": "WEIRD"})).is_err());
        assert!(JobState::Lost { reason: String::new() }.is_retryable());
        assert!(!JobState::Running.is_terminal());
    }
}
