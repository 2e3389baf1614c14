//! `/auth/google*` and `/account/google/*`: Google sign-in, linking and unlinking
//! (`crate::oidc` does the protocol). Without `NEUROVOL_GOOGLE_*` every one answers 404.
//!
//! A refused callback answers 4xx with a sentence, sets no session, and is written to the
//! audit log of the account it concerns (the account that started a link, else the
//! browser's signed-in account); a visitor's refused sign-in, which concerns no account, is
//! written as a content-free row of no account (`audit::note_refusal`).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use app::SessionInfo;
use app::account::AuditKind;
use app::auth_rules::AuthNotice;

use super::AppState;
use super::account_routes::{back, erase_account, reauthenticate};
use super::auth_routes::{internal_error, see_other, start_session};
use super::client::Client;
use super::scan_actions::{erase_scan, owned_scan};
use super::security::{cookie_value, set_cookie};
use super::signed_in::SignedIn;
use crate::audit::{self, Origin};
use crate::oidc::{self, Identity, OidcError, Purpose};

/// Binds a started flow to the browser that started it (`oidc_flows.browser_hash`).
pub const FLOW_COOKIE: &str = "nv_oidc";

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Not found").into_response()
}

/// A refusal page: a status and a sentence, and the way back.
fn refused(status: StatusCode, sentence: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in refused · NeuroVol</title></head>\
         <body><main><h1>Google sign-in did not work</h1><p>{sentence}</p><p><a href=\"/login\">Back to sign-in</a></p></main></body></html>"
    );
    let mut resp = (status, Html(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    resp
}

fn sentence(e: &OidcError) -> (StatusCode, &'static str) {
    match e {
        OidcError::Provider => (
            StatusCode::BAD_GATEWAY,
            "Google cannot be reached right now. Please try again in a moment.",
        ),
        OidcError::UnknownFlow => (
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired or was already used. Please start again.",
        ),
        OidcError::Denied => (StatusCode::FORBIDDEN, "Google did not confirm the sign-in."),
        OidcError::TokenExchange | OidcError::InvalidToken(_) => (
            StatusCode::FORBIDDEN,
            "Google's answer could not be verified, so we did not sign you in.",
        ),
        OidcError::EmailUnverified => (
            StatusCode::FORBIDDEN,
            "Your Google account's email address is not verified. Verify it with Google, then try again.",
        ),
        OidcError::Db(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side. Please try again in a moment.",
        ),
    }
}

/// Sends the browser to the provider, with the flow's cookie.
async fn begin(state: &AppState, purpose: Purpose, user_id: Option<&str>, scan_id: Option<&str>) -> Response {
    let Some(google) = &state.google else {
        return not_found();
    };
    match google.start(&state.db, purpose, user_id, scan_id).await {
        Ok(started) => {
            let mut resp = see_other(&started.authorize_url);
            resp.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(state, FLOW_COOKIE, &started.browser_cookie, Some(oidc::FLOW_SECS)),
            );
            resp
        }
        Err(e) => {
            tracing::warn!(code = e.code(), "cannot start a Google sign-in");
            let (status, text) = sentence(&e);
            refused(status, text)
        }
    }
}

/// `POST /auth/google`: a visitor signs in (or up) with Google.
pub async fn start(State(state): State<AppState>) -> Response {
    begin(&state, Purpose::SignIn, None, None).await
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
}

/// `POST /account/google/link`: after the password again, the account links Google.
pub async fn link(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    Form(form): Form<PasswordForm>,
) -> Response {
    if state.google.is_none() {
        return not_found();
    }
    if let Err(resp) = reauthenticate(&state, &user.user_id, &form.password, &origin, "methods").await {
        return resp;
    }
    begin(&state, Purpose::Link, Some(&user.user_id), None).await
}

/// `POST /account/google/unlink`: after the password again; an account without a password
/// keeps its Google sign-in.
pub async fn unlink(
    State(state): State<AppState>,
    user: SignedIn,
    Client(origin): Client,
    Form(form): Form<PasswordForm>,
) -> Response {
    if state.google.is_none() {
        return not_found();
    }
    if let Err(resp) = reauthenticate(&state, &user.user_id, &form.password, &origin, "methods").await {
        return resp;
    }
    match oidc::unlink(&state.db, &user.user_id).await {
        Ok(true) => {
            audit::note(&state.db, &user.user_id, AuditKind::GoogleUnlinked, "", &origin).await;
            back(AuthNotice::GoogleUnlinked, "methods")
        }
        Ok(false) => back(AuthNotice::GoogleNotLinked, "methods"),
        Err(e) => internal_error(e),
    }
}

