//! `/account/*`: the account page's forms. Plain form posts (CSRF checked by the
//! middleware) answered with `303` back to the page with a notice code, so they work
//! without the page's WASM; the export answers with the ZIP itself.
//!
//! Deleting the account and changing the password ask for the password again (with
//! sign-in's throttling); a wrong one changes nothing and is written to the audit log.

use axum::Form;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use app::account::AuditKind;
use app::auth_rules::AuthNotice;

use super::AppState;
use super::auth_routes::{internal_error, see_other};
use super::client::Client;
use super::security::{CSRF_COOKIE, SESSION_COOKIE, cookie_value, set_cookie};
use super::signed_in::SignedIn;
use crate::audit::{self, Origin};
use crate::auth::{self, LogInError, PasswordChangeError};

pub(super) fn back(notice: AuthNotice, anchor: &str) -> Response {
    let which = if notice.is_error() { "error" } else { "notice" };
    see_other(&format!("/account?{which}={}#{anchor}", notice.code()))
}

/// The password asked for again: `Err(answer)` unless it is right.
pub(super) async fn reauthenticate(
    state: &AppState,
    user_id: &str,
    password: &str,
    origin: &Origin,
    anchor: &str,
) -> Result<(), Response> {
    match auth::confirm_password(&state.db, &state.config, user_id, password, &origin.ip).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            audit::note(&state.db, user_id, AuditKind::PasswordCheckFailed, "", origin).await;
            Err(back(AuthNotice::PasswordWrong, anchor))
        }
        Err(LogInError::Throttled { .. }) => {
            audit::note(&state.db, user_id, AuditKind::SignInThrottled, "", origin).await;
            let mut resp = back(AuthNotice::Throttled, anchor);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(state.config.login_window_secs));
            Err(resp)
        }
        Err(LogInError::InvalidCredentials { .. }) => Err(back(AuthNotice::PasswordWrong, anchor)),
        Err(LogInError::Internal(e)) => Err(internal_error(e)),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

/// `POST /account/password`: a new password; every other session of the account ends.
pub async fn change_password(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    headers: HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Response {
    if let Err(resp) = reauthenticate(&state, &user.user_id, &form.current_password, &origin, "password").await {
        return resp;
    }
    let keep = cookie_value(&headers, SESSION_COOKIE).unwrap_or_default();
    match auth::change_password(&state.db, &user.user_id, keep, &form.password, &form.password_confirm).await {
        Ok(ended) => {
            tracing::info!(sessions_ended = ended, "password changed");
            audit::note(&state.db, &user.user_id, AuditKind::PasswordChanged, "", &origin).await;
            back(AuthNotice::PasswordChanged, "password")
        }
        Err(PasswordChangeError::Rejected(notice)) => back(notice, "password"),
        Err(PasswordChangeError::Internal(e)) => internal_error(e),
    }
}

/// `POST /account/export`: the ZIP of everything held for the account (`export.rs`),
/// streamed from its file.
pub async fn export(State(state): State<AppState>, user: SignedIn, Client(origin): Client) -> Response {
    let started = std::time::Instant::now();
    let export = match crate::export::build(&state.db, &*state.store, &state.config, &user.user_id).await {
        Ok(e) => e,
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "export: the object store is unavailable");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "Your files cannot be read right now. Please try again in a few minutes.",
            )
                .into_response();
        }
        Err(e) => return internal_error(e),
    };
    tracing::info!(
        bytes = export.bytes,
        ms = started.elapsed().as_millis() as u64,
        "export built"
    );
    audit::note(&state.db, &user.user_id, AuditKind::ExportDownloaded, "", &origin).await;
    let day = crate::db::now_secs() / 86_400;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(
        export.file,
    )));
    attachment(
        body,
        export.bytes,
        "application/zip",
        &format!("neurovol-export-{day}.zip"),
    )
}

/// A file to save: `body` of `bytes` bytes.
pub(super) fn attachment(body: Body, bytes: u64, content_type: &str, name: &str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    password: String,
}

/// `POST /account/delete`: the account and everything of it, at once (`deletion.rs`); the
/// browser is signed out and sent to the receipt.
pub async fn delete_account(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    Form(form): Form<DeleteForm>,
) -> Response {
    if let Err(resp) = reauthenticate(&state, &user.user_id, &form.password, &origin, "delete").await {
        return resp;
    }
    erase_account(&state, &user.user_id).await
}

/// Deletes the (re-authenticated) account at once and ends its session: the receipt's page.
pub(super) async fn erase_account(state: &AppState, user_id: &str) -> Response {
    let settle = crate::deletion::Settings::from_config(&state.config).settle;
    let receipt = match crate::deletion::delete_account(&state.db, user_id, settle).await {
        Ok(Some(r)) => r,
        // deleted meanwhile (another tab): its session is gone too
        Ok(None) => return see_other("/"),
        Err(e) => return internal_error(e),
    };
    let uploads = super::upload::discard_uploads_of(state, user_id).await;
    state.deletions.notify_waiters();
    tracing::info!(receipt = %receipt, uploads_discarded = uploads, "account deleted");
    let mut resp = see_other(&format!("/deleted/{receipt}"));
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, set_cookie(state, SESSION_COOKIE, "", Some(0)));
    h.append(
        header::SET_COOKIE,
        set_cookie(state, CSRF_COOKIE, &state.csrf.mint(""), None),
    );
    resp
}
