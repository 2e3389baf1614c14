//! Accounts over real HTTP against the real server binary (SQLite, or PostgreSQL when
//! NEUROVOL_TEST_DATABASE_URL is set).

mod common;

use common::*;

#[tokio::test]
async fn pages_render_and_issue_a_csrf_cookie() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);

    // the hydration script under its content-hashed name when the build wrote hash.txt
    let hashes = std::path::Path::new(env!("CARGO_BIN_EXE_neurovol")).with_file_name("hash.txt");
    let script = match std::fs::read_to_string(&hashes) {
        Ok(text) => {
            let js = text
                .lines()
                .find_map(|l| l.strip_prefix("js:"))
                .expect("hash.txt names the js file")
                .trim();
            format!("/pkg/neurovol.{js}.js")
        }
        Err(_) => "/pkg/neurovol.js".to_string(),
    };
    for (path, needle) in [
        ("/", "Your brain MRI, measured."),
        ("/login", "Log in"),
        ("/signup", "Create your account"),
        ("/privacy", "PatientBirthDate"),
    ] {
        let resp = b.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert!(resp.headers().contains_key("x-request-id"), "{path} has a request id");
        let body = resp.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle:?}");
        assert!(body.contains(&script), "{path} loads the hydration script {script}");
    }
    assert_eq!(b.get("/no-such-page").await.status(), 404);

    let mut fresh = Browser::new(&server.url);
    let resp = fresh.get("/login").await;
    let line = set_cookie_line(&resp, "nv_csrf").expect("csrf cookie issued");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(line.contains(flag), "csrf cookie lacks {flag}: {line}");
    }
    assert!(!line.contains("Secure"), "no Secure flag over plain http: {line}");
    let token = fresh.cookie("nv_csrf").unwrap();
    let body = resp.text().await.unwrap();
    assert!(
        body.contains(&format!("name=\"csrf_token\" value=\"{token}\"")),
        "login form embeds the cookie's token"
    );
}

#[tokio::test]
async fn sign_up_sets_a_hardened_session_cookie() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("flags");
    b.get("/signup").await;
    let before = b.cookie("nv_csrf").unwrap();
    let resp = sign_up(&mut b, &email).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/home");
    let line = set_cookie_line(&resp, "nv_session").expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(line.contains(flag), "session cookie lacks {flag}: {line}");
    }
    assert!(!line.contains("Secure"));
    assert_ne!(b.cookie("nv_csrf").unwrap(), before, "CSRF token rotates at sign-in");

    let home = b.get("/home").await.text().await.unwrap();
    assert!(home.contains("No scans yet") && home.contains(&email));

    // Behind HTTPS every cookie is Secure.
    let tls = TestServer::start(&[("NEUROVOL_PUBLIC_URL", "https://neurovol.example")]).await;
    let mut b = Browser::new(&tls.url);
    let resp = b.get("/").await;
    assert!(set_cookie_line(&resp, "nv_csrf").unwrap().contains("; Secure"));
    let resp = sign_up(&mut b, &unique_email("tls")).await;
    assert_eq!(resp.status(), 303);
    assert!(set_cookie_line(&resp, "nv_session").unwrap().contains("; Secure"));
}

