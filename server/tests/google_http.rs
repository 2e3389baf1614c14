//! Google sign-in (OpenID Connect) over real HTTP: the real server binary against a real
//! OpenID provider on loopback (`end2end/oidc-provider.mjs`, npm `oauth2-mock-server`),
//! whose ID tokens each test shapes into a scenario.

mod common;

use common::account_kit::{account, audit_kinds, scan_status, upload_scan, user_id};
use common::oidc::{OidcProvider, callback_path, identities, provider_redirect};
use common::upload_kit::small_head;
use common::*;
use sqlx::Row;

async fn google_server(provider: &OidcProvider) -> TestServer {
    let env = provider.env();
    TestServer::start(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await
}

async fn google_sign_in(b: &mut Browser) -> reqwest::Response {
    common::oidc::sign_in(b).await
}

async fn google_link(b: &mut Browser) -> reqwest::Response {
    common::oidc::link(b, PASSWORD).await
}

fn sets_session(resp: &reqwest::Response) -> bool {
    set_cookie_line(resp, "nv_session").is_some_and(|l| !l.contains("Max-Age=0"))
}

/// The content-free refusals that concern no account (visitors' refused Google sign-ins):
/// (failed check, IP), in no particular order.
async fn refusals_of_no_account(db: &sqlx::AnyPool) -> Vec<(String, String)> {
    sqlx::query(
        "SELECT subject, ip, user_agent, at_ms FROM audit_log WHERE user_id IS NULL AND kind = 'google_sign_in_failed'",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        assert!(r.get::<i64, _>("at_ms") > 0, "the refusal's time is kept");
        (r.get("subject"), r.get("ip"))
    })
    .collect()
}

/// Asserts that exactly one content-free refusal of no account was added since `before`,
/// naming `check` as the failed check and the client's IP.
async fn assert_one_refusal_of_no_account(db: &sqlx::AnyPool, before: &[(String, String)], check: &str, what: &str) {
    let after = refusals_of_no_account(db).await;
    assert_eq!(after.len(), before.len() + 1, "{what}: one audit row of no account");
    let count = |rows: &[(String, String)]| rows.iter().filter(|(s, _)| s == check).count();
    assert_eq!(
        count(&after),
        count(before) + 1,
        "{what}: the row names the {check} check"
    );
    assert!(
        after.iter().all(|(_, ip)| ip == "127.0.0.1"),
        "{what}: the client's IP is kept: {after:?}"
    );
}

async fn flows_left(db: &sqlx::AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM oidc_flows")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_google_sign_in_makes_an_account_keyed_by_issuer_and_subject() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let email = unique_email("google");
    provider.scenario("ok", "sub-alpha", &email).await;

    let mut b = Browser::new(&server.url);
    let resp = google_sign_in(&mut b).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/home");
    assert!(sets_session(&resp), "signed in");
    assert!(
        set_cookie_line(&resp, "nv_oidc").is_some_and(|l| l.contains("Max-Age=0")),
        "the flow cookie is cleared"
    );
    assert_eq!(b.get("/home").await.status(), 200);
    let user = user_id(&db, &email).await;
    assert_eq!(
        identities(&db, &user).await,
        vec![(provider.issuer.clone(), "sub-alpha".to_string())]
    );
    let mut kinds = audit_kinds(&db, &user).await;
    kinds.sort();
    assert_eq!(kinds, ["account_created", "google_sign_in_succeeded"]);
    assert_eq!(flows_left(&db).await, 0, "the flow row is one-time");

    // the same subject with another email is the same account: never keyed by email
    provider.scenario("ok", "sub-alpha", &unique_email("renamed")).await;
    let mut again = Browser::new(&server.url);
    let resp = google_sign_in(&mut again).await;
    assert_eq!(resp.status(), 303);
    assert!(sets_session(&resp));
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(users, 1);

    // an account made through Google has no password
    let mut pw = Browser::new(&server.url);
    let resp = pw
        .post_form("/auth/login", &[("email", &email), ("password", "")])
        .await;
    assert!(location(&resp).starts_with("/login?error="), "{}", location(&resp));
    assert!(!sets_session(&resp));
}

