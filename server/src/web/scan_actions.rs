//! Actions on a scan from its page: `POST /scans/{id}/retry` (a failed scan's Retry
//! button), `POST /scans/{id}/delete` (after the password, again; an account without one
//! confirms by Google instead: `google_routes::delete_scan`) and
//! `GET /scans/{id}/files/{name}` (its files). The posts are plain forms (CSRF checked by
//! the middleware) answered with a `303`, so they work without JavaScript.
//!
//! Isolation: every action looks the scan up with the signed-in account's id, so another
//! account's scan answers exactly like a missing one (same status, same body).

use axum::Form;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use app::account::AuditKind;
use app::auth_rules::AuthNotice;
use app::scans_api::ScanFile;

use super::AppState;
use super::account_routes::attachment;
use super::api_error::ApiError;
use super::auth_routes::{internal_error, see_other};
use super::client::Client;
use super::signed_in::SignedIn;
use crate::audit;
use crate::auth::{self, LogInError};
use crate::object_store::StoreError;
use crate::scans::FileSource;

/// The answer for a scan that is missing, not this account's, or named wrongly.
pub(super) fn no_such_scan() -> Response {
    (StatusCode::NOT_FOUND, "Not found").into_response()
}

pub(super) fn plausible_id(id: &str) -> bool {
    id.len() <= 64 && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub async fn retry(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    Path(id): Path<String>,
) -> Response {
    if !plausible_id(&id) {
        return no_such_scan();
    }
    match crate::pipeline::retry(&state.db, &user.user_id, &id).await {
        Ok(true) => {
            tracing::info!(scan = %id, "scan retry requested");
            audit::note(&state.db, &user.user_id, AuditKind::ScanRetried, &id, &origin).await;
            state.wake.notify_waiters();
        }
        // not failed (any more), not retryable or not theirs: the page shows the truth
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot queue a retry");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side. Please try again.",
            )
                .into_response();
        }
    }
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/scans/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    password: String,
}

/// `POST /scans/{id}/delete`: the scan's rows at once, its files through the outbox
/// (`deletion.rs`); then the receipt.
pub async fn delete(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    // the scan first, the password second: a wrong password on another account's scan
    // answers like one on a missing scan
    if let Err(resp) = owned_scan(&state, &user.user_id, &id).await {
        return resp;
    }
    let again = |notice: AuthNotice| see_other(&format!("/scans/{id}?error={}#delete", notice.code()));
    match auth::confirm_password(&state.db, &state.config, &user.user_id, &form.password, &origin.ip).await {
        Ok(true) => {}
        Ok(false) => {
            audit::note(&state.db, &user.user_id, AuditKind::PasswordCheckFailed, &id, &origin).await;
            return again(AuthNotice::PasswordWrong);
        }
        Err(LogInError::Throttled { .. }) => return again(AuthNotice::Throttled),
        Err(LogInError::InvalidCredentials { .. }) => return again(AuthNotice::PasswordWrong),
        Err(LogInError::Internal(e)) => return internal_error(e),
    }
    erase_scan(&state, &user.user_id, &id, &origin).await
}

/// `Ok` when `id` names a scan of the account; else the answer (a missing scan's, the same
/// for another account's).
pub(super) async fn owned_scan(state: &AppState, user_id: &str, id: &str) -> Result<(), Response> {
    if !plausible_id(id) {
        return Err(no_such_scan());
    }
    let owned = sqlx::query("SELECT 1 AS one FROM scans WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .fetch_optional(&state.db)
        .await;
    match owned {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(no_such_scan()),
        Err(e) => Err(internal_error(e)),
    }
}

/// Deletes the (re-authenticated) account's scan at once: the receipt's page, or a missing
/// scan's answer when the account has no such scan (any more).
pub(super) async fn erase_scan(state: &AppState, user_id: &str, id: &str, origin: &audit::Origin) -> Response {
    let settle = crate::deletion::Settings::from_config(&state.config).settle;
    match crate::deletion::delete_scan(&state.db, user_id, id, origin, settle).await {
        Ok(Some(receipt)) => {
            tracing::info!(scan = %id, receipt = %receipt, "scan deleted");
            state.deletions.notify_waiters();
            see_other(&format!("/deleted/{receipt}"))
        }
        // deleted meanwhile (another tab)
        Ok(None) => no_such_scan(),
        Err(e) => internal_error(e),
    }
}

pub(super) fn no_such_file() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "This scan or file does not exist.")
}

/// What a download answers when the stored file cannot be read.
fn stored_file_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => no_such_file(),
        e if e.is_transient() => {
            tracing::warn!(error = %e, "download: the object store is unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "This file cannot be read right now. Please try again in a few minutes.",
            )
        }
        e => {
            tracing::error!(error = %e, "download: cannot read a stored file");
            ApiError::internal()
        }
    }
}

/// `GET /scans/{id}/files/{name}`: one file of the account's scan (`app::scans_api::ScanFile`).
pub async fn download(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let file = ScanFile::parse(&name)
        .filter(|_| plausible_id(&id))
        .ok_or_else(no_such_file)?;
    let (body, len) = read_file(&state, &user.user_id, &id, file).await?;
    let name = format!("neurovol-{}-{}", &id[..id.len().min(8)], file.file_name());
    let resp = attachment(body, len, file.content_type(), &name);
    // the picture is shown on the scan page itself: viewing the page is not a download
    if !file.is_picture() {
        audit::note(
            &state.db,
            &user.user_id,
            AuditKind::FileDownloaded,
            &format!("{id}/{}", file.file_name()),
            &origin,
        )
        .await;
    }
    Ok(resp)
}

/// One file of the account's scan as a body and its length: made, drawn or streamed from
/// the object store (through a private temporary file, gone once the body is open). A scan
/// that is not the account's answers like a missing one.
pub(super) async fn read_file(
    state: &AppState,
    user_id: &str,
    id: &str,
    file: ScanFile,
) -> Result<(Body, u64), ApiError> {
    let source = crate::scans::file_source(&state.db, &state.config.assets_dir, user_id, id, file)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot look up a scan's file");
            ApiError::internal()
        })?;
    let source = match source.ok_or_else(no_such_file)? {
        FileSource::PictureOf(picture) => FileSource::Made(
            crate::scans::draw(&*state.store, picture)
                .await
                .map_err(stored_file_error)?,
        ),
        other => other,
    };
    Ok(match source {
        FileSource::PictureOf(_) => unreachable!("drawn above"),
        FileSource::Made(bytes) => {
            let len = bytes.len() as u64;
            (Body::from(bytes), len)
        }
        FileSource::Object(key) => {
            let dir =
                crate::temp_dir::TempDir::new(&state.config.tmp_dir(), "download").map_err(|_| ApiError::internal())?;
            let path = dir.path().join("file");
            let len = state.store.get_to_file(&key, &path).await.map_err(stored_file_error)?;
            let f = tokio::fs::File::open(&path).await.map_err(|_| ApiError::internal())?;
            // the open file stays readable; the folder goes now, whatever the download does
            drop(dir);
            (Body::from_stream(tokio_util::io::ReaderStream::new(f)), len)
        }
    })
}
