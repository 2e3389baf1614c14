//! Helpers of the privacy-control tests (isolation, deletion, export, account page): scans
//! uploaded and processed through the API, the account forms as a browser posts them, and
//! the search of everything the server keeps for traces of one account.

// Each test binary compiles this kit and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::Row;

use super::s3::{BUCKET, S3Server, s3s_fs_or_skip};
use super::upload_kit::*;
use super::{Browser, PASSWORD, TestServer, location, sign_up, temp_dir, unique_email};

pub const MIB: usize = 1024 * 1024;

/// The pipeline's settings for fast tests (no brain mask, short back-off and lease).
pub fn pipeline_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NEUROVOL_PIPELINE_CONCURRENCY", "1".to_string()),
        ("NEUROVOL_SEGMENT_BRAIN_MASK", "0".to_string()),
        ("NEUROVOL_JOB_BACKOFF_SECS", "1".to_string()),
        ("NEUROVOL_JOB_LEASE_SECS", "6".to_string()),
    ];
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k, v.clone()));
    }
    env
}

pub fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// s3s-fs when `NEUROVOL_TEST_S3=1` (required then), else `None` (the local store).
pub fn optional_s3() -> Option<S3Server> {
    if std::env::var("NEUROVOL_TEST_S3").is_ok_and(|v| v == "1") {
        let bin = s3s_fs_or_skip("tests over S3").expect("s3s-fs (NEUROVOL_TEST_S3=1)");
        Some(S3Server::start(bin, temp_dir("s3")))
    } else {
        None
    }
}

/// A signed-up browser and its email.
pub async fn account(server: &TestServer, tag: &str) -> (Browser, String) {
    let mut b = Browser::new(&server.url);
    let email = unique_email(tag);
    let resp = sign_up(&mut b, &email).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    (b, email)
}

/// Uploads a ZIP through the API; returns the new scan's id.
pub async fn upload_scan(b: &Browser, bytes: &[u8]) -> String {
    let (st, v) = upload_with(b, bytes).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["scan_id"].as_str().unwrap().to_string()
}

