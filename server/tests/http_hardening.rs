//! HTTP hardening (server/src/web/headers.rs, rate_limit.rs): the security headers and the
//! cache rule on every kind of response (HTML, JSON, static files, errors), the CSP nonce
//! on the page's inline scripts, visitors sent to sign in and back, the per-account 429
//! limits with `Retry-After`, and the body limit of the JSON routes.

mod common;

use common::upload_kit::*;
use common::{Browser, TestServer, assert_hardened, cache_control, location};
use reqwest::StatusCode;

/// The CSP nonce of a response, and whether every inline script of its page carries it.
async fn nonce_on_every_script(resp: reqwest::Response) -> (String, bool) {
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_string();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await.unwrap();
    let scripts: Vec<&str> = body
        .split("<script")
        .skip(1)
        .map(|s| s.split('>').next().unwrap_or(""))
        .collect();
    let all = !scripts.is_empty()
        && scripts
            .iter()
            .all(|attrs| attrs.contains(&format!("nonce=\"{nonce}\"")));
    (nonce, all)
}

/// The hydration script's name from `hash.txt` beside the binary (written by build.sh).
fn hashed_script() -> Option<String> {
    let hashes = std::path::Path::new(env!("CARGO_BIN_EXE_neurovol")).with_file_name("hash.txt");
    let text = std::fs::read_to_string(hashes).ok()?;
    let js = text.lines().find_map(|l| l.strip_prefix("js:"))?.trim().to_string();
    Some(format!("/pkg/neurovol.{js}.js"))
}

#[tokio::test]
async fn every_response_is_hardened_and_only_hashed_files_are_cached() {
    let server = TestServer::start(&[]).await;
    let mut visitor = Browser::new(&server.url);
    for path in [
        "/",
        "/login",
        "/signup",
        "/privacy",
        "/no-such-page",
        "/robots.txt",
        "/deid-worker.js",
    ] {
        let resp = visitor.get(path).await;
        assert_hardened(&resp, path);
        assert_eq!(cache_control(&resp), "no-store", "{path}");
    }
    // each page's inline scripts carry a fresh nonce
    let (first, all) = nonce_on_every_script(visitor.get("/login").await).await;
    assert!(all && first.len() >= 32, "every inline script has the nonce {first}");
    let (second, _) = nonce_on_every_script(visitor.get("/login").await).await;
    assert_ne!(first, second, "a nonce per response");

    // content-hashed static files are immutable (the test command builds the site first)
    let script = hashed_script().expect("hash.txt beside the binary (scripts/build.sh writes it)");
    let resp = visitor.get(&script).await;
    assert_eq!(resp.status(), StatusCode::OK, "{script}");
    assert_hardened(&resp, &script);
    assert_eq!(cache_control(&resp), "public, max-age=31536000, immutable");

    // signed in: pages and JSON answers are never stored
    let mut b = signed_in(&server).await;
    let (st, done) = upload(&b, &small_head(), 8 << 20, None).await;
    assert_eq!(st, StatusCode::CREATED, "{done}");
    let scan = done["scan_id"].as_str().unwrap().to_string();
    for path in ["/home".to_string(), "/upload".to_string(), format!("/scans/{scan}")] {
        let resp = b.get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_hardened(&resp, &path);
        assert_eq!(cache_control(&resp), "no-store", "{path}");
    }
    // a download of the scan's own file: never stored either
    let download = format!("/scans/{scan}/files/{}", app::scans_api::ScanFile::Archive.file_name());
    let resp = b.get(&download).await;
    assert_eq!(resp.status(), StatusCode::OK, "{download}");
    assert_hardened(&resp, &download);
    assert_eq!(cache_control(&resp), "no-store", "{download}");
    let resp = b
        .http
        .get(format!("{}/uploads/{}", b.base, "0".repeat(32)))
        .header("cookie", cookies(&b))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_hardened(&resp, "JSON error");
    assert_eq!(cache_control(&resp), "no-store");
    // HSTS only where the public URL is https
    assert!(
        visitor
            .get("/")
            .await
            .headers()
            .get("strict-transport-security")
            .is_none()
    );
}