/// Every refused ID token: a 4xx, no session, nothing linked, and (for a signed-in
/// account's link) an audit row.
#[tokio::test]
async fn every_bad_id_token_is_refused() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let (mut owner, owner_email) = account(&server, "linker").await;
    let owner_id = user_id(&db, &owner_email).await;

    // each scenario of oidc-provider.mjs, and the check that must refuse it
    for (scenario, check) in [
        ("wrong_aud", "audience"),
        ("extra_aud", "audience"),
        ("wrong_nonce", "nonce"),
        ("missing_nonce", "nonce"),
        ("expired", "expired"),
        ("wrong_issuer", "issuer"),
        ("flipped_signature", "signature"),
        ("unknown_kid", "unknown_kid"),
        ("alg_none", "algorithm"),
        ("hs256", "algorithm"),
        ("email_unverified", "email_unverified"),
    ] {
        let email = unique_email(scenario);
        provider.scenario(scenario, &format!("sub-{scenario}"), &email).await;

        // a visitor's sign-in: refused, and written as a content-free row of no account
        let before = refusals_of_no_account(&db).await;
        let mut b = Browser::new(&server.url);
        let resp = google_sign_in(&mut b).await;
        assert!(resp.status().is_client_error(), "{scenario}: {}", resp.status());
        assert_one_refusal_of_no_account(&db, &before, check, scenario).await;
        assert!(!sets_session(&resp), "{scenario}: no session");
        assert!(b.cookie("nv_session").is_none(), "{scenario}");
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(users, 0, "{scenario}: no account made");

        // a signed-in account's link: refused, written to its audit log
        let before = audit_kinds(&db, &owner_id).await.len();
        let resp = google_link(&mut owner).await;
        assert!(resp.status().is_client_error(), "{scenario} (link): {}", resp.status());
        assert!(!sets_session(&resp), "{scenario} (link): no new session");
        assert!(
            identities(&db, &owner_id).await.is_empty(),
            "{scenario}: nothing linked"
        );
        let kinds = audit_kinds(&db, &owner_id).await;
        assert_eq!(kinds.len(), before + 1, "{scenario}: {kinds:?}");
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("google_sign_in_failed"),
            "{scenario}"
        );
        let subject: String = sqlx::query_scalar(
            "SELECT subject FROM audit_log WHERE user_id = $1 AND kind = 'google_sign_in_failed' \
             ORDER BY at_ms DESC, id LIMIT 1",
        )
        .bind(&owner_id)
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(subject, check, "{scenario} is refused by the {check} check");
    }
    // the refusals never logged an email
    assert!(!server.logs().contains("@example.org"));
}

#[tokio::test]
async fn replayed_forged_and_cookieless_callbacks_fail_before_the_token_call() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let (mut owner, owner_email) = account(&server, "replay").await;
    let owner_id = user_id(&db, &owner_email).await;
    provider.scenario("ok", "sub-replay", &unique_email("replay-g")).await;

    // a replay of a callback that worked
    let mut b = Browser::new(&server.url);
    let start = b.post_form("/auth/google", &[]).await;
    let path = callback_path(&provider_redirect(&b, &start).await, &server.url);
    let flow_cookie = b.cookie("nv_oidc").unwrap();
    assert_eq!(b.get(&path).await.status(), 303);
    b.cookies.push(("nv_oidc".into(), flow_cookie));
    b.cookies.retain(|(k, _)| k != "nv_session");
    let before = refusals_of_no_account(&db).await;
    let replay = b.get(&path).await;
    assert_eq!(replay.status(), 400, "a replayed code and state");
    assert!(!sets_session(&replay));
    assert_one_refusal_of_no_account(&db, &before, "unknown_flow", "a visitor's replay").await;

    // a visitor's forged state and cookieless callback: refused, each a row of no account
    for case in ["state_mismatch", "no_flow_cookie"] {
        let mut v = Browser::new(&server.url);
        let start = v.post_form("/auth/google", &[]).await;
        let mut path = callback_path(&provider_redirect(&v, &start).await, &server.url);
        match case {
            "state_mismatch" => path = path.replace("state=", "state=x"),
            _ => v.cookies.retain(|(k, _)| k != "nv_oidc"),
        }
        let before = refusals_of_no_account(&db).await;
        let resp = v.get(&path).await;
        assert_eq!(resp.status(), 400, "{case}");
        assert!(!sets_session(&resp), "{case}");
        assert_one_refusal_of_no_account(&db, &before, "unknown_flow", case).await;
    }
    // the no-cookie flow was used up; the forged one expires unused
    sqlx::query("DELETE FROM oidc_flows").execute(&db).await.unwrap();

    // the replay, a forged state and a missing flow cookie, in a signed-in browser: each
    // refused with the flow-lookup answer (400, before any token call) and audited
    provider
        .scenario("ok", "sub-replay-link", &unique_email("replay-l"))
        .await;
    let exchanges = |logs: &str| logs.matches("token exchange refused").count();
    let before_exchanges = exchanges(&server.logs());
    for case in ["state_mismatch", "no_flow_cookie", "replay"] {
        let start = owner.post_form("/account/google/link", &[("password", PASSWORD)]).await;
        let callback = provider_redirect(&owner, &start).await;
        let mut path = callback_path(&callback, &server.url);
        match case {
            "state_mismatch" => path = path.replace("state=", "state=x"),
            "no_flow_cookie" => owner.cookies.retain(|(k, _)| k != "nv_oidc"),
            _ => {
                // the real callback first; then the same again
                let resp = owner.get(&path).await;
                assert_eq!(resp.status(), 303, "the link works once");
                assert_eq!(identities(&db, &owner_id).await.len(), 1);
                let kept = owner.cookie("nv_session");
                owner.cookies.push(("nv_oidc".into(), "any".into()));
                assert!(kept.is_some());
            }
        }
        let before = audit_kinds(&db, &owner_id).await.len();
        let resp = owner.get(&path).await;
        assert_eq!(resp.status(), 400, "{case}");
        assert!(!sets_session(&resp), "{case}");
        let kinds = audit_kinds(&db, &owner_id).await;
        assert_eq!(kinds.len(), before + 1, "{case}: {kinds:?}");
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("google_sign_in_failed"),
            "{case}"
        );
    }
    assert_eq!(exchanges(&server.logs()), before_exchanges, "no token call was made");
    // each flow was used up, but the one whose state was forged: it expires unused
    assert_eq!(flows_left(&db).await, 1);
}

