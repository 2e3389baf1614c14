//! NeuroVol segmentation worker: the RunPod serverless job API over the volumetry core.
//!
//! ```text
//! POST /v2/{endpoint}/run          {"input": {...}, "policy": {"executionTimeout": ms}?}
//!                                  → 200 {"id", "status": "IN_QUEUE"} | 429 queue full
//! GET  /v2/{endpoint}/status/{id}  → {"id", "status", "delayTime", "executionTime",
//!                                     "output"? (COMPLETED), "error"? (FAILED, TIMED_OUT)}
//! POST /v2/{endpoint}/cancel/{id}  → {"id", "status"}
//! GET  /v2/{endpoint}/health       → {"jobs": {...}, "workers": {...}, "engine": {"kind", "name"}}
//! ```
//! Every request needs `Authorization: Bearer KEY` (401 otherwise). Statuses: IN_QUEUE,
//! IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT. One job runs at a time; a bounded
//! queue holds the rest. The JSON types are `segment_api`'s, shared with the server's
//! client. See `docs/segmentation-worker.md`.

pub mod config;
pub mod exec;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use segment_api::{ErrorReply, JobReport, RunRequest};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, Semaphore, watch};

pub use config::WorkerConfig;
pub use segment_api::{JobInput, JobOutput, Status};

struct Job {
    status: Status,
    /// Dropped as soon as the job ends (the URLs are credentials).
    input: Option<JobInput>,
    output: Option<Value>,
    error: Option<String>,
    timeout: Duration,
    submitted: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
    cancel: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    jobs: HashMap<String, Job>,
    queue: VecDeque<String>,
    running: Option<String>,
    accepting: bool,
    counts: HashMap<&'static str, u64>,
}

pub struct Worker {
    cfg: WorkerConfig,
    table: Mutex<Table>,
    wake: Notify,
    exec: exec::ExecContext,
    shutdown: watch::Receiver<bool>,
}

