//! Self-service hard deletion through the real `neurovol serve` (SQLite or PostgreSQL; the
//! local store, or s3s-fs with `NEUROVOL_TEST_S3=1`):
//!
//! * after an account's deletion, nothing of it is left in the database, the object store
//!   or the data dir (the SQLite file read raw), its sessions are dead, and the other
//!   account is untouched;
//! * a scan deleted while the S3 server is down: the rows go at once, the receipt says
//!   "pending", and the files go once the server is back;
//! * `kill -9` of the server in the middle of an account's deletion: it finishes after the
//!   restart;
//! * a scan deleted while its job runs: the rows go at once, the job writes nothing back,
//!   and its keys are deleted again once the job's signed URLs have expired.

mod common;

use std::time::{Duration, Instant};

use common::account_kit::*;
use common::s3::{S3Server, s3s_fs_or_skip};
use common::upload_kit::*;
use common::{Browser, PASSWORD, TestServer, location, temp_dir};
use reqwest::StatusCode;
use sqlx::Row;

#[tokio::test]
async fn a_deleted_account_leaves_nothing_in_the_database_the_store_or_the_data_dir() {
    let s3 = optional_s3();
    let extra: Vec<(&'static str, String)> = s3.as_ref().map(|s| s.env()).unwrap_or_default();
    let env = pipeline_env(&extra);
    let server = TestServer::start(&as_refs(&env)).await;
    let db = server.db().await;
    let (mut a, a_email) = account(&server, "leaving").await;
    let a_id = user_id(&db, &a_email).await;

    // everything an account can hold: a processed scan, a deleted one, an open upload, a
    // second session, a refused sign-in (a throttle row), settings, an audit log
    let scan = upload_scan(&a, &small_head()).await;
    let gone = upload_scan(&a, &small_head()).await;
    // processed first: a scan deleted while its job runs keeps its keys in the outbox for
    // one more pass after the job's signed URLs expire (15 min), which this test skips
    wait_done(&server, &db, &scan, Duration::from_secs(600)).await;
    wait_done(&server, &db, &gone, Duration::from_secs(600)).await;
    let mut a_keys = scan_keys(&db, &scan).await;
    a_keys.extend(scan_keys(&db, &gone).await);
    let first_receipt = delete_scan(&mut a, &gone).await;
    let (st, up) = create(&a, 300_000, 64 * 1024, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let upload = up["id"].as_str().unwrap().to_string();
    assert_eq!(put_chunk(&a, &upload, 0, &vec![7u8; 64 * 1024]).await.0, StatusCode::OK);
    let mut second = Browser::new(&server.url);
    let mut probe = Browser::new(&server.url);
    probe
        .post_form(
            "/auth/login",
            &[("email", &a_email), ("password", "not the password 1")],
        )
        .await;
    let resp = second
        .post_form("/auth/login", &[("email", &a_email), ("password", PASSWORD)])
        .await;
    assert_eq!(location(&resp), "/home");
    let sessions: Vec<String> = [a.cookie("nv_session").unwrap(), second.cookie("nv_session").unwrap()].into();

    // the other account, which must not be touched
    let (mut b, b_email) = account(&server, "staying").await;
    let b_scan = upload_scan(&b, &small_head()).await;
    let b_archive = scan_keys(&db, &b_scan).await.remove(0);

    // a wrong password deletes nothing
    assert_eq!(delete_account(&mut a, "a wrong password here").await, None);
    assert!(scan_status(&db, &scan).await.is_some());
    assert!(
        audit_kinds(&db, &a_id)
            .await
            .contains(&"password_check_failed".to_string())
    );

    let t0 = Instant::now();
    let receipt = delete_account(&mut a, PASSWORD).await.expect("a receipt");
    // the rows went at once, in the request
    assert!(
        sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(&a_id)
            .fetch_optional(&db)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(scan_status(&db, &scan).await, None);
    wait_receipt_done(&server, &db, &receipt, Duration::from_secs(60)).await;
    eprintln!(
        "account deletion: files removed {:.1} s after the request",
        t0.elapsed().as_secs_f64()
    );

    // sessions ended with the account: both browsers are visitors now
    for browser in [&mut a, &mut second] {
        let resp = browser.get("/account").await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "a dead session is a visitor");
    }
    // the receipt: counts and dates, for anyone holding its id, naming no account
    let mut anyone = Browser::new(&server.url);
    let page = anyone.get(&format!("/deleted/{receipt}")).await.text().await.unwrap();
    assert!(
        page.contains("An account was deleted") && page.contains(r#"data-pending="false""#),
        "{page}"
    );
    let row =
        sqlx::query("SELECT user_id, scans, objects, sessions, audit_events FROM deletion_receipts WHERE id = $1")
            .bind(&receipt)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(row.get::<String, _>("user_id"), "");
    assert_eq!(row.get::<i64, _>("scans"), 1);
    // the processed scan's 4 objects (and any of the deleted scan's still pending)
    assert!(row.get::<i64, _>("objects") >= 4);
    assert_eq!(row.get::<i64, _>("sessions"), 2);
    assert!(row.get::<i64, _>("audit_events") >= 6);

    // nothing of the account anywhere: database (every table), store, data dir (names
    // and bytes, the SQLite file read raw)
    let mut needles = vec![
        a_email.clone(),
        a_id.clone(),
        scan.clone(),
        gone.clone(),
        upload.clone(),
        first_receipt.clone(),
    ];
    needles.push(server::auth::sha256_hex(a_email.as_bytes()));
    needles.extend(a_keys.iter().cloned());
    for s in &sessions {
        needles.push(s.clone());
        needles.push(server::auth::sha256_hex(s.as_bytes()));
    }
    let mut blobs = database_text(&db).await;
    blobs.extend(stored_files(&server, s3.as_ref()));
    assert!(
        blobs.iter().any(|(w, _)| w.ends_with("neurovol.db")) || server.database_url.is_some(),
        "the SQLite file was read"
    );
    let found = traces(&blobs, &needles);
    assert!(found.is_empty(), "traces of the deleted account: {found:#?}");
    for key in &a_keys {
        assert!(!object_exists(&server, s3.as_ref(), key), "object {key} left");
    }

    // the other account is whole
    assert!(scan_status(&db, &b_scan).await.is_some());
    assert!(object_exists(&server, s3.as_ref(), &b_archive));
    assert!(b.get("/account").await.text().await.unwrap().contains(&b_email));
}

/// Waits until the outbox has tried (and failed) `n` times for some object.
async fn wait_attempts(server: &TestServer, db: &sqlx::AnyPool, n: i64) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let max: Option<i64> = sqlx::query("SELECT MAX(attempts) AS n FROM deletion_outbox")
            .fetch_one(db)
            .await
            .unwrap()
            .get("n");
        if max.unwrap_or(0) >= n {
            return;
        }
        assert!(
            Instant::now() < until,
            "no failed deletion attempts; log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn s3_or_skip(test: &str) -> Option<S3Server> {
    s3s_fs_or_skip(test).map(|bin| S3Server::start(bin, temp_dir("s3")))
}

#[tokio::test]
async fn a_scan_deleted_while_the_store_is_down_is_removed_once_it_returns() {
    let Some(mut s3) = s3_or_skip("a_scan_deleted_while_the_store_is_down_is_removed_once_it_returns") else {
        return;
    };
    let mut extra = s3.env();
    extra.push(("NEUROVOL_JOB_BACKOFF_SECS", "1".into()));
    let env = as_refs(&extra);
    let server = TestServer::start(&env).await;
    let db = server.db().await;
    let (mut a, _) = account(&server, "outage").await;
    let scan = upload_scan(&a, &small_head()).await;
    let archive = scan_keys(&db, &scan).await.remove(0);
    assert!(object_exists(&server, Some(&s3), &archive));

    s3.stop();
    let receipt = delete_scan(&mut a, &scan).await;
    // the rows are gone at once; the file waits for the store
    assert_eq!(scan_status(&db, &scan).await, None);
    wait_attempts(&server, &db, 2).await;
    assert_eq!(
        receipt_state(&db, &receipt).await,
        (false, 4),
        "archive, volume, labels, volumes"
    );
    let page = a.get(&format!("/deleted/{receipt}")).await.text().await.unwrap();
    assert!(
        page.contains("Deletion pending") && page.contains(r#"data-pending="true""#),
        "{page}"
    );
    let account_page = a.get("/account").await.text().await.unwrap();
    assert!(
        account_page.contains(r#"data-testid="deletion-pending""#),
        "the account page says so"
    );

    s3.spawn();
    wait_receipt_done(&server, &db, &receipt, Duration::from_secs(120)).await;
    assert!(
        !object_exists(&server, Some(&s3), &archive),
        "the archive is gone from the store"
    );
    let page = a.get(&format!("/deleted/{receipt}")).await.text().await.unwrap();
    assert!(page.contains(r#"data-pending="false""#), "{page}");
}

#[tokio::test]
async fn kill_9_in_the_middle_of_an_account_deletion_finishes_after_the_restart() {
    let Some(mut s3) = s3_or_skip("kill_9_in_the_middle_of_an_account_deletion_finishes_after_the_restart") else {
        return;
    };
    let mut extra = s3.env();
    extra.push(("NEUROVOL_JOB_LEASE_SECS", "6".into()));
    extra.push(("NEUROVOL_JOB_BACKOFF_SECS", "1".into()));
    let env = as_refs(&extra);
    let mut first = TestServer::start(&env).await;
    let db = first.db().await;
    let (mut a, a_email) = account(&first, "killed").await;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let scan = upload_scan(&a, &small_head()).await;
        keys.push(scan_keys(&db, &scan).await.remove(0));
    }

    // the store goes down, the account is deleted, and the server dies while it is trying
    s3.stop();
    let receipt = delete_account(&mut a, PASSWORD).await.expect("a receipt");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let claimed: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM deletion_outbox WHERE lease_owner IS NOT NULL OR attempts > 0")
                .fetch_one(&db)
                .await
                .unwrap()
                .get("n");
        if claimed > 0 || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill9();
    assert_eq!(
        receipt_state(&db, &receipt).await,
        (false, 8),
        "killed mid-deletion: 4 keys of each scan"
    );
    assert!(
        sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(&a_email)
            .fetch_optional(&db)
            .await
            .unwrap()
            .is_none()
    );

    // the store and the server come back: the deletion finishes by itself
    s3.spawn();
    let second = TestServer::start_on(first.data_dir.clone(), first.database_url.clone(), &env, false).await;
    wait_receipt_done(&second, &db, &receipt, Duration::from_secs(120)).await;
    for key in &keys {
        assert!(!object_exists(&second, Some(&s3), key), "object left after the restart");
    }
    drop(second);
    drop(first);
}

#[tokio::test]
async fn a_scan_deleted_while_its_job_runs_goes_at_once_and_its_files_are_deleted_again_later() {
    // a dcm2niix that waits, so the job is inside its convert step when the scan is deleted
    let tools = temp_dir("tools");
    let dcm2niix = tools.join("slow-dcm2niix");
    std::fs::write(&dcm2niix, "#!/bin/sh\nsleep 4\nexec dcm2niix \"$@\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dcm2niix, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = pipeline_env(&[("NEUROVOL_DCM2NIIX", dcm2niix.display().to_string())]);
    let server = TestServer::start(&as_refs(&env)).await;
    let db = server.db().await;
    let (mut a, _) = account(&server, "inflight").await;
    let scan = upload_scan(&a, &small_head()).await;
    let keys = scan_keys(&db, &scan).await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let running: i64 = sqlx::query("SELECT COUNT(*) AS n FROM job_runs WHERE scan_id = $1 AND outcome IS NULL")
            .bind(&scan)
            .fetch_one(&db)
            .await
            .unwrap()
            .get("n");
        if running > 0 {
            break;
        }
        assert!(Instant::now() < until, "the conversion did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let t0 = now_ms();
    let receipt = delete_scan(&mut a, &scan).await;
    assert_eq!(scan_status(&db, &scan).await, None, "the rows went at once");
    // the step finishes (its dcm2niix sleeps), finds its job gone, and writes no row back
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(scan_status(&db, &scan).await, None);
    for table in ["jobs", "job_runs", "scan_regions"] {
        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE scan_id = $1"
        )))
        .bind(&scan)
        .fetch_one(&db)
        .await
        .unwrap()
        .get("n");
        assert_eq!(n, 0, "{table}");
    }
    // every key was deleted once and waits for one more pass after the job's signed URLs
    // (15 min) could still write it; the receipt says pending meanwhile
    let rows =
        sqlx::query("SELECT object_key, run_after_ms, recheck_after_ms FROM deletion_outbox WHERE receipt_id = $1")
            .bind(&receipt)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let next = r.get::<i64, _>("run_after_ms").max(r.get::<i64, _>("recheck_after_ms"));
        assert!(
            next >= t0 + 15 * 60 * 1000,
            "{} is deleted again after the settle time",
            r.get::<String, _>("object_key")
        );
    }
    assert_eq!(receipt_state(&db, &receipt).await, (false, 4));
    assert!(
        !object_exists(&server, None, &keys[0]),
        "the archive went in the first pass"
    );
    let _ = std::fs::remove_dir_all(&tools);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
