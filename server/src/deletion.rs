//! Self-service hard deletion of a scan or of a whole account, and the deleter that removes
//! their stored files.
//!
//! A deletion is one transaction: the rows go (scan, regions, job and its history; for an
//! account also the user, its sessions, audit log, receipts and throttle row), a receipt is
//! written (counts and dates, no health data; an account's receipt names no account), and
//! one `deletion_outbox` row per object key. The [`Deleter`] (one task per serving process)
//! then claims outbox rows with a lease — `FOR UPDATE SKIP LOCKED` on PostgreSQL, as the
//! pipeline claims jobs — deletes each object (a missing object is done), and deletes the
//! row; while the store is unreachable it retries with exponential back-off, forever. A
//! killed process's claims are taken over when their lease expires. The receipt says
//! "pending" until its last outbox row is gone.
//!
//! A scan whose job was in flight may still get an object written after its rows are gone
//! (a step finishing, or the segmentation worker using a signed URL it already holds): its
//! keys are deleted once more after [`Settings::settle`].

use std::sync::Arc;
use std::time::Duration;

use app::account::{AuditKind, DeletionScope, Receipt};
use sqlx::Row;
use tokio::sync::Notify;

use crate::audit::{self, Origin};
use crate::db::{Db, now_secs};
use crate::object_store::ObjectStore;

/// Longest wait between two attempts at an object while the store is unreachable.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// A claim's lease (as long as a pipeline job's).
    pub lease: Duration,
    /// First retry delay, doubled per attempt up to [`BACKOFF_MAX`].
    pub backoff_base: Duration,
    pub poll_interval: Duration,
    /// How long a job in flight at deletion time may still write an object: its lease
    /// (the step notices the lost job at its next renewal) plus a signed URL's lifetime.
    pub settle: Duration,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config) -> Settings {
        let lease = Duration::from_secs(config.job_lease_secs);
        Settings {
            lease,
            backoff_base: Duration::from_secs(config.job_backoff_secs.max(1)),
            poll_interval: Duration::from_secs(2),
            settle: lease + crate::storage::MAX_SIGNED_URL_TTL,
        }
    }
}

/// The keys of a deleted scan (NULL columns of older rows left out).
fn keys_of(row: &sqlx::any::AnyRow) -> Result<Vec<String>, sqlx::Error> {
    let mut keys = vec![row.try_get::<String, _>("object_key")?];
    for column in ["nifti_key", "labels_key", "volumes_key"] {
        if let Some(k) = row.try_get::<Option<String>, _>(column)? {
            keys.push(k);
        }
    }
    Ok(keys)
}

