//! The processing pipeline: after the authoritative de-identification (web/upload.rs) a
//! scan is a durable job in the database that moves through
//!
//! ```text
//! deidentified --convert--> converted --store--> stored --segment--> segmenting
//!     --> segmented --score--> scored --retention--> done        (or failed)
//! ```
//!
//! * **convert**: the de-identified ZIP from the object store → dcm2niix in a private temp
//!   dir (convert.rs) → the NIfTI into the object store under the scan's `nifti_key`.
//! * **segment**: pre-signed URLs (GET NIfTI, PUT labels and volumes) → the segmentation
//!   service (segmenter.rs: the local worker or RunPod); the job handle is persisted so a
//!   restarted server finds the running job again, or submits it again if it was lost.
//! * **score**: the worker's volumes JSON + the scan's age and sex → percentiles (score.rs)
//!   → `scan_regions` rows and `scans.result_json`; then retention (the user's "discard the
//!   DICOM archive" choice) and `done`.
//!
//! Durability: one `jobs` row per scan. A process claims a ready job with a lease
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), renews it while
//! working, and every state change is *fenced*: it commits only while this process still
//! holds the lease, so a job taken over after a lease expiry cannot be completed twice.
//! Steps are idempotent: object keys are fixed when the scan is queued (a re-run overwrites
//! its own objects), result rows are replaced in one transaction. Transient failures (object
//! store or worker unavailable) are retried with exponential backoff; a scan fails with a
//! user-readable reason after `job_max_attempts`, and the user may retry it.
//!
//! The step bodies ([`Steps`]) do not touch the database, so `neurovol analyze` runs the
//! very same conversion, segmentation and scoring on one machine without it.

pub mod score;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{Notify, watch};

use crate::convert::{self, ConvertSettings};
use crate::db::Db;
use crate::object_store::{ObjectStore, StoreError};
use crate::segmenter::{JobHandle, JobInput, JobOutput, JobState, Segmenter, SegmenterError};
use score::{Report, ScanFacts, Warning};

/// Longest validity of a pre-signed URL handed to the worker.
pub const URL_TTL: Duration = Duration::from_secs(15 * 60);
/// The worker's volumes JSON is small; anything bigger is not ours.
const MAX_VOLUMES_JSON: u64 = 4 << 20;

#[derive(Clone, Debug)]
pub struct PipelineSettings {
    pub concurrency: u32,
    pub lease: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub poll_interval: Duration,
    pub model: String,
    pub brain_mask: bool,
    pub segment_timeout: Duration,
    pub convert: ConvertSettings,
    /// Private temp dirs are created (and removed) under this folder.
    pub tmp_dir: PathBuf,
}

impl PipelineSettings {
    pub fn from_config(config: &crate::config::Config) -> PipelineSettings {
        PipelineSettings {
            concurrency: config.pipeline_concurrency,
            lease: Duration::from_secs(config.job_lease_secs),
            max_attempts: config.job_max_attempts,
            backoff_base: Duration::from_secs(config.job_backoff_secs),
            backoff_max: Duration::from_secs(300),
            poll_interval: Duration::from_millis(1000),
            model: config.segment_model.clone(),
            brain_mask: config.segment_brain_mask,
            segment_timeout: Duration::from_secs(config.segment_timeout_secs),
            convert: convert_settings(config),
            tmp_dir: config.tmp_dir(),
        }
    }
}

/// The conversion settings of this configuration (the pipeline and the upload's dry run).
pub fn convert_settings(config: &crate::config::Config) -> ConvertSettings {
    ConvertSettings { dcm2niix: config.dcm2niix.clone(), ..ConvertSettings::default() }
}

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// Try again later (object store or worker unavailable, I/O): backoff, then retry.
    Transient(String),
    /// The input cannot be processed: the scan fails with this code and user-readable reason.
    Refused { code: &'static str, reason: String },
    /// The segmentation service lost the job (restart, expiry): submit it again now.
    Resubmit(String),
    /// Another process owns the job now: stop without writing anything.
    LeaseLost,
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> StepError {
        // Every store error is worth a retry here: keys are ours, so NotFound means a
        // previous step's object is missing and re-running earlier steps is the cure.
        StepError::Transient(format!("object store: {e}"))
    }
}

