//! The account page's controls over real HTTP: the audit log (what, when, IP by the
//! forwarded-for rule, browser), changing the password (other sessions end), the default
//! for DICOM archives, and CSRF tokens bound to their session.

mod common;

use std::time::{Duration, Instant};

use common::account_kit::*;
use common::upload_kit::*;
use common::{Browser, PASSWORD, TestServer, location, unique_email};
use reqwest::StatusCode;
use sqlx::Row;

const AGENT: &str = "NeuroVolTest/1.0 (audit)";
const CLIENT: &str = "203.0.113.7";

/// A form post as a browser behind the proxy sends it: the page's token, the proxy's
/// forwarded-for (the client first), the browser's user agent.
async fn post(b: &mut Browser, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    if b.cookie("nv_csrf").is_none() {
        b.get("/login").await;
    }
    let token = b.cookie("nv_csrf").unwrap();
    let mut all = fields.to_vec();
    all.push(("csrf_token", &token));
    b.post_raw(
        path,
        &all,
        &[
            ("x-forwarded-for", &format!("{CLIENT}, 10.0.0.1")),
            ("user-agent", AGENT),
        ],
    )
    .await
}

async fn audit_rows(db: &sqlx::AnyPool, user: &str) -> Vec<(String, String, String, String)> {
    sqlx::query("SELECT kind, subject, ip, user_agent FROM audit_log WHERE user_id = $1 ORDER BY at_ms, id")
        .bind(user)
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("kind"), r.get("subject"), r.get("ip"), r.get("user_agent")))
        .collect()
}

