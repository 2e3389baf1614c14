//! Google sign-in (OpenID Connect) over real HTTP: the real server binary against a real
//! OpenID provider on loopback (`end2end/oidc-provider.mjs`, npm `oauth2-mock-server`),
//! whose ID tokens each test shapes into a scenario.

mod common;

use common::account_kit::{account, audit_kinds, user_id};
use common::oidc::{OidcProvider, callback_path, identities, provider_redirect};
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

        // a visitor's sign-in
        let mut b = Browser::new(&server.url);
        let resp = google_sign_in(&mut b).await;
        assert!(resp.status().is_client_error(), "{scenario}: {}", resp.status());
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
    let replay = b.get(&path).await;
    assert_eq!(replay.status(), 400, "a replayed code and state");
    assert!(!sets_session(&replay));

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
    let mut visitor = Browser::new(&server.url);
    let resp = google_sign_in(&mut visitor).await;
    assert_eq!(resp.status(), 409);
    assert!(!sets_session(&resp));
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