#[tokio::test]
async fn a_rotated_signing_key_is_accepted_after_the_jwks_refresh() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let email = unique_email("rotate");
    provider.scenario("ok", "sub-rotate", &email).await;
    let mut b = Browser::new(&server.url);
    assert!(sets_session(&google_sign_in(&mut b).await));

    provider.rotate_key().await;
    let mut b = Browser::new(&server.url);
    let resp = google_sign_in(&mut b).await;
    assert_eq!(resp.status(), 303, "signed with the new key");
    assert!(sets_session(&resp));
    assert_eq!(
        server.logs().matches("sign-in provider discovered").count(),
        2,
        "discovered once, then again for the unknown kid"
    );
}

#[tokio::test]
async fn a_password_account_links_google_and_signs_in_with_either() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let (mut b, email) = account(&server, "both").await;
    let user = user_id(&db, &email).await;

    // a Google sign-in with the same (verified) email does not link by itself
    provider.scenario("ok", "sub-both", &email).await;
    let before = refusals_of_no_account(&db).await;
    let mut visitor = Browser::new(&server.url);
    let resp = google_sign_in(&mut visitor).await;
    assert_eq!(resp.status(), 409);
    assert!(!sets_session(&resp));
    assert_one_refusal_of_no_account(&db, &before, "email_taken", "an email taken").await;
    // a row of no account is no account's: not on the page, not in the export
    let page = b.get("/account").await.text().await.unwrap();
    assert!(
        !page.contains("email_taken"),
        "the account page shows no refusal of no account"
    );
    let export = b.post_form("/account/export", &[]).await;
    assert_eq!(export.status(), 200);
    let zip = export.bytes().await.unwrap().to_vec();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("audit_log.json").unwrap(), &mut log).unwrap();
    assert!(!log.contains("email_taken"), "{log}");
    assert!(!log.contains("google_sign_in_failed"), "{log}");
    assert!(resp.text().await.unwrap().contains("Sign in with your password"));
    assert!(identities(&db, &user).await.is_empty());

    // a wrong password links nothing
    let resp = b.post_form("/account/google/link", &[("password", "wrong")]).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/account?error="));
    assert!(b.cookie("nv_oidc").is_none());

    let resp = google_link(&mut b).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/account?notice=google_linked#methods");
    assert_eq!(identities(&db, &user).await.len(), 1);

    // either way in reaches the same account
    let mut g = Browser::new(&server.url);
    let resp = google_sign_in(&mut g).await;
    assert_eq!(resp.status(), 303);
    assert!(sets_session(&resp));
    let mut p = Browser::new(&server.url);
    let resp = p
        .post_form("/auth/login", &[("email", &email), ("password", PASSWORD)])
        .await;
    assert!(sets_session(&resp));
    let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = $1")
        .bind(&user)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sessions, 3);

    // unlinking (password again) leaves the password
    let resp = b.post_form("/account/google/unlink", &[("password", PASSWORD)]).await;
    assert_eq!(location(&resp), "/account?notice=google_unlinked#methods");
    assert!(identities(&db, &user).await.is_empty());
    let kinds = audit_kinds(&db, &user).await;
    for kind in ["google_linked", "google_sign_in_succeeded", "google_unlinked"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }
}

