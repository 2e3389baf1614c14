//! Actions on a scan from its page: `POST /scans/{id}/retry` (a failed scan's Retry button).
//! A plain form post (CSRF token checked by the middleware) answered with a `303` back to
//! the scan's page, so it works without JavaScript.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::signed_in::SignedIn;

pub async fn retry(State(state): State<AppState>, user: SignedIn, Path(id): Path<String>) -> Response {
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    match crate::pipeline::retry(&state.db, &user.user_id, &id).await {
        Ok(true) => {
            tracing::info!(scan = %id, "scan retry requested");
            state.wake.notify_waiters();
        }
        // not failed (any more), not retryable or not theirs: the page shows the truth
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "cannot queue a retry");
            return (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side. Please try again.").into_response();
        }
    }
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/scans/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}