impl From<SegmenterError> for StepError {
    fn from(e: SegmenterError) -> StepError {
        StepError::Transient(e.to_string())
    }
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> StepError {
        StepError::Transient(format!("database: {e}"))
    }
}

/// Removes a private temp dir when dropped: on success, on every error, on panic.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(parent: &Path, prefix: &str) -> std::io::Result<TempDir> {
        std::fs::create_dir_all(parent)?;
        let dir = parent.join(format!("{prefix}-{}", hex::encode(rand::random::<[u8; 8]>())));
        std::fs::create_dir(&dir)?;
        Ok(TempDir(dir))
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

/// What conversion found out about the volume (kept with the scan; no header text).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ConversionFacts {
    pub dims: [usize; 3],
    pub voxel_mm: [f64; 3],
    pub nifti_bytes: u64,
    pub warnings: Vec<Warning>,
    pub dcm2niix_ms: u64,
}

/// The segmentation client, set once it has started (the local worker takes a moment).
pub type SegmenterSlot = Arc<tokio::sync::OnceCell<Segmenter>>;

/// The step bodies: object store + segmentation service, no database.
pub struct Steps {
    pub store: Arc<dyn ObjectStore>,
    pub segmenter: SegmenterSlot,
    pub settings: PipelineSettings,
}

impl Steps {
    fn segmenter(&self) -> Result<&Segmenter, StepError> {
        self.segmenter.get().ok_or_else(|| StepError::Transient("the segmentation service is starting".into()))
    }

    /// De-identified ZIP (`archive_key`) → NIfTI stored under `nifti_key`. `on_converted`
    /// runs between conversion and storing (the job records the `converted` state there).
    pub async fn convert_and_store<F, Fut>(
        &self,
        archive_key: &str,
        nifti_key: &str,
        on_converted: F,
    ) -> Result<ConversionFacts, StepError>
    where
        F: FnOnce(ConversionFacts) -> Fut,
        Fut: std::future::Future<Output = Result<(), StepError>>,
    {
        let work = TempDir::new(&self.settings.tmp_dir, "convert")
            .map_err(|e| StepError::Transient(format!("cannot create a temp dir: {e}")))?;
        let archive = work.path().join("archive.zip");
        self.store.get_to_file(archive_key, &archive).await?;
        let (zip, dir, settings) = (archive.clone(), work.path().join("work"), self.settings.convert.clone());
        std::fs::create_dir(&dir).map_err(|e| StepError::Transient(format!("cannot create a temp dir: {e}")))?;
        let converted = tokio::task::spawn_blocking(move || convert::convert(&zip, &dir, &settings))
            .await
            .map_err(|_| StepError::Transient("the conversion task failed".into()))?;
        let converted = match converted {
            Ok(c) => c,
            Err(e) if e.is_input_problem() => return Err(StepError::Refused { code: e.code(), reason: e.to_string() }),
            Err(e) => return Err(StepError::Transient(format!("conversion: {} ({})", e.code(), e))),
        };
        let nifti_bytes = std::fs::metadata(&converted.nifti).map(|m| m.len()).unwrap_or(0);
        let facts = ConversionFacts {
            dims: converted.dims,
            voxel_mm: converted.voxel_mm,
            nifti_bytes,
            // the converter's own warnings (low resolution), as the report carries them
            warnings: converted.warnings.iter().map(|w| Warning { code: w.code().into(), message: w.to_string() }).collect(),
            dcm2niix_ms: converted.dcm2niix_ms,
        };
        on_converted(facts.clone()).await?;
        self.store.put_file(nifti_key, &converted.nifti).await?;
        Ok(facts)
    }

    /// Hands the stored NIfTI to the segmentation service with pre-signed URLs.
    pub async fn submit_segmentation(
        &self,
        nifti_key: &str,
        labels_key: &str,
        volumes_key: &str,
    ) -> Result<JobHandle, StepError> {
        let input = JobInput {
            nifti_url: self.store.presign_get(nifti_key, URL_TTL).await?,
            labels_url: self.store.presign_put(labels_key, URL_TTL).await?,
            volumes_url: self.store.presign_put(volumes_key, URL_TTL).await?,
            model: self.settings.model.clone(),
            brain_mask: self.settings.brain_mask,
        };
        Ok(self.segmenter()?.submit(&input, Some(self.settings.segment_timeout)).await?)
    }

