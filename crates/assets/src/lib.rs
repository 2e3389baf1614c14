//! The asset manifest (`models/MANIFEST.json` in the assets folder): every model file with its
//! SHA-256, size and, for upstream files, the pinned URL.
//!
//! Model weights never enter git. A machine finds them through `NEUROVOL_ASSETS` ([`ASSETS_ENV`]);
//! [`verify`] checks a folder against the manifest, and [`fetch`] fills a folder from the
//! upstream URLs, refusing (and deleting) any download whose SHA-256 differs. Downloading is
//! the caller's [`Downloader`], so this crate carries no HTTP client and tests run offline.
//!
//! Files without an upstream URL cannot be fetched; [`FetchReport::not_downloadable`] lists
//! them. The `derived` ones (each model's `model.safetensors` + `arch.json`) are computed from
//! the upstream TF.js files by [`derive`](mod@derive) ([`derive_missing`]; [`install`] does
//! both steps), the safetensors checked against the manifest's SHA-256. NeuroVol's own
//! documents cannot be made and are not needed to run.
//!
//! The manifest itself is kept in the repository ([`pinned_manifest`]), so a fresh clone knows
//! what to download without the assets folder.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod derive;
mod install;

pub use install::{DeriveReport, InstallReport, Outcome, derive_missing, install};

/// Environment variable naming the assets folder (`models/`, `normative/`, … inside it).
pub const ASSETS_ENV: &str = "NEUROVOL_ASSETS";

/// Where the manifest lives inside the assets folder.
pub const MANIFEST_PATH: &str = "models/MANIFEST.json";

/// The manifest this build pins: `crates/assets/MANIFEST.json`, a copy of the assets folder's
/// `models/MANIFEST.json` (a test keeps them equal), so a machine without the assets still
/// knows what to download and which hashes to accept.
pub const PINNED_MANIFEST_JSON: &str = include_str!("../MANIFEST.json");

/// [`PINNED_MANIFEST_JSON`], parsed and validated.
pub fn pinned_manifest() -> Result<Manifest, AssetError> {
    Manifest::from_json(PINNED_MANIFEST_JSON)
}

/// The assets folder from [`ASSETS_ENV`], if set and non-empty.
pub fn assets_root_from_env() -> Option<PathBuf> {
    std::env::var_os(ASSETS_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `models/MANIFEST.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub upstream_repo: String,
    pub upstream_commit: String,
    pub upstream_license: String,
    #[serde(default)]
    pub weights_note: Option<String>,
    pub files: Vec<ManifestFile>,
}

/// One file of the manifest; `path` is relative to the manifest's folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    /// Lower-case hex.
    pub sha256: String,
    pub bytes: u64,
    pub kind: String,
    /// Pinned upstream URL; `None` for derived files and NeuroVol's own documents.
    #[serde(default)]
    pub upstream_url: Option<String>,
    /// For derived files: the upstream files they are computed from.
    #[serde(default)]
    pub derived_from: Vec<String>,
    #[serde(default)]
    pub regenerate: Option<String>,
    #[serde(default)]
    pub upstream_commit: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
}

/// Everything that can go wrong; every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("asset manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("asset manifest: {0}")]
    InvalidManifest(String),
    #[error("refused {path}: download from {url} failed: {message}")]
    Download { path: String, url: String, message: String },
    #[error("refused {path}: download from {url} is larger than the manifest's {expected_bytes} bytes; deleted")]
    TooLarge {
        path: String,
        url: String,
        expected_bytes: u64,
    },
    #[error("refused {path}: SHA-256 of the download from {url} is {actual}, the manifest expects {expected}; deleted")]
    HashMismatch {
        path: String,
        url: String,
        expected: String,
        actual: String,
    },
    /// A derived file could not be computed (missing or altered upstream input, unsupported or
    /// inconsistent TF.js model); `path` names the file(s) that were to be derived.
    #[error("cannot derive {path}: {message}")]
    Derive { path: String, message: String },
    #[error(
        "refused {path}: SHA-256 of the file derived from the upstream TF.js model is {actual}, the manifest expects {expected}; nothing written"
    )]
    DerivedHashMismatch {
        path: String,
        expected: String,
        actual: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> AssetError + '_ {
    move |source| AssetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Manifest {
    /// Parses and validates a manifest: relative paths without `..`, unique, 64-hex SHA-256,
    /// `https://` upstream URLs. A manifest that fails is refused whole, because its paths
    /// decide where [`fetch`] writes.
    pub fn from_json(json: &str) -> Result<Manifest, AssetError> {
        let mut manifest: Manifest = serde_json::from_str(json)?;
        let mut seen = BTreeSet::new();
        for f in &mut manifest.files {
            let bad = |why: &str| Err(AssetError::InvalidManifest(format!("{:?}: {why}", f.path)));
            if !is_safe_relative(&f.path) {
                return bad("path must be relative, without '..', '.', '\\' or empty parts");
            }
            if !seen.insert(f.path.clone()) {
                return bad("listed twice");
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad("sha256 is not 64 hex digits");
            }
            f.sha256.make_ascii_lowercase();
            if f.upstream_url.as_deref().is_some_and(|u| !u.starts_with("https://")) {
                return bad("upstream_url must be https");
            }
        }
        Ok(manifest)
    }

    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, AssetError> {
        Manifest::from_json(&fs::read_to_string(path).map_err(io_err(path))?)
    }
}

fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// SHA-256 of a file, lower-case hex, streamed (model files are read once, not held).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// State of one manifest file in a folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileStatus {
    Ok,
    Missing,
    Mismatch { expected: String, actual: String },
}

