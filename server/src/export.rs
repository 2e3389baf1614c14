//! The account's export: one ZIP of everything held for it (GDPR Art. 15 and 20).
//!
//! ```text
//! README.md               what each file is, why it is held, where, for how long
//! account.json            email, sign-in methods, each scan's facts
//! audit_log.json          every event of the account's audit log
//! scans/<id>/<file>       per scan, each `app::scans_api::ScanFile` it has
//! manifest.json           schema version, size and SHA-256 of every other file
//! ```
//!
//! Written entry by entry to a file in a private temp dir (`temp_dir::TempDir`), objects
//! fetched one at a time from the store: nothing is held whole in memory. The caller gets
//! the open file after its folder is gone, so nothing is left behind however the download
//! ends. Only rows of the account are read.

use std::io::{Read, Write};

use app::account::SignInMethod;
use app::scans_api::ScanFile;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::config::Config;
use crate::db::Db;
use crate::object_store::{ObjectStore, StoreError};
use crate::scans::FileSource;
use crate::temp_dir::TempDir;

/// The version of the layout above; `manifest.json` carries it.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("object store: {0}")]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the export: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("no such account")]
    NoAccount,
}

impl ExportError {
    /// Whether trying again later may work (the store was down).
    pub fn is_transient(&self) -> bool {
        matches!(self, ExportError::Store(e) if e.is_transient())
    }
}

/// A finished export: its open file (its folder already removed) and size.
pub struct Export {
    pub file: std::fs::File,
    pub bytes: u64,
}

#[derive(Serialize)]
struct ManifestEntry {
    path: String,
    bytes: u64,
    sha256: String,
}

#[derive(Serialize)]
struct Manifest<'a> {
    schema_version: u32,
    generated_at: i64,
    files: &'a [ManifestEntry],
}

#[derive(Serialize)]
struct AccountFile {
    schema_version: u32,
    exported_at: i64,
    email: String,
    created_at: i64,
    sign_in_methods: Vec<&'static str>,
    /// Signed-in sessions (not the cookie's hash: that is a credential).
    sessions: Vec<SessionFacts>,
    scans: Vec<ScanFacts>,
}

#[derive(Serialize)]
struct SessionFacts {
    created_at: i64,
    expires_at: i64,
}

#[derive(Serialize)]
struct ScanFacts {
    id: String,
    status: String,
    uploaded_at: i64,
    age_years: Option<i64>,
    sex: String,
    study_date: Option<String>,
    dicom_files: i64,
    archive_kept: bool,
    failure_reason: Option<String>,
    files: Vec<String>,
}

/// The ZIP under construction: every entry is hashed as it is written.
struct Writer {
    zip: zip::ZipWriter<std::fs::File>,
    entries: Vec<ManifestEntry>,
}

/// Compresses text; stores what is compressed already (gzip NIfTI, ZIP).
fn options(path: &str) -> zip::write::SimpleFileOptions {
    let method = if path.ends_with(".gz") || path.ends_with(".zip") {
        zip::CompressionMethod::Stored
    } else {
        zip::CompressionMethod::Deflated
    };
    zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true)
}

impl Writer {
    fn add(&mut self, path: &str, mut from: impl Read) -> Result<(), ExportError> {
        self.zip.start_file(path, options(path))?;
        let (mut hash, mut bytes, mut buf) = (Sha256::new(), 0u64, vec![0u8; 1 << 16]);
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            self.zip.write_all(&buf[..n])?;
            bytes += n as u64;
        }
        self.entries.push(ManifestEntry {
            path: path.to_string(),
            bytes,
            sha256: hex::encode(hash.finalize()),
        });
        Ok(())
    }
}