    /// Waits for a dispatched segmentation; checks that both outputs arrived.
    pub async fn await_segmentation(
        &self,
        job: &JobHandle,
        labels_key: &str,
        volumes_key: &str,
    ) -> Result<JobOutput, StepError> {
        match self.segmenter()?.wait(job, self.settings.segment_timeout).await? {
            JobState::Completed { output } => {
                let labels = self.store.size(labels_key).await?;
                let volumes = self.store.size(volumes_key).await?;
                if labels.is_none() || volumes.is_none() {
                    return Err(StepError::Resubmit("the worker reported success but an output is missing".into()));
                }
                Ok(output)
            }
            JobState::Lost { reason } | JobState::TimedOut { reason } => Err(StepError::Resubmit(reason)),
            JobState::Cancelled => Err(StepError::Resubmit("the segmentation was cancelled".into())),
            // The inputs were validated before; a refusal here is most likely an expired URL
            // or an unreachable object store, so it is submitted again (and reported if it
            // keeps failing).
            JobState::Failed { reason } => Err(StepError::Resubmit(format!("segmentation failed: {reason}"))),
            JobState::Queued | JobState::Running => Err(StepError::Transient("segmentation still running".into())),
        }
    }

    /// The worker's volumes JSON + age and sex → the report.
    pub async fn score(
        &self,
        volumes_key: &str,
        facts: &ScanFacts,
        warnings: Vec<Warning>,
    ) -> Result<(Report, Vec<u8>), StepError> {
        let bytes = self.store.get_bytes(volumes_key, MAX_VOLUMES_JSON).await?;
        let volumes: volumetry::VolumesJson = serde_json::from_slice(&bytes)
            .map_err(|e| StepError::Refused { code: "bad_volumes", reason: format!("the segmentation service returned unreadable volumes ({e})") })?;
        Ok((score::score(&volumes, facts, warnings), bytes))
    }
}

// ---------------------------------------------------------------------------------------
// durable jobs

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The scan status shown while a step waits to run (and after a user's retry).
pub fn status_before(step: &str) -> &'static str {
    match step {
        "segment" => "stored",
        "score" => "segmented",
        _ => "deidentified",
    }
}

/// A claimed job.
#[derive(Debug)]
struct Claimed {
    scan_id: String,
    step: String,
    attempts: i64,
    segment_job: Option<String>,
}

macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET lease_owner = $1, lease_until_ms = $2, updated_ms = $3 ",
            "WHERE scan_id = (SELECT scan_id FROM jobs WHERE state = 'queued' AND run_after_ms <= $3 ",
            "AND (lease_until_ms IS NULL OR lease_until_ms < $3) ORDER BY run_after_ms, scan_id LIMIT 1",
            $lock,
            ") AND state = 'queued' AND (lease_until_ms IS NULL OR lease_until_ms < $3) ",
            "RETURNING scan_id, step, attempts, segment_job"
        )
    };
}
/// Claims one ready job. The subquery picks it; on PostgreSQL it locks that row and skips
/// rows another process is claiming at this instant (SQLite serialises writers anyway).
/// The outer condition repeats the readiness test so a row that changed meanwhile is not
/// taken.
const CLAIM_POSTGRES: &str = claim_sql!(" FOR UPDATE SKIP LOCKED");
const CLAIM_SQLITE: &str = claim_sql!("");

/// One server process's job runner.
pub struct Pipeline {
    db: Db,
    postgres: bool,
    steps: Steps,
    /// Random per process: who holds a lease.
    owner: String,
    wake: Arc<Notify>,
}

/// The keys and facts of a scan the steps need.
struct ScanRow {
    archive_key: String,
    nifti_key: String,
    labels_key: String,
    volumes_key: String,
    discard_archive: bool,
    archive_deleted: bool,
    facts: ScanFacts,
    conversion: Option<ConversionFacts>,
}

enum Next {
    Step(&'static str),
    Done,
}

impl Pipeline {
    pub fn new(db: Db, postgres: bool, steps: Steps, wake: Arc<Notify>) -> Arc<Pipeline> {
        Arc::new(Pipeline { db, postgres, steps, owner: hex::encode(rand::random::<[u8; 8]>()), wake })
    }

