//! Accounts, sessions and sign-in throttling, on the database.
//!
//! Passwords: bcrypt at cost 12 on a blocking thread. Sessions: a random 256-bit token in
//! the cookie, only its SHA-256 in the database. Throttling: failure counters per account
//! (SHA-256 of the submitted email, so unknown emails behave exactly like known ones) and
//! per client IP, stored in the database so every server process sees the same counts.

use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use sqlx::Row;

use app::UserInfo;
use app::auth_rules::{AuthNotice, normalize_email, password_problems};

use crate::config::Config;
use crate::db::{Db, now_secs};

pub const BCRYPT_COST: u32 = 12;

/// A random URL-safe token of 32 bytes.
pub fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn bcrypt_hash(password: String) -> anyhow::Result<String> {
    Ok(tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST)).await??)
}

async fn bcrypt_verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// A hash to verify against when the email is unknown, so both paths cost one bcrypt.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash(random_token(), BCRYPT_COST).unwrap_or_default())
}

/// Computes the dummy hash off the request path (takes ~0.3 s).
pub async fn warm_up() {
    let _ = tokio::task::spawn_blocking(dummy_hash).await;
}

#[derive(Debug)]
pub enum SignUpError {
    Rejected(AuthNotice),
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for SignUpError {
    fn from(e: sqlx::Error) -> Self {
        SignUpError::Internal(e.into())
    }
}

pub async fn sign_up(db: &Db, raw_email: &str, password: &str, confirm: &str) -> Result<UserInfo, SignUpError> {
    let email = normalize_email(raw_email).ok_or(SignUpError::Rejected(AuthNotice::EmailInvalid))?;
    if let Some(rule) = password_problems(password, &email).first() {
        return Err(SignUpError::Rejected(AuthNotice::Password(*rule)));
    }
    if password != confirm {
        return Err(SignUpError::Rejected(AuthNotice::PasswordMismatch));
    }
    let hash = bcrypt_hash(password.to_string()).await.map_err(SignUpError::Internal)?;
    let id = random_token();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&id)
    .bind(&email)
    .bind(&hash)
    .bind(now_secs())
    .execute(db)
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(SignUpError::Rejected(AuthNotice::EmailUnavailable));
    }
    Ok(UserInfo { id, email })
}