#[tokio::test]
async fn a_google_only_account_cannot_unlink_its_one_way_in() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let email = unique_email("only");
    provider.scenario("ok", "sub-only", &email).await;
    let mut b = Browser::new(&server.url);
    assert!(sets_session(&google_sign_in(&mut b).await));
    let user = user_id(&db, &email).await;
    // it has no password to give, so the unlink is refused and the identity stays
    let resp = b.post_form("/account/google/unlink", &[("password", "")]).await;
    assert!(location(&resp).starts_with("/account?error="));
    assert_eq!(identities(&db, &user).await.len(), 1);
}

#[tokio::test]
async fn without_google_settings_its_routes_answer_not_found() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    assert_eq!(b.post_form("/auth/google", &[]).await.status(), 404);
    assert_eq!(b.get("/auth/google/callback?state=a&code=b").await.status(), 404);
    sign_up(&mut b, &unique_email("nogoogle")).await;
    assert_eq!(
        b.post_form("/account/google/link", &[("password", PASSWORD)])
            .await
            .status(),
        404
    );
    assert_eq!(
        b.post_form("/account/google/unlink", &[("password", PASSWORD)])
            .await
            .status(),
        404
    );
}

/// Confirms the deletion of `b`'s account through a fresh Google sign-in: the callback's answer.
async fn delete_with_google(b: &mut Browser) -> reqwest::Response {
    let start = b.post_form("/account/delete/google", &[("understood", "on")]).await;
    let callback = provider_redirect(b, &start).await;
    let path = callback_path(&callback, &b.base);
    b.get(&path).await
}

#[tokio::test]
async fn a_google_only_account_is_deleted_after_a_fresh_sign_in_with_the_same_subject() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let email = unique_email("erase");
    provider.scenario("ok", "sub-erase", &email).await;
    let mut b = Browser::new(&server.url);
    assert!(sets_session(&google_sign_in(&mut b).await));
    let first = user_id(&db, &email).await;

    // another Google account cannot confirm it
    provider.scenario("ok", "sub-someone-else", &unique_email("else")).await;
    let resp = delete_with_google(&mut b).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(identities(&db, &first).await.len(), 1, "nothing deleted");
    let subject: String =
        sqlx::query("SELECT subject FROM audit_log WHERE user_id = $1 AND kind = 'google_sign_in_failed'")
            .bind(&first)
            .fetch_one(&db)
            .await
            .unwrap()
            .get(0);
    assert_eq!(subject, "other_subject");

    // the same subject deletes the account at once and signs the browser out
    provider.scenario("ok", "sub-erase", &email).await;
    let resp = delete_with_google(&mut b).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/deleted/"), "{}", location(&resp));
    assert!(
        set_cookie_line(&resp, "nv_session").is_some_and(|l| l.contains("Max-Age=0")),
        "signed out"
    );
    for (table, sql) in [
        ("users", "SELECT COUNT(*) FROM users WHERE id = $1"),
        (
            "oidc_identities",
            "SELECT COUNT(*) FROM oidc_identities WHERE user_id = $1",
        ),
        ("sessions", "SELECT COUNT(*) FROM sessions WHERE user_id = $1"),
        ("audit_log", "SELECT COUNT(*) FROM audit_log WHERE user_id = $1"),
        ("oidc_flows", "SELECT COUNT(*) FROM oidc_flows WHERE user_id = $1"),
    ] {
        let n: i64 = sqlx::query_scalar(sql).bind(&first).fetch_one(&db).await.unwrap();
        assert_eq!(n, 0, "{table} keeps nothing of the deleted account");
    }

    // a second sign-in makes a fresh, empty account
    let mut again = Browser::new(&server.url);
    assert!(sets_session(&google_sign_in(&mut again).await));
    let second = user_id(&db, &email).await;
    assert_ne!(first, second);
    let mut kinds = audit_kinds(&db, &second).await;
    kinds.sort();
    assert_eq!(kinds, ["account_created", "google_sign_in_succeeded"]);
    let scans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scans WHERE user_id = $1")
        .bind(&second)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(scans, 0);
}

/// Starts the Google confirmation of `scan`'s deletion in `b`: the start's answer.
async fn start_scan_deletion(b: &mut Browser, scan: &str) -> reqwest::Response {
    b.post_form(&format!("/scans/{scan}/delete/google"), &[]).await
}

/// Confirms the deletion of `scan` through a fresh Google sign-in: the callback's answer.
async fn delete_scan_with_google(b: &mut Browser, scan: &str) -> reqwest::Response {
    let start = start_scan_deletion(b, scan).await;
    let callback = provider_redirect(b, &start).await;
    let path = callback_path(&callback, &b.base);
    b.get(&path).await
}

