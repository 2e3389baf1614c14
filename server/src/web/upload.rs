//! Chunked, resumable upload of a scan's ZIP, and the authoritative de-identification.
//!
//! ```text
//! POST   /uploads                      {"size": N, "chunk_size"?: B, "series"?: i} → 201 {id, chunk_size, chunks, ...}
//! GET    /uploads/{id}                 → {size, chunk_size, chunks, received: [i...], received_bytes}
//! PUT    /uploads/{id}/chunks/{i}      raw bytes (exactly chunk i) → same as GET
//! POST   /uploads/{id}/complete        → 201 {scan_id, status} | 4xx {code, error}
//! DELETE /uploads/{id}                 → 204 (abandon)
//! ```
//! Signed-in users only; every non-GET request passes the CSRF check (`x-csrf-token`).
//! Chunks are kept in `<data_dir>/tmp/uploads/<random id>/` (size cap per upload; abandoned
//! uploads expire and a periodic sweep removes them). On `complete` the server treats the
//! bytes as untrusted: it runs `deid::deidentify_zip` itself (whether or not the browser
//! did) with a fresh server seed, stores ONLY the de-identified ZIP under a random key,
//! then inserts the `scans` row. The temp dir is removed on success and on every failure;
//! a failure leaves no row and no object. Logs carry ids, sizes and error codes only.
//!
//! Settings (environment): `NEUROVOL_UPLOAD_MAX_BYTES` (default 1 GiB),
//! `NEUROVOL_UPLOAD_EXPIRY_SECS` (default 86400: idle uploads older than this are removed),
//! `NEUROVOL_UPLOAD_SWEEP_SECS` (default 600).

use std::io::{BufReader, BufWriter};
use std::path::{Path as FsPath, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use app::SessionInfo;
use app::upload_api::{BoxFuture, ScanDetail, ScanStore, ScanSummary};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use tokio::io::AsyncWriteExt;

use super::AppState;
use crate::storage;
use crate::db::{Db, now_secs};

const MIB: u64 = 1024 * 1024;
/// Largest chunk a client may use (and the default); the route's body limit.
pub const MAX_CHUNK: u64 = 8 * MIB;
const MIN_CHUNK: u64 = 64 * 1024;
/// Open (not yet completed) uploads one account may have.
const MAX_OPEN_PER_USER: usize = 3;
/// All open uploads together may reserve this many times the per-upload cap.
const TEMP_SPACE_UPLOADS: u64 = 8;

#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    pub max_bytes: u64,
    pub expiry_secs: u64,
    pub sweep_secs: u64,
}

pub fn settings() -> UploadSettings {
    static S: OnceLock<UploadSettings> = OnceLock::new();
    *S.get_or_init(|| {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(d)
        };
        UploadSettings {
            max_bytes: num("NEUROVOL_UPLOAD_MAX_BYTES", 1024 * MIB).max(1),
            expiry_secs: num("NEUROVOL_UPLOAD_EXPIRY_SECS", 86_400).max(1),
            sweep_secs: num("NEUROVOL_UPLOAD_SWEEP_SECS", 600).max(1),
        }
    })
}

pub fn uploads_dir(state: &AppState) -> PathBuf {
    state.config.tmp_dir().join("uploads")
}

// ---------------------------------------------------------------------------------------
// errors

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side. Nothing was kept; please try again.",
        )
    }
    fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "upload_not_found",
            "This upload does not exist or has expired. Please start the upload again.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "code": self.code, "error": self.message })),
        )
            .into_response()
    }
}