/// Result of [`verify`], in manifest order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub files: Vec<(String, FileStatus)>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(|(_, s)| *s == FileStatus::Ok)
    }

    /// The files that are missing or differ.
    pub fn problems(&self) -> impl Iterator<Item = &(String, FileStatus)> {
        self.files.iter().filter(|(_, s)| *s != FileStatus::Ok)
    }
}

/// Checks every manifest file in `dir` (the manifest's folder, e.g. `$NEUROVOL_ASSETS/models`).
/// Missing and differing files are reported, not errors; other I/O failures are errors.
pub fn verify(manifest: &Manifest, dir: &Path) -> Result<VerifyReport, AssetError> {
    let files = manifest
        .files
        .iter()
        .map(|f| Ok((f.path.clone(), file_status(f, &dir.join(&f.path))?)))
        .collect::<Result<_, AssetError>>()?;
    Ok(VerifyReport { files })
}

fn file_status(f: &ManifestFile, path: &Path) -> Result<FileStatus, AssetError> {
    match sha256_file(path) {
        Ok(actual) if actual == f.sha256 => Ok(FileStatus::Ok),
        Ok(actual) => Ok(FileStatus::Mismatch {
            expected: f.sha256.clone(),
            actual,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileStatus::Missing),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Fetches one URL into a sink. Implemented by the caller (an HTTP client in the server/CLI, a
/// local mirror in tests); closures `FnMut(&str, &mut dyn Write) -> Result<(), String>` work.
pub trait Downloader {
    /// Writes the body of `url` to `sink`; an `Err` is a human-readable reason.
    fn download(&mut self, url: &str, sink: &mut dyn Write) -> Result<(), String>;
}

impl<F: FnMut(&str, &mut dyn Write) -> Result<(), String>> Downloader for F {
    fn download(&mut self, url: &str, sink: &mut dyn Write) -> Result<(), String> {
        self(url, sink)
    }
}

/// What [`fetch`] did, by manifest path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchReport {
    /// Downloaded and verified.
    pub downloaded: Vec<String>,
    /// Already present with the right hash; not downloaded again.
    pub already_present: Vec<String>,
    /// No upstream URL (derived files, NeuroVol's documents) and not present intact: these must
    /// be regenerated or copied by other means (see each entry's `regenerate`).
    pub not_downloadable: Vec<String>,
}

/// Downloads every manifest file that has an upstream URL and is not already intact in `dir`.
///
/// Each download goes to a temporary name beside its destination while its SHA-256 is computed;
/// only a matching file is renamed into place. A mismatch, an oversized body or a downloader
/// error deletes the temporary file and stops with an error naming the file (and, for a
/// mismatch, both hashes). Files fetched before the failure stay (they were verified).
pub fn fetch(manifest: &Manifest, dir: &Path, downloader: &mut dyn Downloader) -> Result<FetchReport, AssetError> {
    let mut report = FetchReport::default();
    for f in &manifest.files {
        let dest = dir.join(&f.path);
        if file_status(f, &dest)? == FileStatus::Ok {
            report.already_present.push(f.path.clone());
            continue;
        }
        let Some(url) = &f.upstream_url else {
            report.not_downloadable.push(f.path.clone());
            continue;
        };
        fetch_one(f, url, &dest, downloader)?;
        report.downloaded.push(f.path.clone());
    }
    Ok(report)
}

fn fetch_one(f: &ManifestFile, url: &str, dest: &Path, downloader: &mut dyn Downloader) -> Result<(), AssetError> {
    let temp = TempFile::beside(dest)?;
    let file = File::create(&temp.path).map_err(io_err(&temp.path))?;
    let mut sink = CheckedSink {
        file,
        hasher: Sha256::new(),
        written: 0,
        limit: f.bytes,
        too_large: false,
    };

    let result = downloader.download(url, &mut sink);
    if sink.too_large {
        return Err(AssetError::TooLarge {
            path: f.path.clone(),
            url: url.into(),
            expected_bytes: f.bytes,
        });
    }
    result.map_err(|message| AssetError::Download {
        path: f.path.clone(),
        url: url.into(),
        message,
    })?;
    sink.file
        .flush()
        .and_then(|()| sink.file.sync_all())
        .map_err(io_err(&temp.path))?;
    let actual = hex::encode(sink.hasher.finalize());
    if actual != f.sha256 {
        return Err(AssetError::HashMismatch {
            path: f.path.clone(),
            url: url.into(),
            expected: f.sha256.clone(),
            actual,
        });
    }
    drop(sink.file);
    temp.persist(dest)
}

/// Writes `bytes` to `dest` through a temporary file, so `dest` is never partial.
fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<(), AssetError> {
    let temp = TempFile::beside(dest)?;
    let mut file = File::create(&temp.path).map_err(io_err(&temp.path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err(&temp.path))?;
    drop(file);
    temp.persist(dest)
}

/// Deletes the partial file on every early return (refusal, error, panic).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// A temporary name beside `dest`: same folder, so the final rename is atomic; the pid keeps
    /// concurrent runs apart. Creates the folder.
    fn beside(dest: &Path) -> Result<TempFile, AssetError> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(TempFile {
            path: parent.join(format!(".{name}.{}.part", std::process::id())),
            keep: false,
        })
    }

    /// Renames the finished file into place.
    fn persist(mut self, dest: &Path) -> Result<(), AssetError> {
        fs::rename(&self.path, dest).map_err(io_err(dest))?;
        self.keep = true; // renamed: nothing left to delete
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Hashes while writing and stops a body longer than the manifest says, so a wrong or hostile
/// URL cannot fill the disk.
struct CheckedSink {
    file: File,
    hasher: Sha256,
    written: u64,
    limit: u64,
    too_large: bool,
}

impl Write for CheckedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            self.too_large = true;
            return Err(io::Error::other("download larger than the manifest's size"));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
