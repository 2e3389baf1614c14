//! The slice viewer's data: `GET /scans/{id}/viewer.json` gives the scan's owner two
//! short-lived same-origin URLs, `GET /scans/{id}/view/{volume|labels}.nii.gz?exp=..&sig=..`,
//! and the labels' names and colours. A URL is signed for its account, scan, file and
//! expiry (`CsrfKey::sign_for`), and is served only to that account's session: it cannot be
//! bookmarked, shared or used by another account, and another account's scan answers like a
//! missing one. Viewing is not a download: the pages' pictures, too, are not audited.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use app::scans_api::ScanFile;

use super::AppState;
use super::api_error::ApiError;
use super::scan_actions::{no_such_file, plausible_id, read_file};
use super::signed_in::SignedIn;
use crate::storage::unix_now;

/// How long a viewer URL works: long enough to load both volumes, short enough that a
/// copied URL is soon worthless.
pub const VIEWER_URL_TTL_SECS: u64 = 300;

/// The files the viewer loads.
const VIEWED: [ScanFile; 2] = [ScanFile::Volume, ScanFile::Labels];

/// The signature's domain (`CsrfKey::sign_for`).
const PURPOSE: &str = "viewer-url";

#[derive(Serialize)]
pub struct ViewerData {
    /// Same-origin URLs of the de-identified volume and the labels.
    volume: String,
    labels: String,
    /// Unix seconds after which the URLs answer "not found".
    expires_at: u64,
    /// `ScanFile::LabelColours`' JSON: the model's label values, names and colours.
    colours: serde_json::Value,
}

#[derive(Deserialize)]
pub struct Signature {
    exp: Option<u64>,
    sig: Option<String>,
}

fn signed_message(user_id: &str, scan_id: &str, file: ScanFile, exp: u64) -> String {
    format!("{user_id}\n{scan_id}\n{}\n{exp}", file.file_name())
}

/// `GET /scans/{id}/viewer.json`: the viewer's URLs and colours, for a processed scan.
pub async fn data(
    State(state): State<AppState>,
    user: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<ViewerData>, ApiError> {
    if !plausible_id(&id) {
        return Err(no_such_file());
    }
    let source = crate::scans::file_source(
        &state.db,
        &state.config.assets_dir,
        &user.user_id,
        &id,
        ScanFile::LabelColours,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "viewer: cannot look up a scan");
        ApiError::internal()
    })?;
    // the colours exist exactly when the scan is done (and its model known)
    let Some(crate::scans::FileSource::Made(colours)) = source else {
        return Err(no_such_file());
    };
    let colours = serde_json::from_slice(&colours).map_err(|_| ApiError::internal())?;
    let expires_at = unix_now() + VIEWER_URL_TTL_SECS;
    let url = |file: ScanFile| {
        let sig = state
            .csrf
            .sign_for(PURPOSE, &signed_message(&user.user_id, &id, file, expires_at));
        format!("/scans/{id}/view/{}?exp={expires_at}&sig={sig}", file.file_name())
    };
    Ok(Json(ViewerData {
        volume: url(ScanFile::Volume),
        labels: url(ScanFile::Labels),
        expires_at,
        colours,
    }))
}

/// `GET /scans/{id}/view/{name}?exp=..&sig=..`: the volume or the labels, to the account
/// the URL was signed for, until it expires; anything else answers "not found".
pub async fn file(
    State(state): State<AppState>,
    user: SignedIn,
    Path((id, name)): Path<(String, String)>,
    Query(signature): Query<Signature>,
) -> Result<Response, ApiError> {
    let file = ScanFile::parse(&name)
        .filter(|f| VIEWED.contains(f) && plausible_id(&id))
        .ok_or_else(no_such_file)?;
    let (Some(exp), Some(sig)) = (signature.exp, signature.sig) else {
        return Err(no_such_file());
    };
    let signed = state
        .csrf
        .verify_for(PURPOSE, &signed_message(&user.user_id, &id, file, exp), &sig);
    if !signed || unix_now() > exp {
        return Err(no_such_file());
    }
    let (body, len) = read_file(&state, &user.user_id, &id, file).await?;
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(file.content_type()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