fn deid_error(e: &deid::DeidError) -> ApiError {
    use deid::DeidError as E;
    let (status, code) = match e {
        E::NotAZip => (StatusCode::UNPROCESSABLE_ENTITY, "not_a_zip"),
        E::CorruptZip => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt_zip"),
        E::EmptyZip => (StatusCode::UNPROCESSABLE_ENTITY, "empty_zip"),
        E::UnsafePath => (StatusCode::UNPROCESSABLE_ENTITY, "unsafe_path"),
        E::EncryptedEntries => (StatusCode::UNPROCESSABLE_ENTITY, "encrypted_entries"),
        E::NestedZip => (StatusCode::UNPROCESSABLE_ENTITY, "nested_zip"),
        E::UnsupportedCompression => (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_compression"),
        E::TooManyEntries { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_entries"),
        E::TooLargeWhenExtracted { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large_when_extracted")
        }
        E::TruncatedOrCorruptDicom { .. } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "truncated_or_corrupt_dicom",
        ),
        E::NoDicomImages => (StatusCode::UNPROCESSABLE_ENTITY, "no_dicom_images"),
        E::NoPart10Header => (StatusCode::UNPROCESSABLE_ENTITY, "no_part10_header"),
        E::MultipleSeries { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "multiple_series"),
        E::SeriesNotFound => (StatusCode::UNPROCESSABLE_ENTITY, "series_not_found"),
        E::NotDicomPart10 => (StatusCode::UNPROCESSABLE_ENTITY, "not_dicom"),
        E::CorruptDicom => (StatusCode::UNPROCESSABLE_ENTITY, "corrupt_dicom"),
        E::UnsupportedTransferSyntax => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_transfer_syntax",
        ),
        E::Output => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_archive"),
    };
    // The crate's Display texts are plain language and never contain values or names.
    ApiError::new(status, code, e.to_string())
}

fn user_id(session: &SessionInfo) -> Result<String, ApiError> {
    session.user.as_ref().map(|u| u.id.clone()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_signed_in",
            "Please log in to upload a scan.",
        )
    })
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

// ---------------------------------------------------------------------------------------
// upload state on disk: <uploads>/<id>/meta.json, NNNNNN.chunk, (complete: COMPLETING, upload.zip, deid.zip)

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    user_id: String,
    size: u64,
    chunk_size: u64,
    series: Option<usize>,
    created_at: i64,
    /// "Discard the DICOM archive after processing" (keep only NIfTI, labels, volumes).
    #[serde(default)]
    discard_archive: bool,
}

impl Meta {
    fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }
    fn chunk_len(&self, i: u64) -> u64 {
        (self.size - i * self.chunk_size).min(self.chunk_size)
    }
}

fn chunk_name(i: u64) -> String {
    format!("{i:06}.chunk")
}

async fn load(state: &AppState, id: &str, user: &str) -> Result<(PathBuf, Meta), ApiError> {
    if !valid_id(id) {
        return Err(ApiError::not_found());
    }
    let dir = uploads_dir(state).join(id);
    let raw = match tokio::fs::read(dir.join("meta.json")).await {
        Ok(r) => r,
        Err(_) => return Err(ApiError::not_found()),
    };
    let meta: Meta = serde_json::from_slice(&raw).map_err(|_| ApiError::not_found())?;
    // someone else's upload looks exactly like a missing one
    if meta.user_id != user {
        return Err(ApiError::not_found());
    }
    Ok((dir, meta))
}

/// (open uploads of `user`, bytes reserved by all open uploads)
async fn open_uploads(dir: &FsPath, user: &str) -> (usize, u64) {
    let (mut mine, mut reserved) = (0, 0u64);
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return (0, 0);
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        if let Ok(raw) = tokio::fs::read(e.path().join("meta.json")).await
            && let Ok(m) = serde_json::from_slice::<Meta>(&raw)
        {
            reserved = reserved.saturating_add(m.size);
            if m.user_id == user {
                mine += 1;
            }
        }
    }
    (mine, reserved)
}

async fn received(dir: &FsPath, meta: &Meta) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..meta.chunks() {
        if let Ok(m) = tokio::fs::metadata(dir.join(chunk_name(i))).await
            && m.len() == meta.chunk_len(i)
        {
            out.push(i);
        }
    }
    out
}

#[derive(Serialize)]
struct UploadStatus {
    id: String,
    size: u64,
    chunk_size: u64,
    chunks: u64,
    received: Vec<u64>,
    received_bytes: u64,
}

async fn status_of(id: &str, dir: &FsPath, meta: &Meta) -> UploadStatus {
    let received = received(dir, meta).await;
    let received_bytes = received.iter().map(|i| meta.chunk_len(*i)).sum();
    UploadStatus {
        id: id.to_string(),
        size: meta.size,
        chunk_size: meta.chunk_size,
        chunks: meta.chunks(),
        received,
        received_bytes,
    }
}

