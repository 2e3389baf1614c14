//! Isolation, route by route: for every entry of `server::web::routes::ROUTES`, another
//! account's scan, upload or receipt answers exactly like a missing one (same status, same
//! body, same redirect), routes without an id act on the caller's own account only, a
//! visitor gets nothing of anyone, and signed object URLs that are forged, expired or for
//! another key or method are refused. The probe is chosen by the route's method and path:
//! a route added to the table without a probe here fails this test.

mod common;

use std::collections::HashSet;

use common::account_kit::*;
use common::oidc::{OidcProvider, callback_path, identities, provider_redirect};
use common::upload_kit::*;
use common::{Browser, PASSWORD, TestServer, location};
use reqwest::{Method, StatusCode};
use server::web::routes::{Access, Names, ROUTES, Route};

/// An answer, with what differs per request taken out: the id itself, CSP nonces.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    location: String,
    body: String,
}

fn without_nonces(mut s: String) -> String {
    for attr in ["nonce=\"", "crossorigin=\"", "'nonce-"] {
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find(attr) {
            out.push_str(&rest[..i + attr.len()]);
            rest = &rest[i + attr.len()..];
            let end = rest.find(['"', '\'']).unwrap_or(rest.len());
            rest = &rest[end..];
        }
        out.push_str(rest);
        s = out;
    }
    s
}

/// One request as a page or script of the site sends it (cookies, CSRF token); `id` is
/// put into the path for `{id}`/`{key}` and into a server function's query.
async fn call(b: &Browser, route: &Route, id: &str, form: &[(&str, &str)]) -> Answer {
    let path = route
        .path
        .replace("{id}", id)
        .replace("{key}", id)
        .replace("{index}", "0")
        .replace("{name}", "dicom-deidentified.zip");
    let path = match route.names {
        Names::Nothing | Names::Object => path,
        _ if path.starts_with("/api/") => format!("{path}?id={id}"),
        _ => path,
    };
    let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
    let mut req = b
        .http
        .request(method.clone(), format!("{}{path}", b.base))
        .header("cookie", cookies(b));
    if let Some(token) = b.cookie("nv_csrf") {
        req = req.header("x-csrf-token", token);
    }
    if method == Method::PUT {
        req = req
            .header("content-type", "application/octet-stream")
            .body(vec![0u8; 64 * 1024]);
    } else if method == Method::POST {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(common::form_body(form));
    }
    let resp = req.send().await.unwrap();
    // every listed route answers with the security headers and is never cached
    common::assert_hardened(&resp, route.path);
    assert_eq!(
        common::cache_control(&resp),
        "no-store",
        "{} {}",
        route.method,
        route.path
    );
    let status = resp.status();
    let (mut loc, mut body) = (location(&resp), without_nonces(resp.text().await.unwrap()));
    if !id.is_empty() {
        (loc, body) = (loc.replace(id, "{id}"), body.replace(id, "{id}"));
    }
    Answer {
        status,
        location: loc,
        body,
    }
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// B's answer for A's thing equals B's answer for a missing one (and is not a success).
async fn alike(b: &Browser, route: &Route, theirs: &str, form: &[(&str, &str)]) {
    let missing = random_id();
    let for_theirs = call(b, route, theirs, form).await;
    let for_missing = call(b, route, &missing, form).await;
    assert_eq!(
        for_theirs, for_missing,
        "{} {}: another account's id answers unlike a missing one",
        route.method, route.path
    );
    assert!(
        !for_theirs.status.is_success() || for_theirs.body.contains("null") || for_theirs.body.contains("not found"),
        "{} {} answered {:?}",
        route.method,
        route.path,
        for_theirs
    );
}

fn assert_none_of(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} shows another account's {s}");
    }
}