fn lock(w: &Worker) -> std::sync::MutexGuard<'_, Table> {
    // A panic while holding the lock leaves consistent data (no multi-step invariants).
    w.table.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Worker {
    pub fn new(cfg: WorkerConfig, shutdown: watch::Receiver<bool>) -> Result<Arc<Worker>, String> {
        cfg.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            // pre-signed URLs never redirect; following one would leave the signed host
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let exec = exec::ExecContext {
            http,
            assets: cfg.assets_dir(),
            max_input_bytes: cfg.max_input_bytes,
            max_nifti_bytes: cfg.max_nifti_bytes,
            inference: Arc::new(Semaphore::new(1)),
            engine: cfg.engine.open().map_err(|e| e.to_string())?,
        };
        Ok(Arc::new(Worker {
            table: Mutex::new(Table {
                accepting: true,
                ..Table::default()
            }),
            wake: Notify::new(),
            exec,
            cfg,
            shutdown,
        }))
    }

    fn report(id: &str, job: &Job) -> JobReport {
        let now = Instant::now();
        let delay = job.started.unwrap_or(now).saturating_duration_since(job.submitted);
        let exec = job
            .started
            .map(|s| job.finished.unwrap_or(now).saturating_duration_since(s))
            .unwrap_or_default();
        JobReport {
            delay_time_ms: Some(ms(delay)),
            execution_time_ms: Some(ms(exec)),
            output: job.output.clone(),
            error: job.error.clone(),
            ..JobReport::new(id, job.status)
        }
    }

    fn forget_old(&self, t: &mut Table) {
        let ttl = self.cfg.result_ttl;
        t.jobs.retain(|_, j| j.finished.is_none_or(|f| f.elapsed() < ttl));
    }

    /// The single runner: takes queued jobs one by one until shutdown.
    pub async fn run_queue(self: Arc<Self>) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let next = {
                let notified = self.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if *shutdown.borrow() {
                    return;
                }
                let next = self.take_next();
                match next {
                    Some(n) => n,
                    None => {
                        tokio::select! {
                            _ = &mut notified => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            };
            let (id, input, timeout, cancel) = next;
            tracing::info!(job = %id, "job started");
            let Some(input) = input else {
                // cannot happen (queued jobs keep their input); never leave a job hanging
                let mut t = lock(&self);
                t.running = None;
                if let Some(job) = t.jobs.get_mut(&id) {
                    job.status = Status::Failed;
                    job.error = Some("internal error: the job lost its input".into());
                    job.finished = Some(Instant::now());
                }
                continue;
            };
            let work = tokio::time::timeout(timeout, exec::run(&self.exec, input));
            tokio::pin!(work);
            // Shutdown: the running job gets `shutdown_grace` to finish, then is requeued.
            let grace = async {
                let mut s = self.shutdown.clone();
                while !*s.borrow() {
                    if s.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                tokio::time::sleep(self.cfg.shutdown_grace).await;
            };
            enum End {
                Completed(Box<JobOutput>),
                Failed(String),
                TimedOut,
                Cancelled,
                Requeue,
            }
            let end = tokio::select! {
                r = &mut work => match r {
                    Ok(Ok(out)) => End::Completed(Box::new(out)),
                    Ok(Err(reason)) => End::Failed(reason),
                    Err(_) => End::TimedOut,
                },
                _ = cancel.notified() => End::Cancelled,
                _ = grace => End::Requeue,
            };
            let mut t = lock(&self);
            t.running = None;
            let Some(job) = t.jobs.get_mut(&id) else {
                continue;
            };
            if job.status == Status::Cancelled {
                job.input = None;
                *t.counts.entry("cancelled").or_default() += 1;
                continue;
            }
            let (status, label) = match end {
                End::Completed(out) => {
                    tracing::info!(job = %id, total_s = out.timings.total_s, segment_s = out.timings.segment_s, model = %out.model, engine = %out.engine, "job completed");
                    job.output = serde_json::to_value(&out).ok();
                    (Status::Completed, "completed")
                }
                End::Failed(reason) => {
                    tracing::warn!(job = %id, reason = %reason, "job failed");
                    job.error = Some(reason);
                    (Status::Failed, "failed")
                }
                End::TimedOut => {
                    tracing::warn!(job = %id, timeout_s = timeout.as_secs_f64(), "job timed out");
                    job.error = Some(format!(
                        "the job ran longer than its {:.1} s limit",
                        timeout.as_secs_f64()
                    ));
                    (Status::TimedOut, "timed_out")
                }
                End::Cancelled => (Status::Cancelled, "cancelled"),
                End::Requeue => {
                    tracing::warn!(job = %id, "shutting down: job put back in the queue");
                    job.status = Status::InQueue;
                    job.started = None;
                    t.queue.push_front(id);
                    return;
                }
            };
            job.status = status;
            job.finished = Some(Instant::now());
            job.input = None;
            *t.counts.entry(label).or_default() += 1;
        }
    }

    /// Marks the next queued job IN_PROGRESS and hands out what the runner needs.
    fn take_next(&self) -> Option<(String, Option<JobInput>, Duration, Arc<Notify>)> {
        let mut t = lock(self);
        loop {
            let id = t.queue.pop_front()?;
            let Some(job) = t.jobs.get_mut(&id) else {
                continue;
            };
            if job.status != Status::InQueue {
                continue;
            }
            job.status = Status::InProgress;
            job.started = Some(Instant::now());
            let input = job.input.clone();
            let (timeout, cancel) = (job.timeout, job.cancel.clone());
            t.running = Some(id.clone());
            return Some((id, input, timeout, cancel));
        }
    }

    /// Stop taking new jobs; the runner finishes (or requeues) the running one.
    pub fn stop_accepting(&self) {
        lock(self).accepting = false;
        self.wake.notify_one();
    }
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ErrorReply { error: msg.into() })).into_response()
}

/// Bearer-key check (constant time) and endpoint-id match.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response itself, built once per request"
)]
fn authorize(w: &Worker, headers: &HeaderMap, endpoint: &str) -> Result<(), Response> {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let sent = sent.strip_prefix("Bearer ").unwrap_or(sent).trim();
    let key = w.cfg.api_key.as_bytes();
    if sent.len() != key.len() || !bool::from(sent.as_bytes().ct_eq(key)) {
        return Err(error(StatusCode::UNAUTHORIZED, "missing or wrong API key"));
    }
    if endpoint != w.cfg.endpoint_id {
        return Err(error(StatusCode::NOT_FOUND, "no such endpoint"));
    }
    Ok(())
}