// ---------------------------------------------------------------------------------------
// handlers

#[derive(Deserialize)]
pub struct CreateRequest {
    size: u64,
    chunk_size: Option<u64>,
    /// Series index (as in `deid::inspect_zip`) for archives with several series.
    series: Option<usize>,
    /// Delete the de-identified DICOM archive once the scan is processed.
    #[serde(default)]
    discard_archive: bool,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let user = user_id(&session)?;
    let Json(req) = body.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "The upload request was malformed.",
        )
    })?;
    let s = settings();
    if req.size == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_file",
            "The file is empty.",
        ));
    }
    if req.size > s.max_bytes {
        tracing::info!(
            size = req.size,
            limit = s.max_bytes,
            "upload refused: over the size cap"
        );
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "The file is too large (the limit is {} MiB).",
                s.max_bytes.div_ceil(MIB)
            ),
        ));
    }
    // bounded temp space: a few open uploads per account, and a total for the server
    let (mine, reserved) = open_uploads(&uploads_dir(&state), &user).await;
    if mine >= MAX_OPEN_PER_USER {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_uploads",
            "You have too many uploads in progress. Please finish or cancel one first.",
        ));
    }
    if reserved.saturating_add(req.size) > s.max_bytes.saturating_mul(TEMP_SPACE_UPLOADS) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "The server is busy receiving other uploads. Please try again in a few minutes.",
        ));
    }
    let chunk_size = req
        .chunk_size
        .unwrap_or(MAX_CHUNK)
        .clamp(MIN_CHUNK, MAX_CHUNK);
    let id = hex::encode(rand::random::<[u8; 16]>());
    let meta = Meta {
        user_id: user,
        size: req.size,
        chunk_size,
        series: req.series,
        created_at: now_secs(),
        discard_archive: req.discard_archive,
    };
    let dir = uploads_dir(&state).join(&id);
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        let json = serde_json::to_vec(&meta).map_err(std::io::Error::other)?;
        tokio::fs::write(dir.join("meta.json"), json).await
    };
    if let Err(e) = write.await {
        tracing::error!(error = %e, "cannot create the upload folder");
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Err(ApiError::internal());
    }
    tracing::info!(upload = %id, size = meta.size, chunks = meta.chunks(), "upload created");
    let status = status_of(&id, &dir, &meta).await;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

pub async fn status(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = user_id(&session)?;
    let (dir, meta) = load(&state, &id, &user).await?;
    Ok(Json(status_of(&id, &dir, &meta).await).into_response())
}

pub async fn put_chunk(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path((id, index)): Path<(String, u64)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_id(&session)?;
    let (dir, meta) = load(&state, &id, &user).await?;
    if index >= meta.chunks() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_chunk",
            "This part of the upload is out of range.",
        ));
    }
    if body.len() as u64 != meta.chunk_len(index) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_chunk",
            "This part of the upload has the wrong size. Please try again.",
        ));
    }
    ensure_not_completing(&dir).await?;
    let tmp = dir.join(format!(".part-{}", hex::encode(rand::random::<[u8; 8]>())));
    let write = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&body).await?;
        f.flush().await?;
        drop(f);
        tokio::fs::rename(&tmp, dir.join(chunk_name(index))).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        // the folder may have been swept away meanwhile
        if !tokio::fs::try_exists(dir.join("meta.json"))
            .await
            .unwrap_or(false)
        {
            return Err(ApiError::not_found());
        }
        tracing::error!(error = %e, "cannot store an upload chunk");
        return Err(ApiError::internal());
    }
    Ok(Json(status_of(&id, &dir, &meta).await).into_response())
}

/// Chunks and cancellation are refused once `complete` has claimed the upload.
async fn ensure_not_completing(dir: &std::path::Path) -> Result<(), ApiError> {
    if tokio::fs::try_exists(dir.join("COMPLETING")).await.unwrap_or(false) {
        return Err(ApiError::new(StatusCode::CONFLICT, "completing", "This upload is already being processed."));
    }
    Ok(())
}

