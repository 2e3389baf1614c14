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

mod complete;
mod sweeper;

use std::path::{Path as FsPath, PathBuf};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::AppState;
use super::api_error::ApiError;
use super::rate_limit::Action;
use super::signed_in::SignedIn;
use crate::db::now_secs;

pub use complete::complete;
pub use sweeper::spawn_sweeper;

const MIB: u64 = 1024 * 1024;
/// Largest chunk a client may use (and the default); the route's body limit.
pub const MAX_CHUNK: u64 = 8 * MIB;
const MIN_CHUNK: u64 = 64 * 1024;
/// Open (not yet completed) uploads one account may have.
const MAX_OPEN_PER_USER: usize = 3;
/// All open uploads together may reserve this many times the per-upload cap.
const TEMP_SPACE_UPLOADS: u64 = 8;

pub fn uploads_dir(state: &AppState) -> PathBuf {
    state.config.tmp_dir().join("uploads")
}

fn deid_error(e: &deid::DeidError) -> ApiError {
    let status = match e {
        deid::DeidError::Output => return ApiError::internal(),
        e if e.is_over_limit() => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    // The crate's Display texts are plain language and never contain values or names.
    ApiError::new(status, e.code(), e.to_string())
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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
}

pub async fn create(
    State(state): State<AppState>,
    SignedIn { user_id: user }: SignedIn,
    body: Result<Json<CreateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    state.limits.check(&user, Action::CreateUpload)?;
    let Json(req) = body.map_err(|e| ApiError::from_json_rejection(&e, "The upload request was malformed."))?;
    let max_bytes = state.config.upload_max_bytes;
    if req.size == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_file",
            "The file is empty.",
        ));
    }
    if req.size > max_bytes {
        tracing::info!(size = req.size, limit = max_bytes, "upload refused: over the size cap");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("The file is too large (the limit is {} MiB).", max_bytes.div_ceil(MIB)),
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
    if reserved.saturating_add(req.size) > max_bytes.saturating_mul(TEMP_SPACE_UPLOADS) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "The server is busy receiving other uploads. Please try again in a few minutes.",
        ));
    }
    let chunk_size = req.chunk_size.unwrap_or(MAX_CHUNK).clamp(MIN_CHUNK, MAX_CHUNK);
    let id = hex::encode(rand::random::<[u8; 16]>());
    let meta = Meta {
        user_id: user,
        size: req.size,
        chunk_size,
        series: req.series,
        created_at: now_secs(),
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
    SignedIn { user_id: user }: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (dir, meta) = load(&state, &id, &user).await?;
    Ok(Json(status_of(&id, &dir, &meta).await).into_response())
}

pub async fn put_chunk(
    State(state): State<AppState>,
    SignedIn { user_id: user }: SignedIn,
    Path((id, index)): Path<(String, u64)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.limits.check(&user, Action::PutChunk)?;
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
        if !tokio::fs::try_exists(dir.join("meta.json")).await.unwrap_or(false) {
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
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "completing",
            "This upload is already being processed.",
        ));
    }
    Ok(())
}

pub async fn cancel(
    State(state): State<AppState>,
    SignedIn { user_id: user }: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (dir, _) = load(&state, &id, &user).await?;
    ensure_not_completing(&dir).await?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Removes every open upload of an account (its deletion); returns how many.
pub async fn discard_uploads_of(state: &AppState, user: &str) -> usize {
    let mut removed = 0;
    let Ok(mut rd) = tokio::fs::read_dir(uploads_dir(state)).await else {
        return 0;
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        if let Ok(raw) = tokio::fs::read(e.path().join("meta.json")).await
            && serde_json::from_slice::<Meta>(&raw).is_ok_and(|m| m.user_id == user)
            && tokio::fs::remove_dir_all(e.path()).await.is_ok()
        {
            removed += 1;
        }
    }
    removed
}
