//! Database access: one `sqlx::AnyPool` over SQLite (embedded default) or PostgreSQL.
//!
//! Queries are written once in portable SQL with `$n` placeholders, which both drivers
//! accept, so the same code paths are exercised by the SQLite and the PostgreSQL test runs.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, ConnectOptions, SqlSafeStr};

use crate::config::Config;

pub type Db = AnyPool;

/// Migrations are embedded in the binary so `neurovol migrate` needs no source tree.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "accounts", include_str!("../../migrations/0001_accounts.sql")),
    (2, "scans", include_str!("../../migrations/0002_scans.sql")),
    (3, "pipeline", include_str!("../../migrations/0003_pipeline.sql")),
    (4, "privacy", include_str!("../../migrations/0004_privacy.sql")),
    (5, "google", include_str!("../../migrations/0005_google.sql")),
    (6, "defacing", include_str!("../../migrations/0006_defacing.sql")),
    (
        7,
        "percentile_bands",
        include_str!("../../migrations/0007_percentile_bands.sql"),
    ),
];

pub fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    sqlx::any::install_default_drivers();
    let url = config.effective_database_url();
    if !config.uses_postgres() {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    // Statement logging would print bound parameters (emails) at debug level: keep it off.
    let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
    let pool = AnyPoolOptions::new()
        .max_connections(if config.uses_postgres() { 10 } else { 4 })
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // SQLite enforces foreign keys only when asked, per connection.
                if conn.backend_name() == "SQLite" {
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 5000").execute(&mut *conn).await?;
                    // deleted rows are overwritten, so a deleted account's data does not
                    // linger in the file's free pages
                    sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database ({}): {e}", redact_url(&url)))?;
    Ok(pool)
}

pub async fn migrate(db: &Db) -> anyhow::Result<()> {
    migrator().run(db).await?;
    Ok(())
}

/// Database URLs can carry a password: never print it.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => format!("{}://***{}", &url[..scheme_end], &url[at..]),
        _ => url.to_string(),
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A text column holding one of a state enum's names (`app::scan_state`), parsed; an
/// unknown name is a decode error, not a silent default.
pub fn get_enum<T>(row: &sqlx::any::AnyRow, column: &str, parse: fn(&str) -> Option<T>) -> Result<T, sqlx::Error> {
    use sqlx::Row;
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: format!("unknown value {text:?}").into(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_printed() {
        assert_eq!(
            super::redact_url("postgres://nv:secret@127.0.0.1:5432/nv"),
            "postgres://***@127.0.0.1:5432/nv"
        );
        assert_eq!(
            super::redact_url("sqlite://data/neurovol.db"),
            "sqlite://data/neurovol.db"
        );
    }
}
