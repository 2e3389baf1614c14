//! A real OpenID Connect provider on loopback (`end2end/oidc-provider.mjs`, npm
//! `oauth2-mock-server`), and the browser's side of a Google sign-in against it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{Browser, location};

pub const CLIENT_ID: &str = "neurovol-test-client";
pub const CLIENT_SECRET: &str = "neurovol-test-secret-value";

/// A running provider; killed when dropped.
pub struct OidcProvider {
    pub issuer: String,
    control: String,
    child: Child,
    http: reqwest::Client,
}

fn end2end_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../end2end")
}

impl OidcProvider {
    pub fn start() -> OidcProvider {
        let dir = end2end_dir();
        assert!(
            dir.join("node_modules/oauth2-mock-server/package.json").is_file(),
            "oauth2-mock-server is not installed: run scripts/setup.sh (npm ci in end2end/)"
        );
        let mut child = Command::new("node")
            .arg("oidc-provider.mjs")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node (the test OpenID provider)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("OIDC ") {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OpenID provider did not start");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        OidcProvider {
            issuer: field("issuer="),
            control: field("control="),
            child,
            http: reqwest::Client::new(),
        }
    }

    /// The server's settings for this provider.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NEUROVOL_GOOGLE_ISSUER", self.issuer.clone()),
            ("NEUROVOL_GOOGLE_CLIENT_ID", CLIENT_ID.to_string()),
            ("NEUROVOL_GOOGLE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ]
    }

    /// How the next ID tokens are made (`oidc-provider.mjs` lists the names).
    pub async fn scenario(&self, name: &str, sub: &str, email: &str) {
        let resp = self
            .http
            .post(format!("{}/scenario", self.control))
            .json(&serde_json::json!({ "name": name, "sub": sub, "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "scenario {name}");
    }

    /// A new signing key, used from now on (the old one stays published).
    pub async fn rotate_key(&self) {
        let resp = self.http.post(format!("{}/rotate", self.control)).send().await.unwrap();
        assert_eq!(resp.status(), 204);
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The callback URL the provider sends the browser to, after `start` (a `303` to the
/// provider's authorization endpoint) — the browser's visit to the provider, with no login
/// page (the mock authorizes at once).
pub async fn provider_redirect(b: &Browser, start: &reqwest::Response) -> String {
    assert_eq!(start.status(), 303, "the start of the flow redirects to the provider");
    let authorize = location(start);
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "PKCE S256: {authorize}"
    );
    assert!(authorize.contains("nonce="), "a nonce: {authorize}");
    let resp = b.http.get(&authorize).send().await.unwrap();
    assert_eq!(resp.status(), 302, "the provider redirects back");
    location(&resp)
}

/// The path and query of the server's callback URL.
pub fn callback_path(callback: &str, base: &str) -> String {
    callback
        .strip_prefix(base)
        .expect("the callback is on the server")
        .to_string()
}

/// A whole Google sign-in in `b`: start, the provider, the callback's answer.
pub async fn sign_in(b: &mut Browser) -> reqwest::Response {
    let start = b.post_form("/auth/google", &[]).await;
    let callback = provider_redirect(b, &start).await;
    let path = callback_path(&callback, &b.base);
    b.get(&path).await
}

/// Links Google to `b`'s password account: the password, the provider, the callback.
pub async fn link(b: &mut Browser, password: &str) -> reqwest::Response {
    let start = b.post_form("/account/google/link", &[("password", password)]).await;
    let callback = provider_redirect(b, &start).await;
    let path = callback_path(&callback, &b.base);
    b.get(&path).await
}

/// The Google identities (issuer, subject) of an account.
pub async fn identities(db: &sqlx::AnyPool, user: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::query("SELECT issuer, subject FROM oidc_identities WHERE user_id = $1")
        .bind(user)
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("issuer"), r.get("subject")))
        .collect()
}