    /// Starts `concurrency` runner tasks.
    pub fn spawn(self: &Arc<Self>) {
        tracing::info!(owner = %self.owner, concurrency = self.steps.settings.concurrency, "pipeline started");
        for _ in 0..self.steps.settings.concurrency {
            let me = self.clone();
            tokio::spawn(async move { me.run_forever().await });
        }
    }

    async fn run_forever(self: Arc<Self>) {
        loop {
            match self.claim().await {
                Ok(Some(job)) => self.run_job(job).await,
                Ok(None) => {
                    let _ = tokio::time::timeout(self.steps.settings.poll_interval, self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a job; retrying");
                    tokio::time::sleep(self.steps.settings.poll_interval * 5).await;
                }
            }
        }
    }

    async fn claim(&self) -> Result<Option<Claimed>, sqlx::Error> {
        let now = now_ms();
        let lease_until = now + self.steps.settings.lease.as_millis() as i64;
        let sql = if self.postgres { CLAIM_POSTGRES } else { CLAIM_SQLITE };
        let row = sqlx::query(sql)
            .bind(&self.owner)
            .bind(lease_until)
            .bind(now)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| {
            Ok(Claimed {
                scan_id: r.try_get("scan_id")?,
                step: r.try_get("step")?,
                attempts: r.try_get("attempts")?,
                segment_job: r.try_get("segment_job")?,
            })
        })
        .transpose()
    }

    /// Runs the claimed job's steps until it is done, fails, must wait, or the lease is lost.
    async fn run_job(&self, mut job: Claimed) {
        // lease renewal; `lost` turns true when the job is no longer ours
        let (lost_tx, mut lost_rx) = watch::channel(false);
        let renew = {
            let (db, owner, scan, lease) = (self.db.clone(), self.owner.clone(), job.scan_id.clone(), self.steps.settings.lease);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let r = sqlx::query("UPDATE jobs SET lease_until_ms = $1 WHERE scan_id = $2 AND lease_owner = $3")
                        .bind(now_ms() + lease.as_millis() as i64)
                        .bind(&scan)
                        .bind(&owner)
                        .execute(&db)
                        .await;
                    match r {
                        Ok(r) if r.rows_affected() == 0 => {
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Ok(_) => {}
                        // a database hiccup: try again; the lease has slack for two misses
                        Err(e) => tracing::warn!(error = %e, "cannot renew a job lease"),
                    }
                }
            })
        };
        loop {
            let run_id = hex::encode(rand::random::<[u8; 8]>());
            let started = now_ms();
            let _ = sqlx::query(
                "INSERT INTO job_runs (id, scan_id, step, owner, attempt, started_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&run_id)
            .bind(&job.scan_id)
            .bind(&job.step)
            .bind(&self.owner)
            .bind(job.attempts + 1)
            .bind(started)
            .execute(&self.db)
            .await;
            let result = tokio::select! {
                r = self.run_step(&job) => r,
                _ = lost_rx.wait_for(|l| *l) => Err(StepError::LeaseLost),
            };
            let outcome = match &result {
                Ok(_) => "ok",
                Err(StepError::LeaseLost) => "lease_lost",
                Err(StepError::Refused { .. }) => "failed",
                Err(_) => "retry",
            };
            let _ = sqlx::query("UPDATE job_runs SET finished_ms = $1, outcome = $2 WHERE id = $3")
                .bind(now_ms())
                .bind(outcome)
                .bind(&run_id)
                .execute(&self.db)
                .await;
            tracing::info!(scan = %job.scan_id, step = %job.step, outcome, ms = now_ms() - started, "pipeline step");
            match result {
                Ok(Next::Step(next)) => {
                    job.step = next.to_string();
                    job.attempts = 0;
                    job.segment_job = None;
                }
                Ok(Next::Done) => break,
                Err(StepError::LeaseLost) => {
                    tracing::warn!(scan = %job.scan_id, step = %job.step, "job lease lost; another process continues it");
                    break;
                }
                Err(StepError::Resubmit(reason)) => {
                    // lost or timed out at the worker: forget the handle, count an attempt
                    tracing::warn!(scan = %job.scan_id, reason = %reason, "segmentation to be submitted again");
                    self.retry_later(&job, &reason, true).await;
                    break;
                }
                Err(StepError::Transient(reason)) => {
                    tracing::warn!(scan = %job.scan_id, step = %job.step, reason = %reason, "step failed; will retry");
                    self.retry_later(&job, &reason, false).await;
                    break;
                }
                Err(StepError::Refused { code, reason }) => {
                    tracing::info!(scan = %job.scan_id, step = %job.step, code, "scan refused");
                    self.fail(&job, code, &reason, false).await;
                    break;
                }
            }
        }
        renew.abort();
    }