#[derive(Debug)]
pub enum LogInError {
    /// Same outcome for unknown email and wrong password. `account`: the account whose
    /// password was wrong, for its own audit log only (never in the answer).
    InvalidCredentials {
        account: Option<String>,
    },
    /// Too many failures; `account` as above.
    Throttled {
        account: Option<String>,
    },
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for LogInError {
    fn from(e: sqlx::Error) -> Self {
        LogInError::Internal(e.into())
    }
}

/// The throttle row of an account: the SHA-256 of its (submitted) email.
pub fn account_throttle_key(email: &str) -> String {
    format!("acct:{}", sha256_hex(email.as_bytes()))
}

pub async fn log_in(
    db: &Db,
    config: &Config,
    raw_email: &str,
    password: &str,
    client_ip: &str,
) -> Result<UserInfo, LogInError> {
    let email = raw_email.trim().to_lowercase();
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE email = $1")
        .bind(&email)
        .fetch_optional(db)
        .await?;
    let (user_id, hash) = match row {
        Some(row) => (
            Some(row.try_get::<String, _>("id")?),
            row.try_get::<String, _>("password_hash")?,
        ),
        None => (None, dummy_hash().to_string()),
    };
    check_password(db, config, &email, hash, password, client_ip)
        .await
        .map_err(|e| e.for_account(user_id.clone()))?;
    match user_id {
        Some(id) => Ok(UserInfo { id, email }),
        None => Err(LogInError::InvalidCredentials { account: None }),
    }
}

impl LogInError {
    fn for_account(self, id: Option<String>) -> LogInError {
        match self {
            LogInError::InvalidCredentials { .. } => LogInError::InvalidCredentials { account: id },
            LogInError::Throttled { .. } => LogInError::Throttled { account: id },
            other => other,
        }
    }
}

/// The password check of sign-in and of the account page's re-authentication: throttled
/// per account (`email`) and per IP, always one bcrypt verification.
async fn check_password(
    db: &Db,
    config: &Config,
    email: &str,
    hash: String,
    password: &str,
    client_ip: &str,
) -> Result<(), LogInError> {
    let now = now_secs();
    let account_key = account_throttle_key(email);
    let ip_key = format!("ip:{client_ip}");
    let window = config.login_window_secs as i64;

    if throttled(db, &account_key, config.login_max_failures_per_account, window, now).await?
        || throttled(db, &ip_key, config.login_max_failures_per_ip, window, now).await?
    {
        return Err(LogInError::Throttled { account: None });
    }
    // Always one bcrypt verification, known email or not: same time, same answer. An
    // account made through Google has no password ('' verifies nothing).
    let hash = if hash.is_empty() {
        dummy_hash().to_string()
    } else {
        hash
    };
    let password_ok =
        password.len() <= app::auth_rules::PASSWORD_MAX_BYTES && bcrypt_verify(password.to_string(), hash).await;
    if password_ok {
        sqlx::query("DELETE FROM login_throttle WHERE throttle_key = $1")
            .bind(&account_key)
            .execute(db)
            .await?;
        Ok(())
    } else {
        record_failure(db, &account_key, window, now).await?;
        record_failure(db, &ip_key, window, now).await?;
        Err(LogInError::InvalidCredentials { account: None })
    }
}

/// Re-authentication on the account page (deleting, changing the password): the signed-in
/// account's password, with sign-in's throttling. `Ok(false)` for a wrong password.
pub async fn confirm_password(
    db: &Db,
    config: &Config,
    user_id: &str,
    password: &str,
    client_ip: &str,
) -> Result<bool, LogInError> {
    let row = sqlx::query("SELECT email, password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?;
    let Some(row) = row else { return Ok(false) };
    let (email, hash): (String, String) = (row.try_get("email")?, row.try_get("password_hash")?);
    match check_password(db, config, &email, hash, password, client_ip).await {
        Ok(()) => Ok(true),
        Err(LogInError::InvalidCredentials { .. }) => Ok(false),
        Err(e) => Err(e.for_account(Some(user_id.to_string()))),
    }
}

#[derive(Debug)]
pub enum PasswordChangeError {
    Rejected(AuthNotice),
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for PasswordChangeError {
    fn from(e: sqlx::Error) -> Self {
        PasswordChangeError::Internal(e.into())
    }
}

/// Sets a new password (the rules of sign-up) and ends every other session of the account;
/// the session `keep_token` stays signed in. The caller has confirmed the old password.
pub async fn change_password(
    db: &Db,
    user_id: &str,
    keep_token: &str,
    password: &str,
    confirm: &str,
) -> Result<u64, PasswordChangeError> {
    let email: String = sqlx::query("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(db)
        .await?
        .try_get("email")?;
    if let Some(rule) = password_problems(password, &email).first() {
        return Err(PasswordChangeError::Rejected(AuthNotice::Password(*rule)));
    }
    if password != confirm {
        return Err(PasswordChangeError::Rejected(AuthNotice::PasswordMismatch));
    }
    let hash = bcrypt_hash(password.to_string())
        .await
        .map_err(PasswordChangeError::Internal)?;
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(&hash)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
        .bind(user_id)
        .bind(sha256_hex(keep_token.as_bytes()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(ended)
}

async fn throttled(db: &Db, key: &str, max: u32, window: i64, now: i64) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT failures, window_start FROM login_throttle WHERE throttle_key = $1")
        .bind(key)
        .fetch_optional(db)
        .await?;
    Ok(match row {
        Some(row) => {
            let failures: i64 = row.try_get("failures")?;
            let start: i64 = row.try_get("window_start")?;
            now - start < window && failures >= max as i64
        }
        None => false,
    })
}

async fn record_failure(db: &Db, key: &str, window: i64, now: i64) -> Result<(), sqlx::Error> {
    // A fresh window starts when the old one has expired; otherwise count up.
    sqlx::query(
        "INSERT INTO login_throttle (throttle_key, failures, window_start) VALUES ($1, 1, $2)
         ON CONFLICT (throttle_key) DO UPDATE SET
           failures = CASE WHEN $2 - login_throttle.window_start >= $3 THEN 1 ELSE login_throttle.failures + 1 END,
           window_start = CASE WHEN $2 - login_throttle.window_start >= $3 THEN $2 ELSE login_throttle.window_start END",
    )
    .bind(key)
    .bind(now)
    .bind(window)
    .execute(db)
    .await?;
    Ok(())
}

/// Starts a session and returns the cookie token.
pub async fn create_session(db: &Db, user_id: &str, days: u32) -> Result<String, sqlx::Error> {
    let token = random_token();
    let now = now_secs();
    sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(sha256_hex(token.as_bytes()))
        .bind(user_id)
        .bind(now)
        .bind(now + days as i64 * 86_400)
        .execute(db)
        .await?;
    Ok(token)
}

pub async fn session_user(db: &Db, token: &str) -> Result<Option<UserInfo>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT u.id, u.email FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2",
    )
    .bind(sha256_hex(token.as_bytes()))
    .bind(now_secs())
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(UserInfo {
            id: r.try_get("id")?,
            email: r.try_get("email")?,
        })
    })
    .transpose()
}

pub async fn end_session(db: &Db, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(sha256_hex(token.as_bytes()))
        .execute(db)
        .await?;
    Ok(())
}

/// Drops expired sessions and stale throttle rows; run periodically.
pub async fn purge_expired(db: &Db, config: &Config) -> Result<(), sqlx::Error> {
    let now = now_secs();
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db)
        .await?;
    sqlx::query("DELETE FROM login_throttle WHERE window_start < $1")
        .bind(now - config.login_window_secs as i64)
        .execute(db)
        .await?;
    // Google sign-ins started and never finished
    sqlx::query("DELETE FROM oidc_flows WHERE expires_at < $1")
        .bind(now)
        .execute(db)
        .await?;
    crate::audit::purge_old_refusals(db, now * 1000).await
}
