//! `POST /uploads/{id}/complete`: assemble the chunks, de-identify them (authoritative),
//! refuse an unusable series, store the de-identified ZIP and insert the scan.

use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::AppState;
use crate::db::{Db, now_secs};
use crate::storage;

use super::*;
use app::scan_state::ScanStatus;

pub async fn complete(
    State(state): State<AppState>,
    SignedIn { user_id: user }: SignedIn,
    super::super::client::Client(origin): super::super::client::Client,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
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
    let task = tokio::spawn(finish_upload(state.clone(), id.clone(), dir, meta, origin));
    match task.await {
        Ok(Ok(scan_id)) => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "scan_id": scan_id, "status": ScanStatus::Deidentified, "url": format!("/scans/{scan_id}") })),
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
    origin: crate::audit::Origin,
) -> Result<String, ApiError> {
    let _guard = crate::temp_dir::TempDir::adopt(dir.clone());
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
            tracing::info!(upload = %id, code = err.code(), "upload refused by de-identification");
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
            std::fs::create_dir_all(&w).map_err(|source| crate::convert::ConvertError::Io {
                op: "create work dir",
                source,
            })?;
            crate::convert::convert(&zip, &w, &settings, None)
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
    if let Err(e) = insert_scan(&state.db, &scan_id, &meta, &key, object_bytes, &outcome, &origin).await {
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
    origin: &crate::audit::Origin,
) -> Result<(), sqlx::Error> {
    let facts = &outcome.facts;
    let study_date = facts.study_date.map(|d| d.to_string());
    // keywords and counts only (the report type holds no values), and the scanner (kept in
    // the files too) for comparing scans over time
    let report =
        serde_json::json!({ "report": outcome.report, "series": outcome.series, "scanner": facts.scanner }).to_string();
    let now = now_secs();
    // the row, its job and the audit event together: a scan is never left without its job
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO scans (id, user_id, status, age_years, sex, study_date, object_key, object_bytes, files, report_json, created_at, updated_at, \
         nifti_key, labels_key, volumes_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14)",
    )
    .bind(scan_id)
    .bind(&meta.user_id)
    .bind(ScanStatus::Deidentified.as_str())
    .bind(facts.age_years.map(i64::from))
    .bind(facts.sex.code().to_string())
    .bind(study_date)
    .bind(key)
    .bind(object_bytes as i64)
    .bind(outcome.report.files_written as i64)
    .bind(report)
    .bind(now)
    .bind(storage::new_key(".nii.gz"))
    .bind(storage::new_key("-labels.nii.gz"))
    .bind(storage::new_key("-volumes.json"))
    .execute(&mut *tx)
    .await?;
    crate::pipeline::enqueue(&mut tx, scan_id).await?;
    crate::audit::record(
        &mut *tx,
        &meta.user_id,
        app::account::AuditKind::UploadAccepted,
        scan_id,
        origin,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