#[tokio::test]
async fn every_route_keeps_each_account_to_itself() {
    let provider = OidcProvider::start();
    let env = provider.env();
    let server = TestServer::start(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    let db = server.db().await;
    let (mut a, a_email) = account(&server, "owner").await;
    let (mut b, b_email) = account(&server, "other").await;
    let visitor = {
        let mut v = Browser::new(&server.url);
        v.get("/login").await;
        v
    };
    let scan = upload_scan(&a, &small_head()).await;
    let deleted = upload_scan(&a, &small_head()).await;
    let receipt = delete_scan(&mut a, &deleted).await;
    let (st, up) = create(&a, 200_000, 64 * 1024, None).await;
    assert_eq!(st, StatusCode::CREATED);
    let upload = up["id"].as_str().unwrap().to_string();
    let a_id = user_id(&db, &a_email).await;
    // A signs in with Google too
    let a_sub = format!("isolation-{}", random_id());
    provider.scenario("ok", &a_sub, &a_email).await;
    assert_eq!(
        common::oidc::link(&mut a, PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let a_identity = identities(&db, &a_id).await;
    assert_eq!(a_identity.len(), 1);
    let keys = scan_keys(&db, &scan).await;
    let a_secrets = vec![
        a_email.clone(),
        a_id.clone(),
        scan.clone(),
        deleted.clone(),
        receipt.clone(),
        upload.clone(),
        keys[0].clone(),
        a_sub.clone(),
    ];

    // the local store's signer, as the server signs (its secret is in the data dir)
    let secret = hex::decode(
        std::fs::read_to_string(server.data_dir.join("secrets/object-url.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let signer = server::storage::UrlSigner::new(secret, &server.url);
    let path_of = |url: &str| url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();

    let mut probed = HashSet::new();
    for route in ROUTES {
        let key = (route.method.as_str(), route.path);
        match key {
            // --- a scan's id in the path (or a server function's query)
            ("GET", "/scans/{id}") | ("GET", "/scans/{id}/report") => {
                alike(&b, route, &scan, &[]).await;
                let own = call(&a, route, &scan, &[]).await;
                assert_eq!(own.status, StatusCode::OK, "the owner sees the scan");
            }
            ("GET", p) if route.names == Names::Scan && p.starts_with("/api/") => {
                alike(&b, route, &scan, &[]).await;
                assert!(
                    call(&a, route, &scan, &[]).await.body.contains("\"status\""),
                    "the owner gets the scan"
                );
            }
            ("POST", "/scans/{id}/retry") => alike(&b, route, &scan, &[]).await,
            ("POST", "/scans/{id}/delete") => {
                alike(&b, route, &scan, &[("password", PASSWORD)]).await;
                assert!(
                    scan_status(&db, &scan).await.is_some(),
                    "another account cannot delete the scan"
                );
            }
            ("POST", "/scans/{id}/delete/google") => {
                // B (no Google sign-in) gets A's scan like a missing one; A's own starts
                // the confirmation at the provider (not followed here)
                alike(&b, route, &scan, &[]).await;
                let own = call(&a, route, &scan, &[]).await;
                assert_eq!(own.status, StatusCode::SEE_OTHER);
                assert!(own.location.starts_with(&provider.issuer), "{own:?}");
                assert!(
                    scan_status(&db, &scan).await.is_some(),
                    "another account cannot delete the scan"
                );
            }
            ("GET", "/scans/{id}/files/{name}") => {
                alike(&b, route, &scan, &[]).await;
                let own = a
                    .http
                    .get(format!("{}/scans/{scan}/files/dicom-deidentified.zip", a.base))
                    .header("cookie", cookies(&a))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(own.status(), StatusCode::OK);
                let stored = std::fs::read(server.data_dir.join("objects").join(&keys[0])).unwrap();
                assert!(
                    own.bytes().await.unwrap() == stored,
                    "the owner downloads the stored archive"
                );
            }
            // the viewer's URLs: the scan is not processed here (pipeline_http checks the
            // owner's viewer); another account's scan answers like a missing one
            ("GET", "/scans/{id}/viewer.json") | ("GET", "/scans/{id}/view/{name}") => {
                alike(&b, route, &scan, &[]).await;
                alike(&a, route, &scan, &[]).await;
            }
            // --- an upload's id
            (_, p) if p.starts_with("/uploads/{id}") => {
                alike(&b, route, &upload, &[]).await;
                assert_eq!(
                    status(&a, &upload).await.0,
                    StatusCode::OK,
                    "the owner's upload is untouched"
                );
            }
            // --- a receipt's id
            ("GET", "/deleted/{id}") => {
                alike(&b, route, &receipt, &[]).await;
                assert_eq!(
                    call(&a, route, &receipt, &[]).await.status,
                    StatusCode::OK,
                    "the owner sees the receipt"
                );
            }
            ("GET", p) if route.names == Names::Receipt && p.starts_with("/api/") => {
                alike(&b, route, &receipt, &[]).await;
                assert!(call(&a, route, &receipt, &[]).await.body.contains("\"scope\""));
            }
            // --- signed object URLs: the signature is the only way in
            ("GET", "/objects/{key}") | ("PUT", "/objects/{key}") => {
                let method = route.method.as_str();
                let good = signer
                    .sign(&keys[0], method, std::time::Duration::from_secs(60))
                    .unwrap();
                let expired = signer.sign_until(&keys[0], method, 1).unwrap();
                let other_key = signer
                    .sign(&keys[1], method, std::time::Duration::from_secs(60))
                    .unwrap()
                    .replace(&keys[1], &keys[0]);
                let other_method = signer
                    .sign(
                        &keys[0],
                        if method == "GET" { "PUT" } else { "GET" },
                        std::time::Duration::from_secs(60),
                    )
                    .unwrap()
                    .replace(
                        if method == "GET" { "method=PUT" } else { "method=GET" },
                        &format!("method={method}"),
                    );
                let mut forged = path_of(&good);
                let last = forged.pop().unwrap();
                forged.push(if last == '0' { '1' } else { '0' });
                let bare = format!("/objects/{}", keys[0]);
                for (what, path) in [
                    ("forged", forged),
                    ("expired", path_of(&expired)),
                    ("another key's", path_of(&other_key)),
                    ("another method's", path_of(&other_method)),
                    ("unsigned", bare),
                ] {
                    // a signed-in owner's cookies do not help either
                    let req = a
                        .http
                        .request(
                            Method::from_bytes(method.as_bytes()).unwrap(),
                            format!("{}{path}", a.base),
                        )
                        .header("cookie", cookies(&a));
                    let req = if method == "PUT" {
                        req.body(b"overwrite".to_vec())
                    } else {
                        req
                    };
                    let resp = req.send().await.unwrap();
                    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{what} signed URL for {method}");
                }
                if method == "GET" {
                    let resp = reqwest::get(&good).await.unwrap();
                    assert_eq!(resp.status(), StatusCode::OK, "a genuine signed URL works");
                    let missing = signer
                        .sign(&random_id(), "GET", std::time::Duration::from_secs(60))
                        .unwrap();
                    assert_eq!(reqwest::get(&missing).await.unwrap().status(), StatusCode::NOT_FOUND);
                }
                let stored = std::fs::read(server.data_dir.join("objects").join(&keys[0])).unwrap();
                assert!(stored.starts_with(b"PK"), "the archive was not overwritten");
            }
            // --- routes without an id act on the caller's own account only
            ("GET", "/home")
            | ("GET", "/upload")
            | ("GET", "/account")
            | ("GET", "/timeline")
            | ("GET", "/")
            | ("GET", "/signup")
            | ("GET", "/login")
            | ("GET", "/privacy") => {
                let page = call(&b, route, "", &[]).await;
                assert_eq!(page.status, StatusCode::OK, "{}", route.path);
                assert_none_of(route.path, &page.body, &a_secrets);
                if route.path == "/account" {
                    assert!(page.body.contains(&b_email), "{}", page.body);
                }
            }
            ("GET", p) if route.names == Names::Nothing && p.starts_with("/api/") => {
                let answer = call(&b, route, "", &[]).await;
                assert_eq!(answer.status, StatusCode::OK, "{p}: {answer:?}");
                assert_none_of(p, &answer.body, &a_secrets);
            }
            ("POST", "/account/password") => {
                let resp = b
                    .post_form(
                        "/account/password",
                        &[
                            ("current_password", PASSWORD),
                            ("password", "another quiet river 88"),
                            ("password_confirm", "another quiet river 88"),
                        ],
                    )
                    .await;
                assert_eq!(location(&resp), "/account?notice=password_changed#password");
                let mut again = Browser::new(&server.url);
                let resp = again
                    .post_form("/auth/login", &[("email", &a_email), ("password", PASSWORD)])
                    .await;
                assert_eq!(location(&resp), "/home", "the other account's password is unchanged");
            }
            ("POST", "/account/delete") => {
                // a wrong password deletes nothing; the right one deletes only the caller
                // (the deletion tests follow that through); here: nothing of A moves
                assert_eq!(delete_account(&mut b, "not my password at all").await, None);
                assert!(scan_status(&db, &scan).await.is_some());
            }
            ("POST", "/account/export") => {
                let resp = b.post_form("/account/export", &[]).await;
                assert_eq!(resp.status(), StatusCode::OK);
                let zip = resp.bytes().await.unwrap().to_vec();
                let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
                for i in 0..archive.len() {
                    let mut f = archive.by_index(i).unwrap();
                    let name = f.name().unwrap_or_default().to_string();
                    let mut text = Vec::new();
                    std::io::Read::read_to_end(&mut f, &mut text).unwrap();
                    assert_none_of(
                        &format!("export entry {name}"),
                        &format!("{name}\n{}", String::from_utf8_lossy(&text)),
                        &a_secrets,
                    );
                }
            }
            ("POST", "/uploads") => {
                let (st, _) = create(&b, 100_000, 64 * 1024, None).await;
                assert_eq!(st, StatusCode::CREATED);
                assert_eq!(status(&a, &upload).await.0, StatusCode::OK);
            }
            ("POST", "/auth/login") => {
                // a wrong password for A's email from B's browser: refused, B stays B
                let resp = b
                    .post_form(
                        "/auth/login",
                        &[("email", &a_email), ("password", "a guess that is wrong")],
                    )
                    .await;
                assert_eq!(location(&resp), "/login?error=invalid");
                assert!(b.get("/account").await.text().await.unwrap().contains(&b_email));
            }
            ("POST", "/auth/signup") => {
                // A's email cannot be taken over by signing up again
                let mut c = Browser::new(&server.url);
                let resp = common::sign_up(&mut c, &a_email).await;
                assert_eq!(location(&resp), "/signup?error=email_unavailable");
            }
            ("POST", "/auth/logout") => {
                let mut c = Browser::new(&server.url);
                c.cookies = b.cookies.clone();
                assert_eq!(c.post_form("/auth/logout", &[]).await.status(), StatusCode::SEE_OTHER);
                // B's sign-out ends B's session only
                assert!(a.get("/account").await.text().await.unwrap().contains(&a_email));
                b = Browser::new(&server.url);
                let resp = b
                    .post_form(
                        "/auth/login",
                        &[("email", &b_email), ("password", "another quiet river 88")],
                    )
                    .await;
                if location(&resp) != "/home" {
                    let resp = b
                        .post_form("/auth/login", &[("email", &b_email), ("password", PASSWORD)])
                        .await;
                    assert_eq!(location(&resp), "/home");
                }
            }
            // --- Google sign-in
            ("POST", "/auth/google") => {
                // a visitor's start is a redirect to the provider, naming nothing of anyone
                let mut c = Browser::new(&server.url);
                let resp = c.post_form("/auth/google", &[]).await;
                assert_eq!(resp.status(), StatusCode::SEE_OTHER);
                assert!(location(&resp).starts_with(&provider.issuer));
                assert_none_of("/auth/google", &location(&resp), &a_secrets);
            }
            ("GET", "/auth/google/callback") => {
                // A's callback (A's state) in B's browser: refused, nothing linked to B,
                // A's identity unchanged, B still B
                let start = a.post_form("/account/google/link", &[("password", PASSWORD)]).await;
                let callback = provider_redirect(&a, &start).await;
                let resp = b.get(&callback_path(&callback, &server.url)).await;
                assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
                assert_none_of("the callback", &resp.text().await.unwrap(), &a_secrets);
                assert_eq!(identities(&db, &a_id).await, a_identity);
                assert!(b.get("/account").await.text().await.unwrap().contains(&b_email));
            }
            ("POST", "/account/google/link") => {
                // B cannot take A's Google identity
                let resp = common::oidc::link(&mut b, PASSWORD).await;
                assert_eq!(resp.status(), StatusCode::CONFLICT);
                assert_none_of("the link", &resp.text().await.unwrap(), &a_secrets);
                assert_eq!(identities(&db, &a_id).await, a_identity);
            }
            ("POST", "/account/google/unlink") => {
                // B's unlink touches B's account only (which has no Google sign-in)
                let resp = b.post_form("/account/google/unlink", &[("password", PASSWORD)]).await;
                assert_eq!(location(&resp), "/account?error=google_not_linked#methods");
                assert_eq!(identities(&db, &a_id).await, a_identity);
            }
            ("POST", "/account/delete/google") => {
                // B has no Google sign-in to confirm with: nothing of anyone is deleted
                let resp = b.post_form("/account/delete/google", &[("understood", "on")]).await;
                assert_eq!(location(&resp), "/account?error=google_not_linked#delete");
                assert_eq!(identities(&db, &a_id).await, a_identity);
                assert!(scan_status(&db, &scan).await.is_some());
            }
            // --- the built site's files: an account's id is no file
            ("GET", "/{*file}") => {
                let theirs = visitor.http.get(format!("{}/{scan}", server.url)).send().await.unwrap();
                let missing = visitor
                    .http
                    .get(format!("{}/{}", server.url, random_id()))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
                assert_eq!(missing.status(), StatusCode::NOT_FOUND);
            }
            (method, path) => {
                panic!("no isolation probe for {method} {path}: add one to server/tests/isolation_http.rs")
            }
        }
        // a visitor gets nothing of anyone from a route that needs an account
        if route.access == Access::Account {
            let id = match route.names {
                Names::Scan => scan.as_str(),
                Names::Upload => upload.as_str(),
                Names::Receipt => receipt.as_str(),
                _ => "",
            };
            let answer = call(&visitor, route, id, &[("password", PASSWORD)]).await;
            assert!(
                !answer.status.is_success(),
                "{} {} answered a visitor {:?}",
                route.method,
                route.path,
                answer.status
            );
            assert_none_of(
                &format!("{} {} (visitor)", route.method, route.path),
                &answer.body,
                &a_secrets[..2],
            );
        }
        assert!(probed.insert(key), "{key:?} listed twice");
    }
    assert_eq!(probed.len(), ROUTES.len());
    // nothing of all that deleted or changed A's scan
    assert_eq!(scan_status(&db, &scan).await.as_deref(), Some("deidentified"));
    assert!(object_exists(&server, None, &keys[0]));
}