/// `POST /account/delete/google`: an account with Google sign-in confirms its deletion by
/// a fresh Google sign-in (its only way to re-authenticate when it has no password); the
/// callback deletes the account when Google returns the same subject.
pub async fn delete_account(State(state): State<AppState>, user: SignedIn) -> Response {
    if state.google.is_none() {
        return not_found();
    }
    match oidc::identity_of(&state.db, &user.user_id).await {
        Ok(Some(_)) => begin(&state, Purpose::Reauth, Some(&user.user_id), None).await,
        Ok(None) => back(AuthNotice::GoogleNotLinked, "delete"),
        Err(e) => internal_error(e),
    }
}

/// `POST /scans/{id}/delete/google`: an account with Google sign-in confirms the deletion
/// of one of its scans by a fresh Google sign-in; the flow carries the scan's id, and the
/// callback deletes the scan when Google returns the same subject and the account still
/// owns it. Another account's scan answers exactly like a missing one.
pub async fn delete_scan(State(state): State<AppState>, user: SignedIn, Path(id): Path<String>) -> Response {
    if state.google.is_none() {
        return not_found();
    }
    // the scan first: another account's answers like a missing one, whatever else
    if let Err(resp) = owned_scan(&state, &user.user_id, &id).await {
        return resp;
    }
    match oidc::identity_of(&state.db, &user.user_id).await {
        Ok(Some(_)) => begin(&state, Purpose::DeleteScan, Some(&user.user_id), Some(&id)).await,
        Ok(None) => see_other(&format!(
            "/scans/{id}?error={}#delete",
            AuthNotice::GoogleNotLinked.code()
        )),
        Err(e) => internal_error(e),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    error: Option<String>,
}

/// Clears the flow cookie on any answer of the callback.
fn without_flow_cookie(state: &AppState, mut resp: Response) -> Response {
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(state, FLOW_COOKIE, "", Some(0)));
    resp
}

/// `GET /auth/google/callback`: the provider sends the browser back here.
pub async fn callback(
    State(state): State<AppState>,
    Client(origin): Client,
    Extension(session): Extension<SessionInfo>,
    headers: HeaderMap,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let Some(google) = state.google.clone() else {
        return not_found();
    };
    // a refusal goes to the log of the account that started the flow, else of the
    // browser's signed-in account
    let signed_in = session.user.as_ref().map(|u| u.id.clone());
    // the flow row goes first: a replay or a forged state ends here, before the token call
    let flow = match oidc::take_flow(&state.db, &query.state, cookie_value(&headers, FLOW_COOKIE)).await {
        Ok(flow) => flow,
        Err(e) => return without_flow_cookie(&state, refuse(&state, signed_in.as_deref(), &e, &origin).await),
    };
    let verified = if query.error.is_some() || query.code.is_empty() {
        Err(OidcError::Denied)
    } else {
        google.finish(&flow, &query.code).await
    };
    let identity = match verified {
        Ok(identity) => identity,
        Err(e) => {
            let account = flow.user_id.as_deref().or(signed_in.as_deref());
            return without_flow_cookie(&state, refuse(&state, account, &e, &origin).await);
        }
    };
    let resp = match flow.purpose {
        Purpose::SignIn => sign_in(&state, &identity, &origin).await,
        Purpose::Link => match &flow.user_id {
            Some(user_id) => link_identity(&state, user_id, &identity, &origin).await,
            None => refuse(&state, None, &OidcError::UnknownFlow, &origin).await,
        },
        Purpose::Reauth => match &flow.user_id {
            Some(user_id) => delete_after_reauth(&state, user_id, &identity, &origin).await,
            None => refuse(&state, None, &OidcError::UnknownFlow, &origin).await,
        },
        Purpose::DeleteScan => match (&flow.user_id, &flow.scan_id) {
            (Some(user_id), Some(scan_id)) => {
                delete_scan_after_reauth(&state, user_id, scan_id, &identity, &origin).await
            }
            _ => refuse(&state, flow.user_id.as_deref(), &OidcError::UnknownFlow, &origin).await,
        },
    };
    without_flow_cookie(&state, resp)
}

/// Logs and answers a refused callback.
async fn refuse(state: &AppState, account: Option<&str>, e: &OidcError, origin: &Origin) -> Response {
    if let OidcError::Db(inner) = e {
        return internal_error(inner);
    }
    tracing::info!(code = e.code(), reason = e.reason(), "Google sign-in refused");
    match account {
        Some(account) => audit::note(&state.db, account, AuditKind::GoogleSignInFailed, e.reason(), origin).await,
        // a visitor's refused sign-in concerns no account: a content-free row of none
        None => audit::note_refusal(&state.db, AuditKind::GoogleSignInFailed, e.reason(), origin).await,
    }
    let (status, text) = sentence(e);
    refused(status, text)
}