pub async fn cancel(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = user_id(&session)?;
    let (dir, _) = load(&state, &id, &user).await?;
    ensure_not_completing(&dir).await?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes the upload's temp dir when dropped: on success, on every error, on panic.
struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn complete(
    State(state): State<AppState>,
    Extension(session): Extension<SessionInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = user_id(&session)?;
    let (dir, meta) = load(&state, &id, &user).await?;
    let got = received(&dir, &meta).await;
    if got.len() as u64 != meta.chunks() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "incomplete",
            "Some parts of the upload have not arrived yet. Please resume the upload.",
        ));
    }
    // exactly one completion per upload
    if std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join("COMPLETING"))
        .is_err()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "completing",
            "This upload is already being processed.",
        ));
    }
    // Run to the end even if the client goes away, so nothing is left half done.
    let task = tokio::spawn(finish_upload(state.clone(), id.clone(), dir, meta));
    match task.await {
        Ok(Ok(scan_id)) => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "scan_id": scan_id, "status": "deidentified", "url": format!("/scans/{scan_id}") })),
        )
            .into_response()),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            tracing::error!(upload = %id, "upload completion task failed");
            Err(ApiError::internal())
        }
    }
}

async fn finish_upload(
    state: AppState,
    id: String,
    dir: PathBuf,
    meta: Meta,
) -> Result<String, ApiError> {
    let _guard = TempDirGuard(dir.clone());
    let started = std::time::Instant::now();
    let raw = dir.join("upload.zip");
    let out = dir.join("deid.zip");

    // assemble the chunks
    let assemble = async {
        let mut f = tokio::fs::File::create(&raw).await?;
        for i in 0..meta.chunks() {
            let mut c = tokio::fs::File::open(dir.join(chunk_name(i))).await?;
            tokio::io::copy(&mut c, &mut f).await?;
        }
        f.flush().await?;
        f.sync_all().await?;
        for i in 0..meta.chunks() {
            tokio::fs::remove_file(dir.join(chunk_name(i))).await?;
        }
        Ok::<u64, std::io::Error>(tokio::fs::metadata(&raw).await?.len())
    };
    match assemble.await {
        Ok(n) if n == meta.size => {}
        Ok(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_size",
                "The upload's size does not match. Please try again.",
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot assemble an upload");
            return Err(ApiError::internal());
        }
    }

    // the authoritative de-identification, with a fresh server seed
    let (raw2, out2, series) = (raw.clone(), out.clone(), meta.series);
    let outcome = tokio::task::spawn_blocking(move || -> Result<deid::Outcome, deid::DeidError> {
        let input = std::fs::File::open(&raw2).map_err(|_| deid::DeidError::Output)?;
        let output = std::fs::File::create(&out2).map_err(|_| deid::DeidError::Output)?;
        let mut opts = deid::Options::new(rand::random::<[u8; 32]>());
        opts.series = series.map(deid::SeriesSelector::Index);
        let mut w = BufWriter::new(output);
        let outcome = deid::deidentify_zip(BufReader::new(input), &mut w, &opts)?;
        let f = w.into_inner().map_err(|_| deid::DeidError::Output)?;
        f.sync_all().map_err(|_| deid::DeidError::Output)?;
        Ok(outcome)
    })
    .await
    .map_err(|_| ApiError::internal())?;
    // the raw upload is gone before anything is kept
    let _ = tokio::fs::remove_file(&raw).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let err = deid_error(&e);
            tracing::info!(upload = %id, code = err.code, "upload refused by de-identification");
            return Err(err);
        }
    };

    // Refuse now what cannot be measured (localizer, missing slices, coarse voxels, ...):
    // a dry run of the conversion the pipeline will do, so the user learns at once and
    // nothing is kept. The pipeline converts again from the stored archive (durably).
    let conversion = {
        let work = dir.join("convert-check");
        let (zip, settings) = (out.clone(), crate::pipeline::convert_settings(&state.config));
        let w = work.clone();
        let r = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&w).map_err(|source| crate::convert::ConvertError::Io { op: "create work dir", source })?;
            crate::convert::convert(&zip, &w, &settings)
        })
        .await
        .map_err(|_| ApiError::internal())?;
        let _ = tokio::fs::remove_dir_all(&work).await;
        r
    };
    if let Err(e) = conversion {
        if e.is_input_problem() {
            tracing::info!(upload = %id, code = e.code(), "upload refused by conversion");
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()));
        }
        tracing::error!(upload = %id, code = e.code(), "conversion check failed");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "conversion_unavailable",
            "The scan could not be checked right now. Nothing was kept; please try again later.",
        ));
    }

    // store only the de-identified ZIP, then the row and its job; undo the object if the
    // row fails
    let store = state.store.clone();
    let key = storage::new_key(".zip");
    let object_bytes = match store.put_file(&key, &out).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot store the de-identified archive");
            let _ = store.delete(&key).await;
            return Err(ApiError::internal());
        }
    };
    let scan_id = hex::encode(rand::random::<[u8; 16]>());
    if let Err(e) = insert_scan(
        &state.db,
        &scan_id,
        &meta,
        &key,
        object_bytes,
        &outcome,
    )
    .await
    {
        tracing::error!(error = %e, "cannot record the scan");
        let _ = store.delete(&key).await;
        return Err(ApiError::internal());
    }
    state.wake.notify_waiters();
    tracing::info!(
        upload = %id,
        scan = %scan_id,
        files = outcome.report.files_written,
        bytes_in = meta.size,
        bytes_out = object_bytes,
        ms = started.elapsed().as_millis() as u64,
        "upload accepted and de-identified"
    );
    Ok(scan_id)
}