    async fn load_scan(&self, scan_id: &str) -> Result<ScanRow, StepError> {
        let r = sqlx::query(
            "SELECT object_key, nifti_key, labels_key, volumes_key, discard_archive, archive_deleted, age_years, sex, study_date, conversion_json \
             FROM scans WHERE id = $1",
        )
        .bind(scan_id)
        .fetch_one(&self.db)
        .await?;
        let conversion: Option<String> = r.try_get("conversion_json")?;
        Ok(ScanRow {
            archive_key: r.try_get("object_key")?,
            nifti_key: r.try_get::<Option<String>, _>("nifti_key")?.unwrap_or_default(),
            labels_key: r.try_get::<Option<String>, _>("labels_key")?.unwrap_or_default(),
            volumes_key: r.try_get::<Option<String>, _>("volumes_key")?.unwrap_or_default(),
            discard_archive: r.try_get::<i64, _>("discard_archive")? != 0,
            archive_deleted: r.try_get::<i64, _>("archive_deleted")? != 0,
            facts: ScanFacts {
                age_years: r.try_get::<Option<i64>, _>("age_years")?.and_then(|a| u32::try_from(a).ok()),
                sex: r.try_get("sex")?,
                study_date: r.try_get("study_date")?,
            },
            conversion: conversion.and_then(|c| serde_json::from_str(&c).ok()),
        })
    }