/// Runs blocking ZIP writing on this worker thread without stalling the others.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Builds the export of `user_id`'s account under `config.tmp_dir()`.
pub async fn build(db: &Db, store: &dyn ObjectStore, config: &Config, user_id: &str) -> Result<Export, ExportError> {
    let dir = TempDir::new(&config.tmp_dir(), "export")?;
    let path = dir.path().join("export.zip");
    let mut w = Writer {
        zip: zip::ZipWriter::new(std::fs::File::create(&path)?),
        entries: Vec::new(),
    };
    let now = crate::db::now_secs();

    let user = sqlx::query("SELECT email, created_at FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(db)
        .await?
        .ok_or(ExportError::NoAccount)?;
    let scans = sqlx::query(
        "SELECT id, status, created_at, age_years, sex, study_date, files, archive_deleted, failure_reason FROM scans \
         WHERE user_id = $1 ORDER BY created_at, id",
    )
    .bind(user_id)
    .fetch_all(db)
    .await?;

    let mut facts = Vec::new();
    for scan in &scans {
        let id: String = scan.try_get("id")?;
        let mut files = Vec::new();
        for file in ScanFile::ALL {
            let entry = format!("scans/{id}/{}", file.file_name());
            match crate::scans::file_source(db, &config.assets_dir, user_id, &id, file).await? {
                None => continue,
                Some(FileSource::Made(bytes)) => blocking(|| w.add(&entry, bytes.as_slice()))?,
                Some(FileSource::PictureOf(picture)) => match crate::scans::draw(store, picture).await {
                    Ok(png) => blocking(|| w.add(&entry, png.as_slice()))?,
                    Err(StoreError::NotFound) => continue,
                    Err(e) => return Err(e.into()),
                },
                Some(FileSource::Object(key)) => {
                    let local = dir.path().join("object");
                    match store.get_to_file(&key, &local).await {
                        Ok(_) => {}
                        // not produced (yet): the scan's facts say what it has
                        Err(StoreError::NotFound) => continue,
                        Err(e) => return Err(e.into()),
                    }
                    blocking(|| {
                        std::fs::File::open(&local)
                            .map_err(ExportError::from)
                            .and_then(|f| w.add(&entry, f))
                    })?;
                    std::fs::remove_file(&local)?;
                }
            }
            files.push(entry);
        }
        facts.push(ScanFacts {
            id,
            status: scan.try_get("status")?,
            uploaded_at: scan.try_get("created_at")?,
            age_years: scan.try_get("age_years")?,
            sex: scan.try_get("sex")?,
            study_date: scan.try_get("study_date")?,
            dicom_files: scan.try_get("files")?,
            archive_kept: scan.try_get::<i64, _>("archive_deleted")? == 0,
            failure_reason: scan.try_get("failure_reason")?,
            files,
        });
    }

    let sessions = sqlx::query("SELECT created_at, expires_at FROM sessions WHERE user_id = $1 ORDER BY created_at")
        .bind(user_id)
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| {
            Ok(SessionFacts {
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let account = AccountFile {
        schema_version: SCHEMA_VERSION,
        exported_at: now,
        email: user.try_get("email")?,
        created_at: user.try_get("created_at")?,
        sign_in_methods: crate::accounts::sign_in_methods(db, user_id)
            .await?
            .into_iter()
            .map(SignInMethod::as_str)
            .collect(),
        sessions,
        scans: facts,
    };
    let audit = crate::audit::list(db, user_id, None).await?;
    let readme = readme(config);
    blocking(|| -> Result<(), ExportError> {
        w.add(
            "account.json",
            serde_json::to_vec_pretty(&account)
                .map_err(std::io::Error::other)?
                .as_slice(),
        )?;
        w.add(
            "audit_log.json",
            serde_json::to_vec_pretty(&audit)
                .map_err(std::io::Error::other)?
                .as_slice(),
        )?;
        w.add("README.md", readme.as_bytes())?;
        let manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            generated_at: now,
            files: &w.entries,
        };
        let manifest = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        w.zip.start_file("manifest.json", options("manifest.json"))?;
        w.zip.write_all(&manifest)?;
        let file = w.zip.finish()?;
        file.sync_all()?;
        Ok(())
    })?;
    let file = std::fs::File::open(&path)?;
    let bytes = file.metadata()?.len();
    // the open file stays readable; its folder goes now
    drop(dir);
    Ok(Export { file, bytes })
}

/// The README: what each file is, why it is held, where, and for how long.
fn readme(config: &Config) -> String {
    let facts = crate::web::privacy::facts(config);
    let mut files = String::new();
    for f in ScanFile::ALL {
        files.push_str(&format!("- `scans/<scan id>/{}`: {}.\n", f.file_name(), f.describe()));
    }
    format!(
        "# Your NeuroVol data\n\n\
         This archive holds everything NeuroVol keeps about your account (your right of access and to data \
         portability, GDPR Articles 15 and 20). `manifest.json` lists every other file with its size and SHA-256.\n\n\
         ## The files\n\n\
         - `account.json`: your email address, how you sign in, your signed-in sessions (start \
         and expiry), and the facts kept for each scan (status, upload time, age in years at the scan, sex, study \
         date, number of DICOM files).\n\
         - `audit_log.json`: what happened to your account: sign-ins (and refused attempts), uploads, downloads, \
         exports, deletions and retries, each with its time (Unix milliseconds), IP address and browser.\n\
         {files}\
         - A file is absent when it does not exist: results appear once a scan is processed, and the DICOM \
         archive is deleted as soon as its images are converted (its pixels show the face).\n\n\
         ## Why we hold it\n\n\
         You uploaded the scans to have them measured: we keep them, and what was computed from them, to show \
         you your results and compare your scans over time. The email and password hash let you sign in; the \
         audit log lets you see who used your account.\n\n\
         ## Where it is stored\n\n\
         - Account, facts, results and audit log: {database}.\n\
         - Files: {object_store}.\n\n\
         ## For how long\n\n\
         Until you delete them. Deleting a scan, or your whole account, on the account page removes the \
         database rows at once and the stored files within minutes (about 20 minutes for a scan still being \
         processed; a receipt shows when it is done). Deleting \
         the account also removes its sessions and audit log; only a receipt with counts and dates, naming no \
         account, remains. The raw upload was never stored.\n",
        database = facts.database,
        object_store = facts.object_store,
    )
}
