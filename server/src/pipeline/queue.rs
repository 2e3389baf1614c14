//! Durable jobs: claims with a lease, lease renewal, fenced state changes, retries with
//! back-off, and the `job_runs` history. Runs the step bodies of [`super::Steps`].

mod steps_run;

use std::sync::Arc;

use sqlx::Row;
use tokio::sync::{Notify, watch};

use super::score::ScanFacts;
use super::*;
use crate::db::Db;
use crate::segmenter::JobHandle;
use app::scan_state::{JobState, ScanStatus, Step};

// ---------------------------------------------------------------------------------------
// durable jobs

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A claimed job.
#[derive(Debug)]
struct Claimed {
    scan_id: String,
    step: Step,
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
    /// `job_runs` writes that failed in this process.
    history_failures: std::sync::atomic::AtomicU64,
}

enum Next {
    Step(Step),
    Done,
}

impl Pipeline {
    pub fn new(db: Db, postgres: bool, steps: Steps, wake: Arc<Notify>) -> Arc<Pipeline> {
        Arc::new(Pipeline {
            db,
            postgres,
            steps,
            owner: hex::encode(rand::random::<[u8; 8]>()),
            wake,
            history_failures: Default::default(),
        })
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
                step: crate::db::get_enum(&r, "step", Step::parse)?,
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
            let (db, owner, scan, lease) = (
                self.db.clone(),
                self.owner.clone(),
                job.scan_id.clone(),
                self.steps.settings.lease,
            );
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
            let recorded = sqlx::query(
                "INSERT INTO job_runs (id, scan_id, step, owner, attempt, started_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&run_id)
            .bind(&job.scan_id)
            .bind(job.step.as_str())
            .bind(&self.owner)
            .bind(job.attempts + 1)
            .bind(started)
            .execute(&self.db)
            .await;
            self.history_written(recorded);
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
            let recorded = sqlx::query("UPDATE job_runs SET finished_ms = $1, outcome = $2 WHERE id = $3")
                .bind(now_ms())
                .bind(outcome)
                .bind(&run_id)
                .execute(&self.db)
                .await;
            self.history_written(recorded);
            tracing::info!(scan = %job.scan_id, step = %job.step, outcome, ms = now_ms() - started, "pipeline step");
            match result {
                Ok(Next::Step(next)) => {
                    job.step = next;
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

    /// Runs `writes` in one transaction that commits only while this process holds the
    /// job's lease (the first statement both checks and row-locks it).
    async fn fenced(&self, scan_id: &str, writes: Vec<(&'static str, Vec<Bind>)>) -> Result<(), StepError> {
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

    /// `job_runs` is history, not state: a failed write does not stop the job, but it is
    /// logged and counted (step timings and the tests read that table).
    fn history_written(&self, result: Result<sqlx::any::AnyQueryResult, sqlx::Error>) {
        if let Err(e) = result {
            let failures = self.history_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            tracing::warn!(error = %e, failures, "cannot record a step run in job_runs");
        }
    }

    /// Counts an attempt and releases the lease until the backoff passes; past the limit
    /// the scan fails (retryable by the user).
    async fn retry_later(&self, job: &Claimed, reason: &str, forget_handle: bool) {
        let attempts = job.attempts + 1;
        if attempts >= i64::from(self.steps.settings.max_attempts) {
            // worker reasons are written for users; other errors (database, I/O) are not
            let message = match reason.strip_prefix("segmentation failed: ") {
                Some(why) => format!(
                    "Segmentation failed {attempts} times: {}. Please retry later.",
                    truncate(why, 300)
                ),
                None => format!(
                    "Processing stopped at the {} step after {attempts} attempts because a service was unavailable. Please retry later.",
                    job.step
                ),
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
                        "UPDATE scans SET status = $1, failure_code = $2, failure_reason = $3, failure_retryable = $4, updated_at = $5 WHERE id = $6",
                        vec![
                            Bind::Text(ScanStatus::Failed.as_str().into()),
                            Bind::Text(code.into()),
                            Bind::Text(truncate(reason, 500)),
                            Bind::Int(i64::from(retryable)),
                            Bind::Int(now / 1000),
                            Bind::Text(job.scan_id.clone()),
                        ],
                    ),
                    (
                        "UPDATE jobs SET state = $1, lease_owner = NULL, lease_until_ms = NULL, last_error = $2, updated_ms = $3 WHERE scan_id = $4",
                        vec![
                            Bind::Text(JobState::Failed.as_str().into()),
                            Bind::Text(code.into()),
                            Bind::Int(now),
                            Bind::Text(job.scan_id.clone()),
                        ],
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
        "INSERT INTO jobs (scan_id, state, step, attempts, run_after_ms, created_ms, updated_ms) VALUES ($1, $2, $3, 0, $4, $4, $4)",
    )
    .bind(scan_id)
    .bind(JobState::Queued.as_str())
    .bind(Step::Convert.as_str())
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
         WHERE j.scan_id = $1 AND s.user_id = $2 AND j.state = $3 AND s.failure_retryable = 1",
    )
    .bind(scan_id)
    .bind(user_id)
    .bind(JobState::Failed.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let step = crate::db::get_enum(&row, "step", Step::parse)?;
    let now = now_ms();
    sqlx::query("UPDATE jobs SET state = $1, attempts = 0, run_after_ms = $2, lease_owner = NULL, lease_until_ms = NULL, updated_ms = $2 WHERE scan_id = $3")
        .bind(JobState::Queued.as_str())
        .bind(now)
        .bind(scan_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE scans SET status = $1, failure_code = NULL, failure_reason = NULL, failure_retryable = 0, updated_at = $2 WHERE id = $3")
        .bind(step.status_before().as_str())
        .bind(now / 1000)
        .bind(scan_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim and the retry queries name the job states in SQL text: they must be the
    /// enum's names.
    #[test]
    fn sql_state_literals_are_the_enum_names() {
        for sql in [CLAIM_POSTGRES, CLAIM_SQLITE] {
            assert!(sql.contains(&format!("state = '{}'", JobState::Queued.as_str())));
        }
        assert_eq!(JobState::Failed.as_str(), "failed");
        assert_eq!(Step::Convert.as_str(), "convert");
    }
}
