//! `neurovol migrate` on a fresh database, twice (idempotent), then the schema is there.
//! Runs on SQLite always and on PostgreSQL when NEUROVOL_TEST_DATABASE_URL is set.

mod common;

use std::process::Command;

use sqlx::Connection;

fn migrate(data_dir: &std::path::Path, database_url: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurovol"));
    cmd.arg("migrate")
        .env("NEUROVOL_DATA_DIR", data_dir)
        .env_remove("NEUROVOL_CONFIG");
    match database_url {
        Some(url) => cmd.env("NEUROVOL_DATABASE_URL", url),
        None => cmd.env_remove("NEUROVOL_DATABASE_URL"),
    };
    cmd.output().expect("run neurovol migrate")
}

async fn assert_schema(url: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for table in ["users", "sessions", "login_throttle", "scans", "_sqlx_migrations"] {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        if table == "_sqlx_migrations" {
            let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
                })
                .count() as i64;
            assert_eq!(n, files, "every migration applied exactly once");
        }
    }
}

#[tokio::test]
async fn migrate_is_idempotent_on_sqlite() {
    let dir = common::temp_dir("migrate");
    for _ in 0..2 {
        let out = migrate(&dir, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("migrations applied"));
    }
    assert!(dir.join("neurovol.db").is_file());
    assert_schema(&format!("sqlite://{}", dir.join("neurovol.db").display())).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn migrate_is_idempotent_on_postgres() {
    let Some(url) = common::fresh_database().await else {
        eprintln!("NEUROVOL_TEST_DATABASE_URL not set: the PostgreSQL run of scripts/test.sh covers this");
        return;
    };
    let dir = common::temp_dir("migrate-pg");
    for _ in 0..2 {
        let out = migrate(&dir, Some(&url));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains("postgres://***@") || !url.contains('@'),
            "password redacted: {printed}"
        );
    }
    assert!(
        !dir.join("neurovol.db").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
    assert_schema(&url).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let dir = common::temp_dir("migrate-bad");
    let out = migrate(&dir, Some("postgres://nobody:secret@127.0.0.1:1/none"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(!err.contains("secret"), "password printed: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
