//! The account's audit log: what happened to it, when, from which IP and browser. Shown to
//! its owner on the account page and in the export.
//!
//! Append-only for the app: this module inserts and reads, nothing updates a row. The rows
//! go with the account (`ON DELETE CASCADE`); the deletion's receipt (`deletion.rs`), which
//! names no account, is what remains.
//!
//! A refusal that concerns no account (a visitor's refused Google sign-in) is kept as a
//! content-free row with no account ([`note_refusal`]: `user_id` NULL; time, kind, the
//! failed check, IP, user agent). It belongs to no account: every read here is by account,
//! so it never shows on an account's page or in its export, and no deletion counts it.

use app::account::{AuditEntry, AuditKind};
use sqlx::Row;

use crate::db::Db;

/// Longest user agent kept (they are free text sent by the browser).
pub const MAX_USER_AGENT: usize = 256;
/// Events the account page shows (the export has them all).
pub const PAGE_EVENTS: i64 = 200;

/// Where a request came from: the client IP (the forwarded-for rule of `web/client.rs`)
/// and the browser's user agent, trimmed.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: String,
    pub user_agent: String,
}

impl Origin {
    pub fn new(ip: String, user_agent: &str) -> Origin {
        let mut end = user_agent.len().min(MAX_USER_AGENT);
        while !user_agent.is_char_boundary(end) {
            end -= 1;
        }
        let user_agent = user_agent[..end].chars().filter(|c| !c.is_control()).collect();
        Origin { ip, user_agent }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Appends one event (inside the caller's transaction or on the pool).
pub async fn record<'e, E>(
    db: E,
    user_id: &str,
    kind: AuditKind,
    subject: &str,
    origin: &Origin,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (id, user_id, at_ms, kind, subject, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(hex::encode(rand::random::<[u8; 16]>()))
    .bind(user_id)
    .bind(now_ms())
    .bind(kind.as_str())
    .bind(subject)
    .bind(&origin.ip)
    .bind(&origin.user_agent)
    .execute(db)
    .await?;
    Ok(())
}

/// [`record`] where the event must not stop the request: a failed write is logged (by
/// kind, never by value) and the request goes on.
pub async fn note(db: &Db, user_id: &str, kind: AuditKind, subject: &str, origin: &Origin) {
    if let Err(e) = record(db, user_id, kind, subject, origin).await {
        tracing::error!(error = %e, kind = %kind, "cannot write the audit log");
    }
}

/// How long a refused sign-in that belongs to no account is kept (its IP address and
/// browser are personal data that no account holds, export or delete): 30 days.
pub const REFUSAL_RETENTION_MS: i64 = 30 * 86_400_000;

/// Removes refusals without an account older than [`REFUSAL_RETENTION_MS`] (hourly clean-up).
pub async fn purge_old_refusals(db: &Db, now_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM audit_log WHERE user_id IS NULL AND at_ms < $1")
        .bind(now_ms - REFUSAL_RETENTION_MS)
        .execute(db)
        .await?;
    Ok(())
}

/// Appends a content-free refusal that concerns no account (`user_id` NULL). A failed
/// write is logged (by kind) and the request goes on.
pub async fn note_refusal(db: &Db, kind: AuditKind, subject: &str, origin: &Origin) {
    // the NULL is left out rather than bound (sqlx's Any driver binds NULL untyped)
    let written =
        sqlx::query("INSERT INTO audit_log (id, at_ms, kind, subject, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(hex::encode(rand::random::<[u8; 16]>()))
            .bind(now_ms())
            .bind(kind.as_str())
            .bind(subject)
            .bind(&origin.ip)
            .bind(&origin.user_agent)
            .execute(db)
            .await;
    if let Err(e) = written {
        tracing::error!(error = %e, kind = %kind, "cannot write the audit log");
    }
}

/// The account's events, newest first (`limit`: at most this many).
pub async fn list(db: &Db, user_id: &str, limit: Option<i64>) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at_ms, kind, subject, ip, user_agent FROM audit_log WHERE user_id = $1 ORDER BY at_ms DESC, id LIMIT $2",
    )
    .bind(user_id)
    .bind(limit.unwrap_or(i64::MAX))
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at_ms: r.try_get("at_ms")?,
                kind: crate::db::get_enum(r, "kind", AuditKind::parse)?,
                subject: r.try_get("subject")?,
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_trimmed_and_cleaned() {
        let o = Origin::new("127.0.0.1".into(), &format!("Mozilla\u{7}/5.0 {}", "é".repeat(300)));
        assert!(o.user_agent.len() <= MAX_USER_AGENT);
        assert!(o.user_agent.starts_with("Mozilla/5.0 é"));
    }
}
