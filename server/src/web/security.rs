//! Per-request security middleware: session lookup, CSRF token issue and check.
//!
//! CSRF: a signed double-submit token bound to the session (`csrf.rs`). Every visitor gets
//! an `nv_csrf` cookie (HttpOnly, SameSite=Lax) holding a token minted for their session (or
//! for no session); pages embed the same value in their forms. A state-changing request
//! (anything but GET/HEAD/OPTIONS) must echo it in the `x-csrf-token` header or the
//! `csrf_token` form field, the token must verify for the request's own session, and the
//! request must not come from another origin (`Origin`, `Sec-Fetch-Site`). A cross-site
//! page can neither read the cookie nor the page, so it cannot forge the echo, and a token
//! planted from elsewhere was minted for another session.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use app::SessionInfo;

use super::AppState;
use crate::auth;

pub const SESSION_COOKIE: &str = "nv_session";
pub const CSRF_COOKIE: &str = "nv_csrf";
/// Forms are small; anything bigger must use the header.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` value with the flags every NeuroVol cookie gets.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age_secs: Option<i64>) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if state.config.secure_cookies() {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Resolves the session and CSRF token for every request, checks CSRF on state-changing
/// ones, and issues the CSRF cookie to new visitors.
pub async fn session_and_csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Signed object URLs (web/objects.rs) are used by the worker, which has no cookies:
    // their HMAC signature is the authorization, checked by the handler before anything.
    if request
        .uri()
        .path()
        .strip_prefix("/objects/")
        .is_some_and(|key| !key.contains('/'))
    {
        return next.run(request).await;
    }
    let headers = request.headers();
    let user = match cookie_value(headers, SESSION_COOKIE) {
        Some(token) => match auth::session_user(&state.db, token).await {
            Ok(user) => user,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is temporarily unavailable.",
                )
                    .into_response();
            }
        },
        None => None,
    };
    // only a token minted for this request's session counts; any other is replaced
    let binding = super::csrf::binding(user.as_ref().and(cookie_value(headers, SESSION_COOKIE)));
    let existing_csrf = cookie_value(headers, CSRF_COOKIE)
        .filter(|t| state.csrf.verify(t, &binding))
        .map(str::to_string);
    let csrf_token = existing_csrf.clone().unwrap_or_else(|| state.csrf.mint(&binding));

    let mut request = request;
    if !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        match check_csrf(&state, request, existing_csrf.as_deref()).await {
            Ok(checked) => request = checked,
            Err(resp) => return resp,
        }
    }

    if let Some(user) = &user {
        tracing::Span::current().record("account", user.id.as_str());
    }
    request.extensions_mut().insert(SessionInfo {
        user,
        csrf_token: csrf_token.clone(),
        google_sign_in: state.google.is_some(),
    });
    let mut response = next.run(request).await;
    if existing_csrf.is_none() {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(&state, CSRF_COOKIE, &csrf_token, None));
    }
    response
}

async fn check_csrf(state: &AppState, request: Request, cookie_token: Option<&str>) -> Result<Request, Response> {
    let forbidden = |why: &'static str| {
        tracing::warn!(reason = why, "request refused by CSRF check");
        (StatusCode::FORBIDDEN, "This request was refused: the page it came from was not this site's, or it has expired. Reload the page and try again.")
            .into_response()
    };
    let headers = request.headers();
    if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Err(forbidden("cross-site fetch"));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !origin_allowed(state, origin, headers)
    {
        return Err(forbidden("foreign origin"));
    }
    let Some(expected) = cookie_token else {
        return Err(forbidden("no csrf cookie"));
    };

    if let Some(sent) = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return if tokens_equal(sent, expected) {
            Ok(request)
        } else {
            Err(forbidden("csrf header mismatch"))
        };
    }

    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(forbidden("no csrf header"));
    }
    // Read the (small) form to find the token, then hand the same bytes on.
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => return Err((StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response()),
    };
    let sent = form_urlencoded_value(&bytes, "csrf_token");
    match sent {
        Some(sent) if tokens_equal(&sent, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(forbidden("csrf field mismatch")),
    }
}

fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn origin_allowed(state: &AppState, origin: &str, headers: &HeaderMap) -> bool {
    if origin == state.config.public_url {
        return true;
    }
    // Same host as the request (e.g. reached through 127.0.0.1 vs localhost).
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

fn form_urlencoded_value(body: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_field_decoding() {
        let body = b"email=a%40b.org&csrf_token=abc-_XYZ&password=p+q%21";
        assert_eq!(form_urlencoded_value(body, "csrf_token").as_deref(), Some("abc-_XYZ"));
        assert_eq!(form_urlencoded_value(body, "email").as_deref(), Some("a@b.org"));
        assert_eq!(form_urlencoded_value(body, "password").as_deref(), Some("p q!"));
        assert_eq!(form_urlencoded_value(b"x=%4", "x").as_deref(), Some("%4"));
        assert_eq!(form_urlencoded_value(b"x=%", "x").as_deref(), Some("%"));
        assert_eq!(form_urlencoded_value(body, "missing"), None);
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; nv_csrf=tok; nv_session="),
        );
        assert_eq!(cookie_value(&h, "nv_csrf"), Some("tok"));
        assert_eq!(cookie_value(&h, "nv_session"), None);
        assert_eq!(cookie_value(&h, "b"), None);
    }

    #[test]
    fn constant_time_compare() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "abcd"));
    }
}
