//! Starts the real `neurovol` binary on a random loopback port with its own data
//! directory, on SQLite — or on a fresh PostgreSQL database when
//! `NEUROVOL_TEST_DATABASE_URL` points at a server (scripts/test.sh does that).

// Each test binary compiles this kit and uses part of it.
#![allow(dead_code)]

pub mod account_kit;
pub mod oidc;
pub mod s3;
pub mod upload_kit;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::header::{HeaderMap, SET_COOKIE};

pub struct TestServer {
    pub url: String,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub database_url: Option<String>,
    child: Child,
    /// Remove the data dir when dropped (false for a server restarted on another's data).
    owns_data: bool,
}

/// A fresh, empty PostgreSQL database for one test (or `None` on SQLite runs).
pub async fn fresh_database() -> Option<String> {
    let admin_url = std::env::var("NEUROVOL_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!("nv_test_{}", hex::encode(rand::random::<[u8; 6]>()));
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .expect("connect to test PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_string())
        .expect("database URL has a path");
    Some(format!("{base}/{name}"))
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neurovol-{tag}-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestServer {
    pub async fn start(extra_env: &[(&str, &str)]) -> TestServer {
        let data_dir = temp_dir("server");
        let database_url = fresh_database().await;
        Self::start_on(data_dir, database_url, extra_env, true).await
    }

    /// Starts on an existing data dir and database (a restart, or a second process).
    pub async fn start_on(
        data_dir: PathBuf,
        database_url: Option<String>,
        extra_env: &[(&str, &str)],
        owns_data: bool,
    ) -> TestServer {
        let log_path = data_dir.with_extension(format!("{}.log", hex::encode(rand::random::<[u8; 3]>())));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_neurovol"));
        cmd.arg("serve")
            .env_remove("NEUROVOL_CONFIG")
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("NEUROVOL_DATA_DIR", &data_dir)
            .env("NEUROVOL_LOG", "info")
            .env_remove("NEUROVOL_PUBLIC_URL")
            // the pipeline (dcm2niix, segmentation) only where a test asks for it
            .env("NEUROVOL_PIPELINE_CONCURRENCY", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        match &database_url {
            Some(url) => cmd.env("NEUROVOL_DATABASE_URL", url),
            None => cmd.env_remove("NEUROVOL_DATABASE_URL"),
        };
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn neurovol");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("NeuroVol is ready at ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        TestServer {
            url,
            data_dir,
            log_path,
            database_url,
            child,
            owns_data,
        }
    }

    /// `kill -9`: no shutdown handler runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The database this server uses, opened from the test.
    pub async fn db(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("neurovol.db").display()));
        sqlx::AnyPool::connect(&url).await.expect("open the test database")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_data {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
        let _ = std::fs::remove_file(&self.log_path);
    }
}

/// A browser-like client that keeps cookies by hand (so tests can inspect their flags)
/// and never follows redirects.
pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            base: base.to_string(),
            http,
            cookies: Vec::new(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn absorb(&mut self, headers: &HeaderMap) {
        for raw in headers.get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let first = raw.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                let expired = raw.contains("Max-Age=0");
                if !v.is_empty() && !expired {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.absorb(resp.headers());
        resp
    }

    /// Posts a form with the page's CSRF token added (as a real page would).
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        if self.cookie("nv_csrf").is_none() {
            self.get("/login").await;
        }
        let token = self.cookie("nv_csrf").unwrap();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf_token", &token));
        self.post_raw(path, &all, &[]).await
    }

    /// Posts exactly these fields and headers, no token added.
    pub async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        self.absorb(resp.headers());
        resp
    }
}

pub fn form_body(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

pub fn set_cookie_line(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|l| l.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

pub const PASSWORD: &str = "granite meadow pelican 77";

pub fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.org", hex::encode(rand::random::<[u8; 4]>()))
}

pub async fn sign_up(b: &mut Browser, email: &str) -> reqwest::Response {
    b.post_form(
        "/auth/signup",
        &[("email", email), ("password", PASSWORD), ("password_confirm", PASSWORD)],
    )
    .await
}

/// The headers every response carries, whatever it is.
pub fn assert_hardened(resp: &reqwest::Response, what: &str) {
    let h = resp.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let csp = get("content-security-policy");
    for directive in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "'wasm-unsafe-eval'",
    ] {
        assert!(csp.contains(directive), "{what}: CSP lacks {directive}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
        "{what}: {csp}"
    );
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    assert_eq!(get("cross-origin-opener-policy"), "same-origin", "{what}");
    assert_eq!(get("cross-origin-resource-policy"), "same-origin", "{what}");
    assert!(get("permissions-policy").contains("camera=()"), "{what}");
}

/// The response's `Cache-Control`.
pub fn cache_control(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}