#[tokio::test]
async fn the_audit_log_records_what_happened_with_time_ip_and_browser() {
    let server = TestServer::start(&[("NEUROVOL_TRUST_FORWARDED_FOR", "1")]).await;
    let db = server.db().await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("audited");
    let resp = post(
        &mut b,
        "/auth/signup",
        &[
            ("email", &email),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ],
    )
    .await;
    assert_eq!(location(&resp), "/home");
    let id = user_id(&db, &email).await;
    post(&mut b, "/auth/logout", &[]).await;
    let resp = post(
        &mut b,
        "/auth/login",
        &[("email", &email), ("password", "wrong password 123")],
    )
    .await;
    assert_eq!(location(&resp), "/login?error=invalid");
    // the refused sign-in is written off the answer's path: wait for it
    let until = Instant::now() + Duration::from_secs(10);
    while !audit_kinds(&db, &id).await.contains(&"sign_in_failed".to_string()) {
        assert!(Instant::now() < until, "no sign_in_failed row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before_unknown: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
        .fetch_one(&db)
        .await
        .unwrap()
        .get("n");
    post(
        &mut b,
        "/auth/login",
        &[("email", &unique_email("nobody")), ("password", "wrong password 123")],
    )
    .await;
    let resp = post(&mut b, "/auth/login", &[("email", &email), ("password", PASSWORD)]).await;
    assert_eq!(location(&resp), "/home");
    let scan = upload_scan(&b, &small_head()).await;
    let resp = b.get(&format!("/scans/{scan}/files/dicom-deidentified.zip")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let receipt = {
        let resp = post(&mut b, &format!("/scans/{scan}/delete"), &[("password", PASSWORD)]).await;
        location(&resp).strip_prefix("/deleted/").unwrap().to_string()
    };

    let want = [
        "account_created",
        "signed_out",
        "sign_in_failed",
        "sign_in_succeeded",
        "upload_accepted",
        "file_downloaded",
        "scan_deleted",
    ];
    let rows = audit_rows(&db, &id).await;
    let mut kinds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    kinds.sort();
    let mut sorted = want.to_vec();
    sorted.sort();
    assert_eq!(kinds, sorted, "{rows:?}");
    for (kind, subject, ip, agent) in &rows {
        // the upload and download went through the upload kit (no proxy headers): the
        // peer's address and no agent; every form post came "through the proxy"
        if matches!(kind.as_str(), "upload_accepted" | "file_downloaded") {
            assert_eq!(ip, "127.0.0.1", "{kind}");
        } else {
            assert_eq!(
                (ip.as_str(), agent.as_str()),
                (CLIENT, AGENT),
                "{kind}: the forwarded-for rule and the browser"
            );
        }
        match kind.as_str() {
            "upload_accepted" | "scan_deleted" => assert_eq!(subject, &scan),
            "file_downloaded" => assert_eq!(subject, &format!("{scan}/dicom-deidentified.zip")),
            _ => assert_eq!(subject, ""),
        }
    }
    // an unknown email has no account to log to: nothing was written for it
    let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
        .fetch_one(&db)
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        total - before_unknown,
        want.len() as i64 - 3,
        "only this account's later events"
    );

    // the account page shows the log, newest first, and the receipt
    let page = b.get("/account").await.text().await.unwrap();
    for kind in want {
        assert!(
            page.contains(&format!(r#"data-kind="{kind}""#)),
            "the page shows {kind}"
        );
    }
    assert!(page.contains(CLIENT) && page.contains("NeuroVolTest/1.0"));
    assert!(page.contains(&format!("/deleted/{receipt}")));
    assert!(page.contains(r#"data-method="password""#), "sign-in methods listed");
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let server = TestServer::start(&[]).await;
    let (mut first, email) = account(&server, "rotate").await;
    let mut second = Browser::new(&server.url);
    assert_eq!(
        location(
            &second
                .post_form("/auth/login", &[("email", &email), ("password", PASSWORD)])
                .await
        ),
        "/home"
    );
    let new_password = "silver lantern orchard 19";

    // a wrong current password changes nothing
    let resp = first
        .post_form(
            "/account/password",
            &[
                ("current_password", "not it at all 1"),
                ("password", new_password),
                ("password_confirm", new_password),
            ],
        )
        .await;
    assert_eq!(location(&resp), "/account?error=password_wrong#password");
    assert!(second.get("/account").await.status().is_success());
    // a new password must follow the rules
    let resp = first
        .post_form(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("password", "short"),
                ("password_confirm", "short"),
            ],
        )
        .await;
    assert_eq!(location(&resp), "/account?error=password_short#password");

    let resp = first
        .post_form(
            "/account/password",
            &[
                ("current_password", PASSWORD),
                ("password", new_password),
                ("password_confirm", new_password),
            ],
        )
        .await;
    assert_eq!(location(&resp), "/account?notice=password_changed#password");
    let page = first.get("/account?notice=password_changed").await;
    assert!(page.status().is_success(), "this session stays signed in");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("every other session was signed out")
    );
    assert_eq!(
        second.get("/account").await.status(),
        StatusCode::SEE_OTHER,
        "the other session ended"
    );

    let mut third = Browser::new(&server.url);
    assert_eq!(
        location(
            &third
                .post_form("/auth/login", &[("email", &email), ("password", PASSWORD)])
                .await
        ),
        "/login?error=invalid"
    );
    assert_eq!(
        location(
            &third
                .post_form("/auth/login", &[("email", &email), ("password", new_password)])
                .await
        ),
        "/home"
    );
}

#[tokio::test]
async fn csrf_tokens_are_bound_to_their_session() {
    let server = TestServer::start(&[]).await;
    let (mut a, _) = account(&server, "csrf-a").await;
    let (b, _) = account(&server, "csrf-b").await;
    let export = |browser: &Browser, session: String, token: String| {
        let http = browser.http.clone();
        let url = format!("{}/account/export", browser.base);
        async move {
            http.post(url)
                .header("cookie", format!("nv_session={session}; nv_csrf={token}"))
                .header("x-csrf-token", token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (a_session, a_token) = (a.cookie("nv_session").unwrap(), a.cookie("nv_csrf").unwrap());
    let (b_session, b_token) = (b.cookie("nv_session").unwrap(), b.cookie("nv_csrf").unwrap());
    assert_eq!(
        export(&b, b_session.clone(), b_token.clone()).await,
        StatusCode::OK,
        "the genuine pair works"
    );
    // another session's token, planted in both cookie and header, is refused
    assert_eq!(
        export(&b, b_session.clone(), a_token.clone()).await,
        StatusCode::FORBIDDEN
    );
    // a visitor's token, or the plain random token of old, is refused for a session
    let mut visitor = Browser::new(&server.url);
    visitor.get("/login").await;
    assert_eq!(
        export(&b, b_session.clone(), visitor.cookie("nv_csrf").unwrap()).await,
        StatusCode::FORBIDDEN
    );
    let plain = "x".repeat(43);
    assert_eq!(export(&b, b_session.clone(), plain).await, StatusCode::FORBIDDEN);
    // a forged signature
    let (random, sig) = b_token.split_once('.').unwrap();
    let flipped = format!("{random}.{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    assert_eq!(export(&b, b_session.clone(), flipped).await, StatusCode::FORBIDDEN);
    // a token dies with its session
    a.post_form("/auth/logout", &[]).await;
    assert_eq!(export(&a, a_session, a_token.clone()).await, StatusCode::FORBIDDEN);
    // and a page served with a stale token gets a fresh one for its session
    let mut stale = Browser::new(&server.url);
    stale.cookies = vec![
        ("nv_session".into(), b_session.clone()),
        ("nv_csrf".into(), a_token.clone()),
    ];
    stale.get("/home").await;
    let fresh = stale.cookie("nv_csrf").unwrap();
    assert_ne!(fresh, a_token);
    assert_eq!(export(&b, b_session, fresh).await, StatusCode::OK);
}

#[tokio::test]
async fn refusals_without_an_account_are_kept_30_days_only() {
    let server = TestServer::start(&[]).await;
    let db = server.db().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    for (id, at) in [("old", now_ms - 31 * day), ("recent", now_ms - day)] {
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, kind, subject, ip, user_agent) VALUES ($1, $2, 'google_sign_in_failed', 'nonce', '127.0.0.1', 'test')",
        )
        .bind(id)
        .bind(at)
        .execute(&db)
        .await
        .unwrap();
    }
    server::audit::purge_old_refusals(&db, now_ms).await.unwrap();
    let left: Vec<String> = sqlx::query("SELECT id FROM audit_log WHERE user_id IS NULL ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("id"))
        .collect();
    assert_eq!(left, vec!["recent".to_string()]);
}