#[tokio::test]
async fn forged_requests_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("csrf");
    assert_eq!(sign_up(&mut b, &email).await.status(), 303);
    let token = b.cookie("nv_csrf").unwrap();
    let logout: &[(&str, &str)] = &[];

    // No token, a wrong token, a token in a body that is not a form, a foreign Origin.
    let resp = b.post_raw("/auth/logout", logout, &[]).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("refused"));
    assert_eq!(
        b.post_raw("/auth/logout", &[("csrf_token", "x".repeat(43).as_str())], &[])
            .await
            .status(),
        403
    );
    assert_eq!(
        b.post_raw(
            "/auth/logout",
            &[("csrf_token", &token)],
            &[("origin", "https://evil.example")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        b.post_raw(
            "/auth/logout",
            &[("csrf_token", &token)],
            &[("sec-fetch-site", "cross-site")]
        )
        .await
        .status(),
        403
    );
    let resp = b
        .http
        .post(format!("{}/auth/logout", server.url))
        .header(
            "cookie",
            format!("nv_csrf={token}; nv_session={}", b.cookie("nv_session").unwrap()),
        )
        .header("content-type", "application/json")
        .body(format!("{{\"csrf_token\":\"{token}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Server functions are state-changing endpoints too.
    let resp = b.post_raw("/api/anything", logout, &[]).await;
    assert_eq!(resp.status(), 403);

    // None of that signed the user out.
    assert!(b.get("/home").await.text().await.unwrap().contains(&email));

    // The genuine request (token in the header, as scripts send it) works.
    let resp = b.post_raw("/auth/logout", logout, &[("x-csrf-token", &token)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/login?notice=signed_out");
    assert!(set_cookie_line(&resp, "nv_session").unwrap().contains("Max-Age=0"));
    assert_eq!(
        location(&b.get("/home").await),
        "/login?next=/home",
        "signed out: sent to sign in"
    );
}

#[tokio::test]
async fn log_in_and_out() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("login");
    sign_up(&mut b, &email).await;
    let old_session = b.cookie("nv_session").unwrap();
    let resp = b.post_form("/auth/logout", &[]).await;
    assert_eq!(resp.status(), 303);

    // The old session token is dead server-side, not only forgotten by the browser.
    let mut replay = Browser::new(&server.url);
    replay.cookies.push(("nv_session".into(), old_session));
    assert_eq!(
        location(&replay.get("/home").await),
        "/login?next=/home",
        "the old session is dead"
    );

    let resp = b
        .post_form(
            "/auth/login",
            &[("email", &email.to_uppercase()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/home");
    assert!(b.get("/home").await.text().await.unwrap().contains(&email));

    // Duplicate sign-up is refused without creating anything.
    let mut other = Browser::new(&server.url);
    let resp = sign_up(&mut other, &email).await;
    assert_eq!(location(&resp), "/signup?error=email_unavailable");
    assert!(other.cookie("nv_session").is_none());
}

#[tokio::test]
async fn sign_up_validation_gives_specific_codes() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    let cases: &[(&str, &str, &str, &str)] = &[
        ("not-an-email", PASSWORD, PASSWORD, "email_invalid"),
        ("a@example.org", "short", "short", "password_short"),
        ("a@example.org", PASSWORD, "different password!", "password_mismatch"),
        ("a@example.org", "password1234", "password1234", "password_common"),
        (
            "margaret@example.org",
            "margaret-is-my-name",
            "margaret-is-my-name",
            "password_email",
        ),
    ];
    for (email, pw, confirm, code) in cases {
        let resp = b
            .post_form(
                "/auth/signup",
                &[("email", email), ("password", pw), ("password_confirm", confirm)],
            )
            .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(location(&resp), format!("/signup?error={code}"), "{email}");
        assert!(b.cookie("nv_session").is_none());
    }
    let page = b.get("/signup?error=password_short").await.text().await.unwrap();
    assert!(page.contains("Password rule not met: at least 12 characters."));
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_identical() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("enum");
    sign_up(&mut b, &email).await;
    b.post_form("/auth/logout", &[]).await;

    let wrong = b
        .post_form("/auth/login", &[("email", &email), ("password", "wrong password 123")])
        .await;
    let unknown = b
        .post_form(
            "/auth/login",
            &[("email", &unique_email("nobody")), ("password", "wrong password 123")],
        )
        .await;
    assert_eq!(wrong.status(), unknown.status());
    assert_eq!(location(&wrong), "/login?error=invalid");
    assert_eq!(location(&wrong), location(&unknown));
    let strip = |r: &reqwest::Response| {
        let mut h: Vec<(String, String)> = r
            .headers()
            .iter()
            // per response by design: the date, the request id and the CSP nonce
            .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id" | "content-security-policy"))
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        h.sort();
        h
    };
    assert_eq!(strip(&wrong), strip(&unknown));
    assert_eq!(wrong.bytes().await.unwrap(), unknown.bytes().await.unwrap());
}

#[tokio::test]
async fn sign_in_is_throttled_per_account_and_per_ip() {
    let server = TestServer::start(&[
        ("NEUROVOL_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"),
        ("NEUROVOL_LOGIN_MAX_FAILURES_PER_IP", "6"),
    ])
    .await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("throttle");
    sign_up(&mut b, &email).await;
    b.post_form("/auth/logout", &[]).await;

    for _ in 0..3 {
        let resp = b
            .post_form("/auth/login", &[("email", &email), ("password", "wrong password 123")])
            .await;
        assert_eq!(location(&resp), "/login?error=invalid");
    }
    // Locked now, even with the right password.
    let resp = b
        .post_form("/auth/login", &[("email", &email), ("password", PASSWORD)])
        .await;
    assert_eq!(location(&resp), "/login?error=throttled");
    assert!(resp.headers().contains_key("retry-after"));
    assert!(b.cookie("nv_session").is_none());
    let page = b.get("/login?error=throttled").await.text().await.unwrap();
    assert!(page.contains("Too many sign-in attempts"));

    // Per IP: three more failures on other (unknown) accounts reach the IP limit of 6,
    // after which even a fresh account is refused from this address.
    for _ in 0..3 {
        let resp = b
            .post_form(
                "/auth/login",
                &[("email", &unique_email("spray")), ("password", "wrong password 123")],
            )
            .await;
        assert_eq!(location(&resp), "/login?error=invalid");
    }
    let mut c = Browser::new(&server.url);
    let other = unique_email("other");
    // Sign-up is not throttled, log-in from this IP is.
    assert_eq!(sign_up(&mut c, &other).await.status(), 303);
    c.post_form("/auth/logout", &[]).await;
    let resp = c
        .post_form("/auth/login", &[("email", &other), ("password", PASSWORD)])
        .await;
    assert_eq!(location(&resp), "/login?error=throttled");
}

#[tokio::test]
async fn logs_hold_no_email_or_password() {
    let server = TestServer::start(&[]).await;
    let mut b = Browser::new(&server.url);
    let email = unique_email("logcanary");
    sign_up(&mut b, &email).await;
    b.post_form("/auth/logout", &[]).await;
    b.post_form("/auth/login", &[("email", &email), ("password", "wrong password 123")])
        .await;
    b.post_form("/auth/login", &[("email", &email), ("password", PASSWORD)])
        .await;
    let logs = server.logs();
    assert!(logs.contains("signed in"), "logs record the event: {logs}");
    assert!(logs.contains("request_id="), "logs carry request ids");
    assert!(
        !logs.contains(&email) && !logs.contains("logcanary"),
        "email leaked into logs"
    );
    assert!(
        !logs.contains(PASSWORD) && !logs.contains("granite"),
        "password leaked into logs"
    );
}
