//! `/auth/*`: the account forms' endpoints. They answer with `303 See Other` redirects
//! (Post/Redirect/Get); errors travel as a code in the query, never as user data.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use app::SessionInfo;
use app::account::AuditKind;
use app::auth_rules::AuthNotice;

use super::AppState;
use super::client::Client;
use super::security::{CSRF_COOKIE, SESSION_COOKIE, cookie_value, set_cookie};
use crate::audit;
use crate::auth::{self, LogInError, SignUpError};

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_confirm: String,
}

#[derive(Deserialize)]
pub struct LogInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    /// Where the visitor was going (`/login?next=`); only a local path is followed.
    #[serde(default)]
    next: String,
}

pub(super) fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

pub(super) fn internal_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "account request failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on our side. Please try again in a moment.",
    )
        .into_response()
}

/// Sets the session cookie and rotates the CSRF token: the new token is bound to the new
/// session (`csrf.rs`), so a token seen before sign-in is never valid after it.
pub(super) async fn start_session(state: &AppState, user_id: &str, next: &str) -> Response {
    let token = match auth::create_session(&state.db, user_id, state.config.session_days).await {
        Ok(t) => t,
        Err(e) => return internal_error(e),
    };
    let mut resp = see_other(app::auth_rules::safe_next(next).unwrap_or("/home"));
    let max_age = state.config.session_days as i64 * 86_400;
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, &token, Some(max_age)),
    );
    let csrf = state.csrf.mint(&super::csrf::binding(Some(&token)));
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(state, CSRF_COOKIE, &csrf, None));
    resp
}

pub async fn sign_up(State(state): State<AppState>, Client(origin): Client, Form(form): Form<SignUpForm>) -> Response {
    match auth::sign_up(&state.db, &form.email, &form.password, &form.password_confirm).await {
        Ok(user) => {
            tracing::info!(account = %user.id, "account created");
            audit::note(&state.db, &user.id, AuditKind::AccountCreated, "", &origin).await;
            start_session(&state, &user.id, "/home").await
        }
        Err(SignUpError::Rejected(notice)) => see_other(&format!("/signup?error={}", notice.code())),
        Err(SignUpError::Internal(e)) => internal_error(e),
    }
}

/// A refused sign-in into the account's audit log, off the answer's path: the answer
/// takes the same time whether the email has an account or not.
fn note_refusal(state: &AppState, account: Option<String>, kind: AuditKind, origin: audit::Origin) {
    if let Some(account) = account {
        let db = state.db.clone();
        tokio::spawn(async move { audit::note(&db, &account, kind, "", &origin).await });
    }
}

pub async fn log_in(State(state): State<AppState>, Client(origin): Client, Form(form): Form<LogInForm>) -> Response {
    match auth::log_in(&state.db, &state.config, &form.email, &form.password, &origin.ip).await {
        Ok(user) => {
            tracing::info!(account = %user.id, "signed in");
            audit::note(&state.db, &user.id, AuditKind::SignInSucceeded, "", &origin).await;
            start_session(&state, &user.id, &form.next).await
        }
        Err(LogInError::InvalidCredentials { account }) => {
            tracing::info!("sign-in refused");
            note_refusal(&state, account, AuditKind::SignInFailed, origin);
            see_other(&with_next(
                format!("/login?error={}", AuthNotice::InvalidCredentials.code()),
                &form.next,
            ))
        }
        Err(LogInError::Throttled { account }) => {
            tracing::warn!("sign-in throttled");
            note_refusal(&state, account, AuditKind::SignInThrottled, origin);
            let mut resp = see_other(&with_next(
                format!("/login?error={}", AuthNotice::Throttled.code()),
                &form.next,
            ));
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(state.config.login_window_secs));
            resp
        }
        Err(LogInError::Internal(e)) => internal_error(e),
    }
}

pub async fn log_out(
    State(state): State<AppState>,
    Client(origin): Client,
    Extension(session): Extension<SessionInfo>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie_value(&headers, SESSION_COOKIE)
        && let Err(e) = auth::end_session(&state.db, token).await
    {
        return internal_error(e);
    }
    if let Some(user) = &session.user {
        audit::note(&state.db, &user.id, AuditKind::SignedOut, "", &origin).await;
    }
    let mut resp = see_other(&format!("/login?notice={}", AuthNotice::SignedOut.code()));
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&state, SESSION_COOKIE, "", Some(0)));
    // the old token was bound to the ended session: a visitor's token replaces it
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, CSRF_COOKIE, &state.csrf.mint(""), None),
    );
    resp
}

/// A sign-in page URL that keeps the visitor's safe `next` (for another try).
fn with_next(url: String, next: &str) -> String {
    match app::auth_rules::safe_next(next) {
        Some(n) => format!("{url}&next={n}"),
        None => url,
    }
}
