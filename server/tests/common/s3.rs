//! A real S3-compatible server for tests: `s3s-fs` (verifies request signatures, so
//! expired and tampered pre-signed URLs are refused), as a child process on a loopback port.
//! Binary: `NEUROVOL_S3S_FS_BIN`, else `s3s-fs` on PATH, else `~/.cargo/bin/s3s-fs`
//! (scripts/setup.sh installs it). Missing: tests skip, or fail with NEUROVOL_REQUIRE_S3=1.

// Each test binary compiles this kit and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "neurovol-test-access";
pub const SECRET_KEY: &str = "neurovol-test-secret-key-0123456789";
pub const BUCKET: &str = "neurovol-test";

pub fn s3s_fs_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NEUROVOL_S3S_FS_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("s3s-fs"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs"));
    on_path.into_iter().chain(cargo_bin).find(|p| p.is_file())
}

/// The binary, or `None` (after a skip line) when it is missing and not required.
pub fn s3s_fs_or_skip(test: &str) -> Option<PathBuf> {
    match s3s_fs_bin() {
        Some(bin) => Some(bin),
        None if std::env::var("NEUROVOL_REQUIRE_S3").is_ok_and(|v| v == "1") => {
            panic!("s3s-fs not found (NEUROVOL_REQUIRE_S3=1): run scripts/setup.sh or set NEUROVOL_S3S_FS_BIN")
        }
        None => {
            eprintln!(
                "SKIP {test}: s3s-fs not found (scripts/setup.sh installs it; NEUROVOL_REQUIRE_S3=1 makes this a failure)"
            );
            None
        }
    }
}

/// A running `s3s-fs`; killed when dropped.
pub struct S3Server {
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Where s3s-fs keeps the objects (`<root>/<bucket>/<key>`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// Starts on a free port (the server binds port 0 and logs the address it got).
    pub fn start(bin: PathBuf, dir: PathBuf) -> S3Server {
        std::fs::create_dir_all(dir.join("root")).unwrap();
        let mut server = S3Server {
            bin,
            dir,
            port: 0,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts (again) on `self.port` (0: any), with the same root.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none());
        let log = self
            .dir
            .join(format!("s3s-fs-{}.log", hex::encode(rand::random::<[u8; 3]>())));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root())
            .env("RUST_LOG", "s3s_fs=info")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("server is running at http://").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let port: u16 = addr
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .expect("port in s3s-fs log");
                assert!(self.port == 0 || self.port == port);
                self.port = port;
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("s3s-fs exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "s3s-fs did not start within 20 s:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's configuration for this S3 server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NEUROVOL_S3_ENDPOINT", self.endpoint()),
            ("NEUROVOL_S3_BUCKET", BUCKET.into()),
            ("NEUROVOL_S3_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("NEUROVOL_S3_SECRET_ACCESS_KEY", SECRET_KEY.into()),
        ]
    }

    /// Every object file under the bucket.
    pub fn objects(&self) -> Vec<PathBuf> {
        super::upload_kit::files_under(&self.root().join(BUCKET))
            .into_iter()
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
