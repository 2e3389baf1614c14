//! The HTTP headers every response carries, with their values in one place, and the
//! redirect of visitors away from pages that need an account.
//!
//! Pages show a person's brain volumes, so: a Content-Security-Policy with a per-response
//! script nonce (Leptos writes it on the hydration scripts), no framing, no MIME sniffing,
//! no referrer outside the site (scan ids live in URLs), no cross-origin window or resource
//! sharing, no powerful browser features, HSTS on https, and nothing cached except the
//! site's content-hashed static files (a new release never mixes old and new WASM).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::routes::{self, Access, Answer};

/// The nonce of this response's inline scripts (request extension; Leptos is given it).
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

/// `Content-Security-Policy` for a response whose inline scripts carry `nonce`.
/// - scripts: the site's own files and the nonce'd hydration bootstrap; `'wasm-unsafe-eval'`
///   lets the page and the de-identification worker compile their WebAssembly (no `eval`);
/// - styles and images: the site's own (`data:`/`blob:` images for charts and downloads);
/// - `connect-src 'self'`: the page talks to this site only (uploads, server functions);
/// - `worker-src 'self'`: the de-identification worker is the site's own script;
/// - no plugins, no `<base>`, no framing, forms post to this site only — and, with Google
///   sign-in configured, may be redirected to the provider's origin (`sign_in_origin`: the
///   sign-in forms answer with a redirect to its authorization endpoint, which
///   `form-action` governs too).
pub fn content_security_policy(nonce: &str, sign_in_origin: Option<&str>) -> String {
    let provider = sign_in_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; connect-src 'self'; worker-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'{provider}"
    )
}

/// The fixed headers of every response (name, value, why).
pub const FIXED_HEADERS: &[(&str, &str)] = &[
    // never guess a content type (an uploaded or stored file is never run as a script)
    ("x-content-type-options", "nosniff"),
    // older browsers' equivalent of frame-ancestors 'none'
    ("x-frame-options", "DENY"),
    // No URL (scan ids) leaves the site. Not `no-referrer`: with it browsers send
    // `Origin: null` on the site's own form posts, which the CSRF origin check relies on.
    ("referrer-policy", "same-origin"),
    // no other window keeps a handle on ours; no other site may embed our responses
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    // none of these are used by the app
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), serial=(), bluetooth=(), browsing-topics=()",
    ),
];

/// HSTS when the public URL is https: two years, subdomains included.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains";

/// Everything that depends on the account (pages, API answers, object downloads) and any
/// file without a content hash in its name.
pub const NO_STORE: &str = "no-store";
/// Content-hashed static files (`/pkg/<name>.<16 hex>.<ext>`): their name changes with
/// their content.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Whether `path` is a content-hashed static file written by `scripts/build.sh`.
pub fn is_content_hashed(path: &str) -> bool {
    let Some(name) = path.strip_prefix("/pkg/") else {
        return false;
    };
    let mut parts = name.rsplit('.');
    let (Some(_ext), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    !name.contains('/') && hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Sets the headers above on every response, and gives the request its CSP nonce.
pub async fn security_headers(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let hashed = is_content_hashed(request.uri().path());
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let mut response = next.run(request).await;
    let cache = if hashed && response.status().is_success() {
        IMMUTABLE
    } else {
        NO_STORE
    };
    let headers = response.headers_mut();
    let sign_in_origin = state.google.as_ref().map(|g| g.origin());
    if let Ok(v) = HeaderValue::from_str(&content_security_policy(&nonce, sign_in_origin)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    for (name, value) in FIXED_HEADERS {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    if state.config.secure_cookies() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// A visitor's GET of a page that needs an account (an account HTML page in the route
/// list, routes.rs): `303` to `/login?next=<path>`, so they come back after signing in.
pub async fn visitors_sign_in(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let needs_account = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| routes::find(request.method(), m.as_str()))
        .is_some_and(|r| r.access == Access::Account && r.answer == Answer::Html);
    let visitor = request
        .extensions()
        .get::<app::SessionInfo>()
        .is_none_or(|s| s.user.is_none());
    if needs_account && visitor && request.method() == Method::GET {
        let target = app::auth_rules::login_url_with_next(path);
        let mut resp = axum::http::StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return resp;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hashed_pkg_files_are_immutable() {
        assert!(is_content_hashed("/pkg/neurovol.0123456789abcdef.wasm"));
        assert!(is_content_hashed("/pkg/deid_worker.0123456789abcdef.js"));
        assert!(!is_content_hashed("/pkg/neurovol.js"));
        assert!(!is_content_hashed("/pkg/neurovol_bg.wasm"));
        assert!(!is_content_hashed("/deid-worker.js"));
        assert!(!is_content_hashed("/pkg/x/neurovol.0123456789abcdef.js"));
        assert!(!is_content_hashed("/scans/0123456789abcdef.js"));
    }

    #[test]
    fn the_policy_has_no_unsafe_inline_or_eval() {
        let csp = content_security_policy("abc", None);
        assert!(csp.contains("'nonce-abc'"));
        assert!(!csp.contains("'unsafe-inline'") && !csp.contains("'unsafe-eval'"));
        for d in [
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(d), "{d}");
        }
    }
}