async fn sign_in(state: &AppState, identity: &Identity, origin: &Origin) -> Response {
    let account = match oidc::account_of(&state.db, &identity.issuer, &identity.subject).await {
        Ok(a) => a,
        Err(e) => return internal_error(e),
    };
    let user_id = match account {
        Some(id) => id,
        None => match oidc::create_account(&state.db, identity).await {
            Ok(oidc::SignUp::Created(id)) => {
                tracing::info!(account = %id, "account created through Google");
                audit::note(&state.db, &id, AuditKind::AccountCreated, "", origin).await;
                id
            }
            Ok(oidc::SignUp::EmailTaken) => {
                tracing::info!("Google sign-in refused: the email has a password account");
                audit::note_refusal(&state.db, AuditKind::GoogleSignInFailed, "email_taken", origin).await;
                return refused(
                    StatusCode::CONFLICT,
                    "An account with this email address already exists. Sign in with your password, \
                     then link Google on your account page.",
                );
            }
            Err(e) => return internal_error(e),
        },
    };
    tracing::info!(account = %user_id, "signed in with Google");
    audit::note(&state.db, &user_id, AuditKind::GoogleSignInSucceeded, "", origin).await;
    start_session(state, &user_id, "/home").await
}

/// Whether a fresh sign-in is the account's own Google identity: `Ok(())`, or the answer to
/// give instead (another identity: 403 and an audit row; none linked any more: `unlinked`).
async fn confirm_own_identity(
    state: &AppState,
    user_id: &str,
    identity: &Identity,
    origin: &Origin,
    unlinked: impl FnOnce() -> Response,
) -> Result<(), Response> {
    match oidc::identity_of(&state.db, user_id).await {
        Ok(Some((issuer, subject))) if issuer == identity.issuer && subject == identity.subject => Ok(()),
        Ok(Some(_)) => {
            audit::note(
                &state.db,
                user_id,
                AuditKind::GoogleSignInFailed,
                "other_subject",
                origin,
            )
            .await;
            Err(refused(
                StatusCode::FORBIDDEN,
                "That Google account is not the one linked to your account, so nothing was deleted.",
            ))
        }
        Ok(None) => Err(unlinked()),
        Err(e) => Err(internal_error(e)),
    }
}

/// The account's deletion, when the fresh sign-in is the account's own Google identity.
async fn delete_after_reauth(state: &AppState, user_id: &str, identity: &Identity, origin: &Origin) -> Response {
    // deleted or unlinked meanwhile: nothing to confirm
    match confirm_own_identity(state, user_id, identity, origin, || see_other("/")).await {
        Ok(()) => erase_account(state, user_id).await,
        Err(answer) => answer,
    }
}

/// The scan's deletion, when the fresh sign-in is the account's own Google identity and
/// the account (still) owns the scan; else nothing is deleted.
async fn delete_scan_after_reauth(
    state: &AppState,
    user_id: &str,
    scan_id: &str,
    identity: &Identity,
    origin: &Origin,
) -> Response {
    let unlinked = || {
        see_other(&format!(
            "/scans/{scan_id}?error={}#delete",
            AuthNotice::GoogleNotLinked.code()
        ))
    };
    match confirm_own_identity(state, user_id, identity, origin, unlinked).await {
        // `erase_scan` deletes only a scan of this account: another's answers like a missing one
        Ok(()) => erase_scan(state, user_id, scan_id, origin).await,
        Err(answer) => answer,
    }
}

async fn link_identity(state: &AppState, user_id: &str, identity: &Identity, origin: &Origin) -> Response {
    match oidc::link(&state.db, user_id, identity).await {
        Ok(oidc::Link::Linked) => {
            tracing::info!(account = %user_id, "Google linked");
            audit::note(&state.db, user_id, AuditKind::GoogleLinked, "", origin).await;
            back(AuthNotice::GoogleLinked, "methods")
        }
        Ok(oidc::Link::AlreadyLinked) => back(AuthNotice::GoogleAlreadyLinked, "methods"),
        Ok(oidc::Link::TakenByAnother) => {
            audit::note(
                &state.db,
                user_id,
                AuditKind::GoogleSignInFailed,
                "google_in_use",
                origin,
            )
            .await;
            refused(
                StatusCode::CONFLICT,
                "This Google account already signs in to another NeuroVol account.",
            )
        }
        Err(e) => internal_error(e),
    }
}