/// Uploads a ZIP through the API; returns `complete`'s answer (a scan, or a refusal).
pub async fn upload_with(b: &Browser, bytes: &[u8]) -> (StatusCode, serde_json::Value) {
    let body = serde_json::json!({ "size": bytes.len(), "chunk_size": 8 * MIB });
    let (st, created) = create_with(b, &body).await;
    assert_eq!(st, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    for (i, part) in bytes.chunks(8 * MIB).enumerate() {
        let (st, v) = put_chunk(b, &id, i, part).await;
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    complete(b, &id).await
}

pub async fn scan_status(db: &sqlx::AnyPool, scan: &str) -> Option<String> {
    sqlx::query("SELECT status FROM scans WHERE id = $1")
        .bind(scan)
        .fetch_optional(db)
        .await
        .unwrap()
        .map(|r| r.get("status"))
}

/// Polls until the scan is `done` (panics with the logs on failure or timeout).
pub async fn wait_done(server: &TestServer, db: &sqlx::AnyPool, scan: &str, timeout: Duration) {
    let until = Instant::now() + timeout;
    loop {
        match scan_status(db, scan).await.as_deref() {
            Some("done") => return,
            Some("failed") => panic!("scan failed; log:\n{}", server.logs()),
            st => assert!(
                Instant::now() < until,
                "scan still {st:?} after {timeout:?}; log:\n{}",
                server.logs()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn user_id(db: &sqlx::AnyPool, email: &str) -> String {
    sqlx::query("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(db)
        .await
        .unwrap()
        .get("id")
}

/// The object keys of a scan (archive, volume, labels, volumes).
pub async fn scan_keys(db: &sqlx::AnyPool, scan: &str) -> Vec<String> {
    let r = sqlx::query("SELECT object_key, nifti_key, labels_key, volumes_key FROM scans WHERE id = $1")
        .bind(scan)
        .fetch_one(db)
        .await
        .unwrap();
    ["object_key", "nifti_key", "labels_key", "volumes_key"]
        .iter()
        .map(|k| r.get::<String, _>(*k))
        .collect()
}

/// `POST /account/delete` with this password; the receipt's id when it was deleted.
pub async fn delete_account(b: &mut Browser, password: &str) -> Option<String> {
    let resp = b
        .post_form("/account/delete", &[("password", password), ("understood", "on")])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    location(&resp).strip_prefix("/deleted/").map(str::to_string)
}

/// `POST /scans/{id}/delete` with the account's password; the receipt's id.
pub async fn delete_scan(b: &mut Browser, scan: &str) -> String {
    let resp = b
        .post_form(&format!("/scans/{scan}/delete"), &[("password", PASSWORD)])
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    location(&resp)
        .strip_prefix("/deleted/")
        .expect("sent to the receipt")
        .to_string()
}

/// (completed, stored files still to remove) of a receipt.
pub async fn receipt_state(db: &sqlx::AnyPool, receipt: &str) -> (bool, i64) {
    let r = sqlx::query(
        "SELECT completed_at, (SELECT COUNT(*) FROM deletion_outbox WHERE receipt_id = $1) AS pending FROM deletion_receipts WHERE id = $1",
    )
    .bind(receipt)
    .fetch_one(db)
    .await
    .unwrap();
    (r.get::<Option<i64>, _>("completed_at").is_some(), r.get("pending"))
}

pub async fn wait_receipt_done(server: &TestServer, db: &sqlx::AnyPool, receipt: &str, timeout: Duration) {
    let until = Instant::now() + timeout;
    loop {
        let (done, pending) = receipt_state(db, receipt).await;
        if done {
            assert_eq!(pending, 0);
            return;
        }
        assert!(
            Instant::now() < until,
            "deletion still pending ({pending} objects) after {timeout:?}; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every table's text values, one blob per table.
pub async fn database_text(db: &sqlx::AnyPool) -> Vec<(String, Vec<u8>)> {
    let mut blobs = Vec::new();
    for table in [
        "users",
        "sessions",
        "login_throttle",
        "scans",
        "scan_regions",
        "jobs",
        "job_runs",
        "audit_log",
        "deletion_receipts",
        "deletion_outbox",
    ] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(db)
            .await
            .unwrap();
        let mut text = String::new();
        for r in &rows {
            for i in 0..r.len() {
                if let Ok(Some(v)) = r.try_get::<Option<String>, _>(i) {
                    text.push_str(&v);
                    text.push('\n');
                }
            }
        }
        blobs.push((format!("table {table}"), text.into_bytes()));
    }
    blobs
}

/// Every file of the data dir and of the S3 server's root: names and raw bytes.
pub fn stored_files(server: &TestServer, s3: Option<&S3Server>) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = files_under(&server.data_dir);
    if let Some(s3) = s3 {
        files.extend(files_under(&s3.root()));
    }
    let mut blobs = Vec::new();
    for f in files {
        blobs.push((
            format!("file name {}", f.display()),
            f.display().to_string().into_bytes(),
        ));
        blobs.push((f.display().to_string(), std::fs::read(&f).unwrap_or_default()));
    }
    blobs
}

/// Where any of `needles` occurs: "needle in what" lines.
pub fn traces(blobs: &[(String, Vec<u8>)], needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (what, bytes) in blobs {
        for n in needles {
            if memchr::memmem::find(bytes, n.as_bytes()).is_some() {
                found.push(format!("{n:?} in {what}"));
            }
        }
    }
    found
}

/// Whether an object is in the store (the local folder or the S3 root).
pub fn object_exists(server: &TestServer, s3: Option<&S3Server>, key: &str) -> bool {
    match s3 {
        Some(s) => s.root().join(BUCKET).join(key).is_file(),
        None => server.data_dir.join("objects").join(key).is_file(),
    }
}

/// The audit log kinds of an account, oldest first.
pub async fn audit_kinds(db: &sqlx::AnyPool, user: &str) -> Vec<String> {
    sqlx::query("SELECT kind FROM audit_log WHERE user_id = $1 ORDER BY at_ms, id")
        .bind(user)
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("kind"))
        .collect()
}