    /// Runs `writes` in one transaction that commits only while this process holds the
    /// job's lease (the first statement both checks and row-locks it).
    async fn fenced(
        &self,
        scan_id: &str,
        writes: Vec<(&'static str, Vec<Bind>)>,
    ) -> Result<(), StepError> {
        let mut tx = self.db.begin().await?;
        let held = sqlx::query("UPDATE jobs SET updated_ms = $1 WHERE scan_id = $2 AND lease_owner = $3")
            .bind(now_ms())
            .bind(scan_id)
            .bind(&self.owner)
            .execute(&mut *tx)
            .await?;
        if held.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(StepError::LeaseLost);
        }
        for (sql, binds) in writes {
            let mut q = sqlx::query(sql);
            for b in binds {
                q = match b {
                    Bind::Text(s) => q.bind(s),
                    Bind::OptText(s) => q.bind(s),
                    Bind::Int(i) => q.bind(i),
                    Bind::Float(f) => q.bind(f),
                };
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a finished step: the scan's new status and the job's next step, together.
    async fn advance(&self, scan_id: &str, status: &str, next: Next) -> Result<Next, StepError> {
        let now = now_ms();
        let job_sql = match next {
            Next::Step(_) => "UPDATE jobs SET step = $1, attempts = 0, segment_job = NULL, last_error = NULL, updated_ms = $2 WHERE scan_id = $3",
            Next::Done => "UPDATE jobs SET step = $1, state = 'done', lease_owner = NULL, lease_until_ms = NULL, segment_job = NULL, last_error = NULL, updated_ms = $2 WHERE scan_id = $3",
        };
        let step = match next {
            Next::Step(s) => s,
            Next::Done => "done",
        };
        self.fenced(
            scan_id,
            vec![
                (
                    "UPDATE scans SET status = $1, failure_code = NULL, failure_reason = NULL, failure_retryable = 0, updated_at = $2 WHERE id = $3",
                    vec![Bind::Text(status.into()), Bind::Int(now / 1000), Bind::Text(scan_id.into())],
                ),
                (job_sql, vec![Bind::Text(step.into()), Bind::Int(now), Bind::Text(scan_id.into())]),
            ],
        )
        .await?;
        Ok(next)
    }

    async fn run_step(&self, job: &Claimed) -> Result<Next, StepError> {
        let scan = self.load_scan(&job.scan_id).await?;
        match job.step.as_str() {
            "convert" => {
                let id = job.scan_id.clone();
                self.steps
                    .convert_and_store(&scan.archive_key, &scan.nifti_key, |facts| async move {
                        let json = serde_json::to_string(&facts).unwrap_or_default();
                        self.fenced(
                            &id,
                            vec![(
                                "UPDATE scans SET status = 'converted', conversion_json = $1, updated_at = $2 WHERE id = $3",
                                vec![Bind::Text(json), Bind::Int(now_ms() / 1000), Bind::Text(id.clone())],
                            )],
                        )
                        .await
                    })
                    .await?;
                self.advance(&job.scan_id, "stored", Next::Step("segment")).await
            }
            "segment" => {
                let handle = match job.segment_job.as_deref().and_then(|j| serde_json::from_str::<JobHandle>(j).ok()) {
                    Some(h) => h,
                    None => {
                        let h = self.steps.submit_segmentation(&scan.nifti_key, &scan.labels_key, &scan.volumes_key).await?;
                        let now = now_ms();
                        self.fenced(
                            &job.scan_id,
                            vec![
                                (
                                    "UPDATE jobs SET segment_job = $1, updated_ms = $2 WHERE scan_id = $3",
                                    vec![Bind::Text(serde_json::to_string(&h).unwrap_or_default()), Bind::Int(now), Bind::Text(job.scan_id.clone())],
                                ),
                                (
                                    "UPDATE scans SET status = 'segmenting', updated_at = $1 WHERE id = $2",
                                    vec![Bind::Int(now / 1000), Bind::Text(job.scan_id.clone())],
                                ),
                            ],
                        )
                        .await?;
                        h
                    }
                };
                let output = self.steps.await_segmentation(&handle, &scan.labels_key, &scan.volumes_key).await?;
                tracing::info!(
                    scan = %job.scan_id,
                    engine = %output.engine,
                    seconds = output.timings.get("total_s").copied().unwrap_or(0.0),
                    "segmentation completed"
                );
                self.advance(&job.scan_id, "segmented", Next::Step("score")).await
            }
            "score" => {
                let warnings = scan.conversion.as_ref().map(|c| c.warnings.clone()).unwrap_or_default();
                let (report, _) = self.steps.score(&scan.volumes_key, &scan.facts, warnings).await?;
                let now = now_ms();
                let mut writes = vec![(
                    "DELETE FROM scan_regions WHERE scan_id = $1",
                    vec![Bind::Text(job.scan_id.clone())],
                )];
                for r in &report.regions {
                    // sqlx's Any driver binds a NULL without its type, and PostgreSQL then
                    // prepares the statement for the wrong type: rows without a percentile
                    // leave the column out instead of binding NULL.
                    let (sql, mut binds) = match r.percentile {
                        Some(p) => (
                            "INSERT INTO scan_regions (scan_id, name, label, volume_mm3, flag, percentile) VALUES ($1, $2, $3, $4, $5, $6)",
                            vec![Bind::Float(p)],
                        ),
                        None => ("INSERT INTO scan_regions (scan_id, name, label, volume_mm3, flag) VALUES ($1, $2, $3, $4, $5)", vec![]),
                    };
                    binds.splice(
                        0..0,
                        [
                            Bind::Text(job.scan_id.clone()),
                            Bind::Text(r.name.clone()),
                            Bind::Int(i64::from(r.label)),
                            Bind::Float(r.volume_mm3),
                            Bind::OptText(r.flag.clone()),
                        ],
                    );
                    writes.push((sql, binds));
                }
                writes.push((
                    "UPDATE scans SET status = 'scored', result_json = $1, updated_at = $2 WHERE id = $3",
                    vec![
                        Bind::Text(serde_json::to_string(&report).unwrap_or_default()),
                        Bind::Int(now / 1000),
                        Bind::Text(job.scan_id.clone()),
                    ],
                ));
                self.fenced(&job.scan_id, writes).await?;
                // retention: the user chose to keep only the NIfTI, labels and volumes
                if scan.discard_archive && !scan.archive_deleted {
                    self.steps.store.delete(&scan.archive_key).await?;
                    self.fenced(
                        &job.scan_id,
                        vec![(
                            "UPDATE scans SET archive_deleted = 1, object_bytes = 0 WHERE id = $1",
                            vec![Bind::Text(job.scan_id.clone())],
                        )],
                    )
                    .await?;
                }
                self.advance(&job.scan_id, "done", Next::Done).await
            }
            other => Err(StepError::Refused { code: "unknown_step", reason: format!("unknown pipeline step {other}") }),
        }
    }

    /// Counts an attempt and releases the lease until the backoff passes; past the limit
    /// the scan fails (retryable by the user). Returns true when the scan failed.
    async fn retry_later(&self, job: &Claimed, reason: &str, forget_handle: bool) {
        let attempts = job.attempts + 1;
        if attempts >= i64::from(self.steps.settings.max_attempts) {
            // worker reasons are written for users; other errors (database, I/O) are not
            let message = match reason.strip_prefix("segmentation failed: ") {
                Some(why) => format!("Segmentation failed {attempts} times: {}. Please retry later.", truncate(why, 300)),
                None => format!("Processing stopped at the {} step after {attempts} attempts because a service was unavailable. Please retry later.", job.step),
            };
            self.fail(job, "retries_exhausted", &message, true).await;
            tracing::warn!(scan = %job.scan_id, step = %job.step, last_error = %reason, "retries exhausted");
            return;
        }
        let base = self.steps.settings.backoff_base.as_millis() as i64;
        let delay = (base << (attempts - 1).min(16)).min(self.steps.settings.backoff_max.as_millis() as i64);
        let jitter = (rand::random::<u64>() % (delay as u64 / 4 + 1)) as i64;
        let now = now_ms();
        let sql = if forget_handle {
            "UPDATE jobs SET attempts = $1, run_after_ms = $2, lease_owner = NULL, lease_until_ms = NULL, segment_job = NULL, last_error = $3, updated_ms = $4 WHERE scan_id = $5 AND lease_owner = $6"
        } else {
            "UPDATE jobs SET attempts = $1, run_after_ms = $2, lease_owner = NULL, lease_until_ms = NULL, last_error = $3, updated_ms = $4 WHERE scan_id = $5 AND lease_owner = $6"
        };
        let r = sqlx::query(sql)
            .bind(attempts)
            .bind(now + delay + jitter)
            .bind(truncate(reason, 500))
            .bind(now)
            .bind(&job.scan_id)
            .bind(&self.owner)
            .execute(&self.db)
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot schedule a retry; the lease will expire instead");
        }
    }

    async fn fail(&self, job: &Claimed, code: &str, reason: &str, retryable: bool) {
        let now = now_ms();
        let r = self
            .fenced(
                &job.scan_id,
                vec![
                    (
                        "UPDATE scans SET status = 'failed', failure_code = $1, failure_reason = $2, failure_retryable = $3, updated_at = $4 WHERE id = $5",
                        vec![
                            Bind::Text(code.into()),
                            Bind::Text(truncate(reason, 500)),
                            Bind::Int(i64::from(retryable)),
                            Bind::Int(now / 1000),
                            Bind::Text(job.scan_id.clone()),
                        ],
                    ),
                    (
                        "UPDATE jobs SET state = 'failed', lease_owner = NULL, lease_until_ms = NULL, last_error = $1, updated_ms = $2 WHERE scan_id = $3",
                        vec![Bind::Text(code.into()), Bind::Int(now), Bind::Text(job.scan_id.clone())],
                    ),
                ],
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = ?e, "cannot record a failed scan; the lease will expire instead");
        }
    }
}

/// A bound parameter of a fenced write (sqlx's Any driver wants concrete types).
enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Float(f64),
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Queues a freshly de-identified scan (inside the transaction that inserts its row).
pub async fn enqueue(tx: &mut sqlx::AnyConnection, scan_id: &str) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO jobs (scan_id, state, step, attempts, run_after_ms, created_ms, updated_ms) VALUES ($1, 'queued', 'convert', 0, $2, $2, $2)",
    )
    .bind(scan_id)
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// The user's Retry action on a failed scan: the failed step runs again from attempt 1.
/// Returns false when the scan is not the user's, not failed, or not retryable.
pub async fn retry(db: &Db, user_id: &str, scan_id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "SELECT j.step FROM jobs j JOIN scans s ON s.id = j.scan_id \
         WHERE j.scan_id = $1 AND s.user_id = $2 AND j.state = 'failed' AND s.failure_retryable = 1",
    )
    .bind(scan_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let step: String = row.try_get("step")?;
    let now = now_ms();
    sqlx::query("UPDATE jobs SET state = 'queued', attempts = 0, run_after_ms = $1, lease_owner = NULL, lease_until_ms = NULL, updated_ms = $1 WHERE scan_id = $2")
        .bind(now)
        .bind(scan_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE scans SET status = $1, failure_code = NULL, failure_reason = NULL, failure_retryable = 0, updated_at = $2 WHERE id = $3")
        .bind(status_before(&step))
        .bind(now / 1000)
        .bind(scan_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The configured object store: S3/R2 when configured, else the local folder whose signed
/// URLs the app serves itself at `object_url_base` (where the worker reaches the app).
pub async fn open_store(config: &crate::config::Config, object_url_base: &str) -> anyhow::Result<Arc<dyn ObjectStore>> {
    use crate::object_store::{LocalObjectStore, S3ObjectStore};
    if let Some(s3) = config.s3_settings()? {
        let store = S3ObjectStore::connect(s3).await.map_err(|e| anyhow::anyhow!("cannot open the S3 object store: {e}"))?;
        // R2 tokens are often not allowed to create buckets: a warning, not an error
        if let Err(e) = store.ensure_bucket().await {
            tracing::warn!(error = %e, "cannot check or create the S3 bucket");
        }
        tracing::info!(store = "s3", "object store");
        return Ok(Arc::new(store));
    }
    let secret = crate::storage::load_or_create_secret(config.object_url_key.as_ref().map(|k| k.expose()), &config.data_dir)?;
    let signer = crate::storage::UrlSigner::new(secret, object_url_base);
    tracing::info!(store = "local", "object store");
    Ok(Arc::new(LocalObjectStore::new(config.data_dir.join("objects"), signer)))
}

/// Removes `<root>/<pid>` dirs of processes that no longer run (killed mid-step).
fn remove_dead_process_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let alive = name.parse::<u32>().is_ok_and(|pid| pid == std::process::id() || Path::new("/proc").join(&name).exists());
        if !alive && std::fs::remove_dir_all(e.path()).is_ok() {
            tracing::info!(pid = %name, "removed the temp files of a stopped process");
        }
    }
}

/// The dcm2niix version, or a clear error when it is missing (checked at start).
pub fn check_dcm2niix(bin: &Path) -> anyhow::Result<String> {
    convert::dcm2niix_version(bin).map_err(|e| anyhow::anyhow!("{e} (install dcm2niix, or set NEUROVOL_DCM2NIIX)"))
}

/// Starts the segmentation client (in the background: the local worker takes a moment)
/// and this process's job runners.
pub fn start(config: &crate::config::Config, db: Db, store: Arc<dyn ObjectStore>, wake: Arc<Notify>) -> anyhow::Result<()> {
    let mut settings = PipelineSettings::from_config(config);
    // Temp dirs per process, so a restarted process can remove what a killed one left
    // without touching the live dirs of another process sharing this data dir.
    let root = config.tmp_dir().join("pipeline");
    remove_dead_process_dirs(&root);
    settings.tmp_dir = root.join(std::process::id().to_string());
    if settings.concurrency == 0 {
        tracing::info!("pipeline disabled in this process (NEUROVOL_PIPELINE_CONCURRENCY=0)");
        return Ok(());
    }
    let version = check_dcm2niix(&settings.convert.dcm2niix)?;
    tracing::info!(dcm2niix = %version, "converter");
    let slot: SegmenterSlot = Arc::new(tokio::sync::OnceCell::new());
    {
        let (slot, backend) = (slot.clone(), config.segmenter_backend());
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(2);
            loop {
                match Segmenter::start(backend.clone(), crate::segmenter::ClientSettings::default()).await {
                    Ok(seg) => {
                        let _ = slot.set(seg);
                        tracing::info!("segmentation service ready");
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the segmentation service; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(60));
                    }
                }
            }
        });
    }
    let steps = Steps { store, segmenter: slot, settings };
    Pipeline::new(db, config.uses_postgres(), steps, wake).spawn();
    Ok(())
}