async fn run(
    State(w): State<Arc<Worker>>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RunRequest>, JsonRejection>,
) -> Response {
    if let Err(r) = authorize(&w, &headers, &endpoint) {
        return r;
    }
    let Ok(Json(req)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"input\": {\"nifti_url\", \"labels_url\", \"volumes_url\", \"model\"?}}",
        );
    };
    let Some(input) = req.input else {
        return error(StatusCode::BAD_REQUEST, "missing \"input\"");
    };
    let timeout = req
        .policy
        .and_then(|p| p.execution_timeout_ms)
        .map(|ms| Duration::from_millis(ms.max(1)))
        .map_or(w.cfg.job_timeout, |d| d.min(w.cfg.job_timeout));
    let id = hex::encode(rand::random::<[u8; 16]>());
    {
        let mut t = lock(&w);
        if !t.accepting {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the worker is shutting down");
        }
        if t.queue.len() >= w.cfg.queue_capacity {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "5")],
                Json(ErrorReply {
                    error: "the queue is full".into(),
                }),
            )
                .into_response();
        }
        w.forget_old(&mut t);
        t.jobs.insert(
            id.clone(),
            Job {
                status: Status::InQueue,
                input: Some(input),
                output: None,
                error: None,
                timeout,
                submitted: Instant::now(),
                started: None,
                finished: None,
                cancel: Arc::new(Notify::new()),
            },
        );
        t.queue.push_back(id.clone());
    }
    tracing::info!(job = %id, "job queued");
    w.wake.notify_one();
    Json(JobReport::new(id, Status::InQueue)).into_response()
}

async fn status(
    State(w): State<Arc<Worker>>,
    Path((endpoint, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&w, &headers, &endpoint) {
        return r;
    }
    let t = lock(&w);
    match t.jobs.get(&id) {
        Some(job) => Json(Worker::report(&id, job)).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such job"),
    }
}

async fn cancel(
    State(w): State<Arc<Worker>>,
    Path((endpoint, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorize(&w, &headers, &endpoint) {
        return r;
    }
    let mut t = lock(&w);
    let Some(job) = t.jobs.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "no such job");
    };
    let was = job.status;
    if !was.is_terminal() {
        job.status = Status::Cancelled;
        job.finished = Some(Instant::now());
    }
    let status = job.status;
    match was {
        Status::InQueue => {
            job.input = None;
            t.queue.retain(|q| q != &id);
            *t.counts.entry("cancelled").or_default() += 1;
            tracing::info!(job = %id, "job cancelled in the queue");
        }
        Status::InProgress => {
            // The runner drops the job's work at once (an inference already on the
            // device finishes on its thread; its result is discarded) and counts it.
            job.cancel.notify_one();
            tracing::info!(job = %id, "job cancelled while running");
        }
        _ => {}
    }
    Json(JobReport::new(id, status)).into_response()
}

async fn health(State(w): State<Arc<Worker>>, Path(endpoint): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&w, &headers, &endpoint) {
        return r;
    }
    let t = lock(&w);
    let c = |k: &str| t.counts.get(k).copied().unwrap_or(0);
    Json(json!({
        "jobs": {
            "inQueue": t.queue.len(),
            "inProgress": u64::from(t.running.is_some()),
            "completed": c("completed"),
            "failed": c("failed"),
            "cancelled": c("cancelled"),
            "timedOut": c("timed_out"),
            "retried": 0,
        },
        "workers": { "running": u64::from(t.running.is_some()), "idle": u64::from(t.running.is_none()), "accepting": t.accepting },
        "engine": { "kind": w.cfg.engine.as_str(), "name": w.exec.engine.name() },
    }))
    .into_response()
}

pub fn router(worker: Arc<Worker>) -> Router {
    Router::new()
        .route("/v2/{endpoint}/run", post(run))
        .route("/v2/{endpoint}/status/{id}", get(status).post(status))
        .route("/v2/{endpoint}/cancel/{id}", post(cancel))
        .route("/v2/{endpoint}/health", get(health))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(worker)
}

/// Serves until `shutdown` turns true, then stops taking jobs, lets the running one finish
/// (or requeues it after the grace period) and returns.
pub async fn serve(
    cfg: WorkerConfig,
    listener: tokio::net::TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let assets = cfg.assets_dir();
    if !volumetry::model::models_dir(&assets).is_dir() {
        tracing::warn!(assets = %assets.display(), "no models/ folder in the assets directory; every job will fail");
    }
    let worker = Worker::new(cfg, shutdown.clone())?;
    let runner = tokio::spawn(worker.clone().run_queue());
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, endpoint = %worker.cfg.endpoint_id, engine = %worker.exec.engine.name(), "listening");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "neurovol-worker ready at http://{addr}");
        let _ = out.flush();
    }
    let app = router(worker.clone());
    let (stop_http_tx, mut stop_http_rx) = watch::channel(false);
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_http_rx.wait_for(|v| *v).await;
            })
            .await
    });
    let mut s = shutdown.clone();
    let _ = s.wait_for(|v| *v).await;
    tracing::info!("shutting down: no new jobs; finishing the running one");
    worker.stop_accepting();
    let _ = runner.await;
    let _ = stop_http_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    tracing::info!("stopped");
    Ok(())
}