async fn scan_rows(db: &sqlx::AnyPool, scan: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM scans WHERE id = $1")
        .bind(scan)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_google_only_account_deletes_a_scan_after_a_fresh_sign_in_with_the_same_subject() {
    let provider = OidcProvider::start();
    let server = google_server(&provider).await;
    let db = server.db().await;
    let email = unique_email("scan-erase");
    provider.scenario("ok", "sub-scan-erase", &email).await;
    let mut b = Browser::new(&server.url);
    assert!(sets_session(&google_sign_in(&mut b).await));
    let user = user_id(&db, &email).await;
    let scan = upload_scan(&b, &small_head()).await;
    let (other, _) = account(&server, "scan-other").await;
    let theirs = upload_scan(&other, &small_head()).await;

    // the scan page asks for Google, not for a password the account does not have
    let page = b.get(&format!("/scans/{scan}")).await.text().await.unwrap();
    assert!(page.contains("Confirm with Google and delete"), "{page}");
    assert!(page.contains(&format!("/scans/{scan}/delete/google")));
    assert!(!page.contains("name=\"password\""), "no password field");
    // a password account's page keeps the password field
    let mut other = other;
    let page = other.get(&format!("/scans/{theirs}")).await.text().await.unwrap();
    assert!(page.contains("name=\"password\""));
    assert!(!page.contains("Confirm with Google and delete"));

    // another account's scan answers exactly like a missing one, and starts no flow
    let missing = hex::encode(rand::random::<[u8; 16]>());
    let for_theirs = start_scan_deletion(&mut b, &theirs).await;
    assert_eq!(for_theirs.status(), 404);
    assert!(set_cookie_line(&for_theirs, "nv_oidc").is_none());
    let for_missing = start_scan_deletion(&mut b, &missing).await;
    assert_eq!(for_missing.status(), 404);
    assert_eq!(for_theirs.text().await.unwrap(), for_missing.text().await.unwrap());
    assert_eq!(flows_left(&db).await, 0);

    // a flow whose scan is not (any more) the account's deletes nothing at its callback, and
    // another account's scan answers there like a missing one too
    let mut answers = Vec::new();
    for target in [&theirs, &missing] {
        provider.scenario("ok", "sub-scan-erase", &email).await;
        let start = start_scan_deletion(&mut b, &scan).await;
        let callback = provider_redirect(&b, &start).await;
        sqlx::query("UPDATE oidc_flows SET scan_id = $1")
            .bind(target.as_str())
            .execute(&db)
            .await
            .unwrap();
        let resp = b.get(&callback_path(&callback, &server.url)).await;
        answers.push((resp.status(), resp.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, 404);
    assert_eq!(
        answers[0], answers[1],
        "another account's scan answers like a missing one"
    );
    assert_eq!(scan_rows(&db, &theirs).await, 1, "the other account's scan stays");
    assert_eq!(scan_rows(&db, &scan).await, 1);

    // another Google account cannot confirm it
    provider.scenario("ok", "sub-someone-else", &unique_email("else")).await;
    let resp = delete_scan_with_google(&mut b, &scan).await;
    assert_eq!(resp.status(), 403);
    assert!(!sets_session(&resp));
    assert_eq!(scan_rows(&db, &scan).await, 1, "nothing deleted");
    let subject: String =
        sqlx::query("SELECT subject FROM audit_log WHERE user_id = $1 AND kind = 'google_sign_in_failed'")
            .bind(&user)
            .fetch_one(&db)
            .await
            .unwrap()
            .get(0);
    assert_eq!(subject, "other_subject");

    // the same subject deletes the scan at once; the account and its session stay
    provider.scenario("ok", "sub-scan-erase", &email).await;
    let resp = delete_scan_with_google(&mut b, &scan).await;
    assert_eq!(resp.status(), 303);
    assert!(location(&resp).starts_with("/deleted/"), "{}", location(&resp));
    assert!(!sets_session(&resp));
    assert_eq!(scan_rows(&db, &scan).await, 0, "the scan is deleted");
    assert!(scan_status(&db, &theirs).await.is_some(), "only the account's own scan");
    assert_eq!(b.get(location(&resp).as_str()).await.status(), 200, "its receipt");
    assert_eq!(b.get("/home").await.status(), 200, "still signed in");
    assert!(audit_kinds(&db, &user).await.iter().any(|k| k == "scan_deleted"));
    assert_eq!(
        identities(&db, &user).await.len(),
        1,
        "the account keeps its Google sign-in"
    );
    assert_eq!(flows_left(&db).await, 0, "every flow was one-time");
}