/// Deletes a scan's job; returns whether it may still be writing objects.
async fn delete_job(tx: &mut sqlx::AnyConnection, scan_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("DELETE FROM jobs WHERE scan_id = $1 RETURNING lease_owner, segment_job")
        .bind(scan_id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(match row {
        Some(r) => {
            r.try_get::<Option<String>, _>("lease_owner")?.is_some()
                || r.try_get::<Option<String>, _>("segment_job")?.is_some()
        }
        None => false,
    })
}

/// What one deletion removed, for its receipt.
#[derive(Default)]
struct Counts {
    scans: i64,
    objects: i64,
    audit_events: i64,
    sessions: i64,
    first_upload_at: i64,
    last_upload_at: i64,
    account_created_at: i64,
}

async fn write_receipt(
    tx: &mut sqlx::AnyConnection,
    id: &str,
    user_id: &str,
    scope: DeletionScope,
    counts: &Counts,
    complete: bool,
) -> Result<(), sqlx::Error> {
    let now = now_secs();
    // NULL completed_at is left out rather than bound (sqlx's Any driver binds NULL untyped)
    let sql = if complete {
        "INSERT INTO deletion_receipts (id, user_id, scope, requested_at, scans, objects, audit_events, sessions, \
         first_upload_at, last_upload_at, account_created_at, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $4)"
    } else {
        "INSERT INTO deletion_receipts (id, user_id, scope, requested_at, scans, objects, audit_events, sessions, \
         first_upload_at, last_upload_at, account_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    };
    sqlx::query(sql)
        .bind(id)
        .bind(user_id)
        .bind(scope.as_str())
        .bind(now)
        .bind(counts.scans)
        .bind(counts.objects)
        .bind(counts.audit_events)
        .bind(counts.sessions)
        .bind(counts.first_upload_at)
        .bind(counts.last_upload_at)
        .bind(counts.account_created_at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn queue_keys(
    tx: &mut sqlx::AnyConnection,
    receipt_id: &str,
    keys: &[(String, bool)],
    settle: Duration,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    for (key, in_flight) in keys {
        let recheck = if *in_flight { now + settle.as_millis() as i64 } else { 0 };
        sqlx::query(
            "INSERT INTO deletion_outbox (object_key, receipt_id, attempts, run_after_ms, recheck_after_ms, created_ms) \
             VALUES ($1, $2, 0, $3, $4, $3) ON CONFLICT (object_key) DO UPDATE SET receipt_id = $2",
        )
        .bind(key)
        .bind(receipt_id)
        .bind(now)
        .bind(recheck)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

fn new_receipt_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Deletes one of the account's scans at once; its files follow through the outbox.
/// Returns the receipt's id, or `None` when the account has no such scan.
pub async fn delete_scan(
    db: &Db,
    user_id: &str,
    scan_id: &str,
    origin: &Origin,
    settle: Duration,
) -> Result<Option<String>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let owned = sqlx::query("SELECT id FROM scans WHERE id = $1 AND user_id = $2")
        .bind(scan_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
    if owned.is_none() {
        tx.rollback().await?;
        return Ok(None);
    }
    let in_flight = delete_job(&mut tx, scan_id).await?;
    let row = sqlx::query(
        "DELETE FROM scans WHERE id = $1 AND user_id = $2 RETURNING object_key, nifti_key, labels_key, volumes_key, created_at",
    )
    .bind(scan_id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(None);
    };
    let keys: Vec<(String, bool)> = keys_of(&row)?.into_iter().map(|k| (k, in_flight)).collect();
    let uploaded: i64 = row.try_get("created_at")?;
    let receipt = new_receipt_id();
    let counts = Counts {
        scans: 1,
        objects: keys.len() as i64,
        first_upload_at: uploaded,
        last_upload_at: uploaded,
        ..Counts::default()
    };
    write_receipt(
        &mut tx,
        &receipt,
        user_id,
        DeletionScope::Scan,
        &counts,
        keys.is_empty(),
    )
    .await?;
    queue_keys(&mut tx, &receipt, &keys, settle).await?;
    audit::record(&mut *tx, user_id, AuditKind::ScanDeleted, scan_id, origin).await?;
    tx.commit().await?;
    Ok(Some(receipt))
}

/// Deletes the account and everything of it at once: scans (their files through the
/// outbox), sessions, audit log, its scan receipts, its sign-in throttle row. Returns the
/// account receipt's id (a receipt that names no account), or `None` for no such account.
pub async fn delete_account(db: &Db, user_id: &str, settle: Duration) -> Result<Option<String>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(user) = sqlx::query("SELECT email, created_at FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        tx.rollback().await?;
        return Ok(None);
    };
    let email: String = user.try_get("email")?;
    let mut counts = Counts {
        account_created_at: user.try_get("created_at")?,
        ..Counts::default()
    };

    let scan_ids: Vec<String> = sqlx::query("SELECT id FROM scans WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    let mut keys: Vec<(String, bool)> = Vec::new();
    for scan_id in &scan_ids {
        let in_flight = delete_job(&mut tx, scan_id).await?;
        let row = sqlx::query(
            "DELETE FROM scans WHERE id = $1 RETURNING object_key, nifti_key, labels_key, volumes_key, created_at",
        )
        .bind(scan_id)
        .fetch_one(&mut *tx)
        .await?;
        keys.extend(keys_of(&row)?.into_iter().map(|k| (k, in_flight)));
        let uploaded: i64 = row.try_get("created_at")?;
        counts.scans += 1;
        counts.first_upload_at = if counts.first_upload_at == 0 {
            uploaded
        } else {
            counts.first_upload_at.min(uploaded)
        };
        counts.last_upload_at = counts.last_upload_at.max(uploaded);
    }
    for (sql, count) in [
        (
            "SELECT COUNT(*) AS n FROM audit_log WHERE user_id = $1",
            &mut counts.audit_events,
        ),
        (
            "SELECT COUNT(*) AS n FROM sessions WHERE user_id = $1",
            &mut counts.sessions,
        ),
    ] {
        *count = sqlx::query(sql).bind(user_id).fetch_one(&mut *tx).await?.try_get("n")?;
    }

    let receipt = new_receipt_id();
    // files of earlier scan deletions still pending now belong to this receipt, as the
    // scan receipts (which name the account) go
    let pending = sqlx::query(
        "UPDATE deletion_outbox SET receipt_id = $1 WHERE receipt_id IN (SELECT id FROM deletion_receipts WHERE user_id = $2)",
    )
    .bind(&receipt)
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    counts.objects = keys.len() as i64 + pending;
    sqlx::query("DELETE FROM deletion_receipts WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM login_throttle WHERE throttle_key = $1")
        .bind(crate::auth::account_throttle_key(&email))
        .execute(&mut *tx)
        .await?;
    // sessions and the audit log go with the user row (ON DELETE CASCADE)
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    write_receipt(
        &mut tx,
        &receipt,
        "",
        DeletionScope::Account,
        &counts,
        counts.objects == 0,
    )
    .await?;
    queue_keys(&mut tx, &receipt, &keys, settle).await?;
    tx.commit().await?;
    Ok(Some(receipt))
}

/// A receipt: an account's for anyone holding its id, a scan's only for its account.
pub async fn receipt(db: &Db, user_id: Option<&str>, id: &str) -> Result<Option<Receipt>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT r.id, r.user_id, r.scope, r.requested_at, r.completed_at, r.scans, r.objects, r.audit_events, r.sessions, \
         r.first_upload_at, r.last_upload_at, r.account_created_at, \
         (SELECT COUNT(*) FROM deletion_outbox o WHERE o.receipt_id = r.id) AS pending \
         FROM deletion_receipts r WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let owner: String = row.try_get("user_id")?;
    if !owner.is_empty() && Some(owner.as_str()) != user_id {
        return Ok(None);
    }
    receipt_from(&row).map(Some)
}

/// The account's scan receipts, newest first.
pub async fn receipts_of(db: &Db, user_id: &str) -> Result<Vec<Receipt>, sqlx::Error> {
    sqlx::query(
        "SELECT r.id, r.user_id, r.scope, r.requested_at, r.completed_at, r.scans, r.objects, r.audit_events, r.sessions, \
         r.first_upload_at, r.last_upload_at, r.account_created_at, \
         (SELECT COUNT(*) FROM deletion_outbox o WHERE o.receipt_id = r.id) AS pending \
         FROM deletion_receipts r WHERE r.user_id = $1 ORDER BY r.requested_at DESC, r.id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?
    .iter()
    .map(receipt_from)
    .collect()
}

fn receipt_from(row: &sqlx::any::AnyRow) -> Result<Receipt, sqlx::Error> {
    let count = |c: &str| row.try_get::<i64, _>(c).map(|n| n.max(0) as u64);
    let date = |c: &str| row.try_get::<i64, _>(c).map(|t| (t > 0).then_some(t));
    Ok(Receipt {
        id: row.try_get("id")?,
        scope: crate::db::get_enum(row, "scope", DeletionScope::parse)?,
        requested_at: row.try_get("requested_at")?,
        completed_at: row.try_get("completed_at")?,
        scans: count("scans")?,
        objects: count("objects")?,
        objects_pending: count("pending")?,
        audit_events: count("audit_events")?,
        sessions: count("sessions")?,
        first_upload_at: date("first_upload_at")?,
        last_upload_at: date("last_upload_at")?,
        account_created_at: date("account_created_at")?,
    })
}

// ---------------------------------------------------------------------------------------
// the deleter

macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE deletion_outbox SET lease_owner = $1, lease_until_ms = $2 ",
            "WHERE object_key = (SELECT object_key FROM deletion_outbox WHERE run_after_ms <= $3 ",
            "AND (lease_until_ms IS NULL OR lease_until_ms < $3) ORDER BY run_after_ms, object_key LIMIT 1",
            $lock,
            ") AND (lease_until_ms IS NULL OR lease_until_ms < $3) ",
            "RETURNING object_key, attempts, recheck_after_ms"
        )
    };
}
/// Claims one due outbox row, like `pipeline::queue` claims a job: on PostgreSQL the
/// subquery locks the row and skips rows another process is claiming at this instant.
const CLAIM_POSTGRES: &str = claim_sql!(" FOR UPDATE SKIP LOCKED");
const CLAIM_SQLITE: &str = claim_sql!("");

struct Claimed {
    key: String,
    attempts: i64,
    recheck_after_ms: i64,
}

/// One serving process's remover of deleted objects.
pub struct Deleter {
    db: Db,
    postgres: bool,
    store: Arc<dyn ObjectStore>,
    settings: Settings,
    owner: String,
    wake: Arc<Notify>,
}

impl Deleter {
    pub fn new(
        db: Db,
        postgres: bool,
        store: Arc<dyn ObjectStore>,
        settings: Settings,
        wake: Arc<Notify>,
    ) -> Arc<Deleter> {
        Arc::new(Deleter {
            db,
            postgres,
            store,
            settings,
            owner: hex::encode(rand::random::<[u8; 8]>()),
            wake,
        })
    }

    pub fn spawn(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move { me.run_forever().await });
    }

    async fn run_forever(self: Arc<Self>) {
        loop {
            match self.claim().await {
                Ok(Some(claimed)) => self.remove(claimed).await,
                Ok(None) => {
                    let _ = tokio::time::timeout(self.settings.poll_interval, self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a deletion; retrying");
                    tokio::time::sleep(self.settings.poll_interval * 5).await;
                }
            }
        }
    }

    async fn claim(&self) -> Result<Option<Claimed>, sqlx::Error> {
        let now = now_ms();
        let row = sqlx::query(if self.postgres { CLAIM_POSTGRES } else { CLAIM_SQLITE })
            .bind(&self.owner)
            .bind(now + self.settings.lease.as_millis() as i64)
            .bind(now)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| {
            Ok(Claimed {
                key: r.try_get("object_key")?,
                attempts: r.try_get("attempts")?,
                recheck_after_ms: r.try_get("recheck_after_ms")?,
            })
        })
        .transpose()
    }

    async fn remove(&self, claimed: Claimed) {
        let result = match self.store.delete(&claimed.key).await {
            Ok(()) => Ok(()),
            // a key the store refuses to name cannot be stored either: nothing to remove
            Err(e) if !e.is_transient() => {
                tracing::warn!(error = %e, "an outbox key the store refuses; counted as removed");
                Ok(())
            }
            Err(e) => Err(e),
        };
        let now = now_ms();
        let written = match result {
            Ok(()) if claimed.recheck_after_ms > now => {
                // once more after the settle time: an in-flight job may still write it
                sqlx::query(
                    "UPDATE deletion_outbox SET run_after_ms = $1, recheck_after_ms = 0, lease_owner = NULL, lease_until_ms = NULL \
                     WHERE object_key = $2 AND lease_owner = $3",
                )
                .bind(claimed.recheck_after_ms)
                .bind(&claimed.key)
                .bind(&self.owner)
                .execute(&self.db)
                .await
                .map(|_| ())
            }
            Ok(()) => self.done(&claimed.key).await,
            Err(e) => {
                let attempts = claimed.attempts + 1;
                let base = self.settings.backoff_base.as_millis() as i64;
                let delay = (base << (attempts - 1).clamp(0, 16)).min(BACKOFF_MAX.as_millis() as i64);
                tracing::warn!(error = %e, attempts, retry_in_ms = delay, "cannot delete an object yet; will retry");
                let mut reason = e.to_string();
                reason.truncate(300);
                sqlx::query(
                    "UPDATE deletion_outbox SET attempts = $1, run_after_ms = $2, last_error = $3, lease_owner = NULL, lease_until_ms = NULL \
                     WHERE object_key = $4 AND lease_owner = $5",
                )
                .bind(attempts)
                .bind(now + delay)
                .bind(reason)
                .bind(&claimed.key)
                .bind(&self.owner)
                .execute(&self.db)
                .await
                .map(|_| ())
            }
        };
        if let Err(e) = written {
            // the lease expires and the row is claimed again: deleting twice is harmless
            tracing::warn!(error = %e, "cannot record a deletion's progress");
        }
    }

    /// The object is gone: its outbox row goes, and its receipt completes with its last row.
    async fn done(&self, key: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let row =
            sqlx::query("DELETE FROM deletion_outbox WHERE object_key = $1 AND lease_owner = $2 RETURNING receipt_id")
                .bind(key)
                .bind(&self.owner)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = row {
            let receipt: String = row.try_get("receipt_id")?;
            let completed = sqlx::query(
                "UPDATE deletion_receipts SET completed_at = $1 WHERE id = $2 AND completed_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM deletion_outbox WHERE receipt_id = $2)",
            )
            .bind(now_secs())
            .bind(&receipt)
            .execute(&mut *tx)
            .await?;
            if completed.rows_affected() > 0 {
                tracing::info!(receipt = %receipt, "deletion completed");
            }
        }
        tx.commit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_locks_on_postgres_only() {
        assert!(CLAIM_POSTGRES.contains("FOR UPDATE SKIP LOCKED"));
        assert!(!CLAIM_SQLITE.contains("FOR UPDATE"));
    }
}