async fn insert_scan(
    db: &Db,
    scan_id: &str,
    meta: &Meta,
    key: &str,
    object_bytes: u64,
    outcome: &deid::Outcome,
) -> Result<(), sqlx::Error> {
    let facts = &outcome.facts;
    let study_date = facts
        .study_date
        .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day));
    // keywords and counts only (the report type holds no values)
    let report =
        serde_json::json!({ "report": outcome.report, "series": outcome.series }).to_string();
    let now = now_secs();
    // the row and its job together: a scan is never left without its job
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO scans (id, user_id, status, age_years, sex, study_date, object_key, object_bytes, files, report_json, created_at, updated_at, \
         discard_archive, nifti_key, labels_key, volumes_key) \
         VALUES ($1, $2, 'deidentified', $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14)",
    )
    .bind(scan_id)
    .bind(&meta.user_id)
    .bind(facts.age_years.map(i64::from))
    .bind(facts.sex.code().to_string())
    .bind(study_date)
    .bind(key)
    .bind(object_bytes as i64)
    .bind(outcome.report.files_written as i64)
    .bind(report)
    .bind(now)
    .bind(i64::from(meta.discard_archive))
    .bind(storage::new_key(".nii.gz"))
    .bind(storage::new_key("-labels.nii.gz"))
    .bind(storage::new_key("-volumes.json"))
    .execute(&mut *tx)
    .await?;
    crate::pipeline::enqueue(&mut tx, scan_id).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// abandoned uploads

/// Removes upload folders idle for longer than the expiry, now and then periodically.
pub fn spawn_sweeper(state: &AppState) {
    let dir = uploads_dir(state);
    let s = settings();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(s.sweep_secs));
        loop {
            tick.tick().await;
            let dir = dir.clone();
            let removed = tokio::task::spawn_blocking(move || {
                sweep(&dir, Duration::from_secs(s.expiry_secs))
            })
            .await
            .unwrap_or(0);
            if removed > 0 {
                tracing::info!(removed, "expired uploads removed");
            }
        }
    });
}