#[tokio::test]
async fn https_public_url_adds_hsts() {
    let server = TestServer::start(&[("NEUROVOL_PUBLIC_URL", "https://neurovol.example")]).await;
    let resp = Browser::new(&server.url).get("/").await;
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=63072000; includeSubDomains"
    );
}

#[tokio::test]
async fn visitors_are_sent_to_sign_in_and_come_back_to_a_local_page_only() {
    let server = TestServer::start(&[]).await;
    let mut visitor = Browser::new(&server.url);
    let scan_page = format!("/scans/{}", "a".repeat(32));
    for path in ["/home", "/upload", scan_page.as_str()] {
        let resp = visitor.get(path).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&resp), format!("/login?next={path}"));
        assert_hardened(&resp, path);
    }
    // the sign-in page carries next into its form
    let page = visitor
        .get(&format!("/login?next={scan_page}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("name=\"next\" value=\"{scan_page}\"")), "{page}");
    let page = visitor.get("/login?next=//evil.example/x").await.text().await.unwrap();
    assert!(!page.contains("name=\"next\""), "a foreign next is dropped");

    let email = common::unique_email("next");
    let mut b = Browser::new(&server.url);
    common::sign_up(&mut b, &email).await;
    let resp = b.post_form("/auth/logout", &[]).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    for (next, lands) in [
        (scan_page.as_str(), scan_page.as_str()),
        ("//evil.example/x", "/home"),
        ("https://evil.example/", "/home"),
        ("/\\evil.example", "/home"),
    ] {
        let resp = b
            .post_form(
                "/auth/login",
                &[("email", &email), ("password", common::PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(location(&resp), lands, "next {next}");
        b.post_form("/auth/logout", &[]).await;
    }
    // a failed sign-in keeps a safe next for the next try
    let resp = b
        .post_form(
            "/auth/login",
            &[
                ("email", &email),
                ("password", "wrong password 123"),
                ("next", "/upload"),
            ],
        )
        .await;
    assert_eq!(location(&resp), "/login?error=invalid&next=/upload");
}

#[tokio::test]
async fn upload_creation_and_chunks_are_rate_limited_per_account() {
    let server = TestServer::start(&[
        ("NEUROVOL_UPLOAD_CREATES_PER_HOUR", "2"),
        ("NEUROVOL_UPLOAD_CHUNKS_PER_MINUTE", "3"),
    ])
    .await;
    let b = signed_in(&server).await;
    let chunk = 64 * 1024;
    let (st, first) = create(&b, 4 * chunk, chunk, None).await;
    assert_eq!(st, StatusCode::CREATED, "{first}");
    let (st, _) = create(&b, chunk, chunk, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let resp = b
        .http
        .post(format!("{}/uploads", b.base))
        .header("cookie", cookies(&b))
        .header("x-csrf-token", csrf(&b))
        .json(&serde_json::json!({ "size": chunk, "chunk_size": chunk }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_hardened(&resp, "429");
    let (_, v) = json(resp).await;
    assert_eq!(v["code"], "rate_limited");

    // another account is counted apart
    let other = signed_in(&server).await;
    assert_eq!(create(&other, chunk, chunk, None).await.0, StatusCode::CREATED);

    let id = first["id"].as_str().unwrap();
    let bytes = vec![0u8; chunk];
    for i in 0..3 {
        assert_eq!(put_chunk(&b, id, i, &bytes).await.0, StatusCode::OK, "chunk {i}");
    }
    let (st, v) = put_chunk(&b, id, 3, &bytes).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["code"], "rate_limited");
}

#[tokio::test]
async fn json_bodies_are_limited() {
    let server = TestServer::start(&[]).await;
    let b = signed_in(&server).await;
    let big = serde_json::json!({ "size": 1000, "padding": "x".repeat(100 * 1024) });
    let (st, _) = create_with(&b, &big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
}