/// Idle = the newest modification time of the folder and its files.
fn sweep(dir: &FsPath, expiry: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let mut newest = e
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if let Ok(inner) = std::fs::read_dir(&path) {
            for f in inner.flatten() {
                if let Ok(t) = f.metadata().and_then(|m| m.modified()) {
                    newest = newest.max(t);
                }
            }
        }
        if now.duration_since(newest).unwrap_or_default() > expiry
            && std::fs::remove_dir_all(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

// ---------------------------------------------------------------------------------------
// the pages' view of scans (app::upload_api::ScanStore)

pub struct DbScanStore {
    pub db: Db,
}

fn summary_from(row: &sqlx::any::AnyRow) -> Result<ScanSummary, sqlx::Error> {
    Ok(ScanSummary {
        id: row.try_get("id")?,
        status: row.try_get("status")?,
        age_years: row
            .try_get::<Option<i64>, _>("age_years")?
            .and_then(|a| u32::try_from(a).ok()),
        sex: row.try_get("sex")?,
        study_date: row.try_get("study_date")?,
        created_at: row.try_get("created_at")?,
        files: row.try_get::<i64, _>("files")?.max(0) as u64,
    })
}

impl ScanStore for DbScanStore {
    fn list(&self, user_id: String) -> BoxFuture<Result<Vec<ScanSummary>, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, status, age_years, sex, study_date, created_at, files FROM scans \
                 WHERE user_id = $1 ORDER BY created_at DESC, id",
            )
            .bind(user_id)
            .fetch_all(&db)
            .await
            .map_err(|e| e.to_string())?;
            rows.iter()
                .map(summary_from)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())
        })
    }

    fn get(
        &self,
        user_id: String,
        scan_id: String,
    ) -> BoxFuture<Result<Option<ScanDetail>, String>> {
        let db = self.db.clone();
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, status, age_years, sex, study_date, created_at, files, object_bytes, report_json, \
                 archive_deleted, failure_reason, failure_retryable, conversion_json, result_json FROM scans \
                 WHERE user_id = $1 AND id = $2",
            )
            .bind(user_id)
            .bind(&scan_id)
            .fetch_optional(&db)
            .await
            .map_err(|e| e.to_string())?;
            let Some(row) = row else { return Ok(None) };
            detail_from(&db, &scan_id, &row).await.map(Some).map_err(|e| e.to_string())
        })
    }
}

async fn detail_from(db: &Db, scan_id: &str, row: &sqlx::any::AnyRow) -> Result<ScanDetail, sqlx::Error> {
    let summary = summary_from(row)?;
    let object_bytes = row.try_get::<i64, _>("object_bytes")?.max(0) as u64;
    let report: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("report_json")?).unwrap_or_default();
    let r = &report["report"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let conversion: Option<crate::pipeline::ConversionFacts> = row
        .try_get::<Option<String>, _>("conversion_json")?
        .and_then(|c| serde_json::from_str(&c).ok());
    let result: Option<crate::pipeline::score::Report> = row
        .try_get::<Option<String>, _>("result_json")?
        .and_then(|c| serde_json::from_str(&c).ok());
    let mut warnings: Vec<(String, String)> = Vec::new();
    if let Some(res) = &result {
        warnings.extend(res.warnings.iter().map(|w| (w.code.clone(), w.message.clone())));
    } else if let Some(c) = &conversion {
        warnings.extend(c.warnings.iter().map(|w| (w.code.clone(), w.message.clone())));
    }
    let regions = sqlx::query("SELECT name, volume_mm3, percentile, flag FROM scan_regions WHERE scan_id = $1 ORDER BY label, name")
        .bind(scan_id)
        .fetch_all(db)
        .await?
        .iter()
        .map(|r| {
            Ok(app::upload_api::RegionRow {
                name: r.try_get("name")?,
                volume_mm3: r.try_get("volume_mm3")?,
                percentile: r.try_get("percentile")?,
                flag: r.try_get("flag")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(ScanDetail {
        summary,
        object_bytes,
        attributes_removed: r["removed"].as_object().map_or(0, |m| m.len() as u64),
        private_elements_removed: n(&r["private_elements_removed"]),
        overlay_elements_removed: n(&r["overlay_elements_removed"]),
        uids_replaced: n(&r["distinct_uids_replaced"]),
        archive_deleted: row.try_get::<i64, _>("archive_deleted")? != 0,
        failure_reason: row.try_get("failure_reason")?,
        failure_retryable: row.try_get::<i64, _>("failure_retryable")? != 0,
        warnings,
        voxel_mm: conversion.as_ref().map(|c| c.voxel_mm),
        model: result.as_ref().map(|r| r.model.clone()),
        icv_mm3: result.as_ref().and_then(|r| r.icv_mm3),
        regions,
        csrf_token: String::new(),
    })
}
