//! Every route the server answers, in one table: [`ROUTES`].
//!
//! The axum handlers are registered from it ([`handlers`]: a listed handler route without a
//! handler, or a handler without a listing, cannot exist), and the router checks at start
//! that the Leptos pages and server functions are exactly the listed ones
//! ([`check_mounted`]). The isolation test (`server/tests/isolation_http.rs`) reads the
//! table and has a probe for every entry, so a route added without a test fails the suite.
//! Middleware reads it too ([`find`]: whether a route needs an account, what it answers).

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, post, put};
use leptos::server_fn::ServerFn;

use super::AppState;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (a page may show more to a signed-in account; sign-in forms).
    Public,
    /// A signed-in account, and only on what it owns: anything else answers exactly like
    /// a missing thing.
    Account,
    /// No session: the URL's signature is the authorization (`/objects/{key}`).
    SignedUrl,
}

/// What a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A server-rendered page.
    Html,
    /// JSON (the upload API, server functions).
    Json,
    /// `303 See Other` (form posts: Post/Redirect/Get).
    Redirect,
    /// A file to save (scan files, the export, signed objects).
    Download,
    /// A file of the built site (script, style, WASM).
    Static,
}

/// What the id in a route's path names (the isolation test swaps another account's in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    Nothing,
    Scan,
    Upload,
    Receipt,
    Object,
}

/// Which part of the router serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// An axum handler, registered by [`handlers`].
    Handler,
    /// A Leptos page (`app::App`'s routes).
    Page,
    /// A Leptos server function (query parameters in `GET`).
    ServerFn,
    /// `objects::router` (its own state: the signer and folder).
    SignedObjects,
    /// The fallback service: files of the built site, else 404.
    SiteFiles,
}

/// One route: method and path pattern (axum syntax), who may use it, what it answers.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub answer: Answer,
    pub names: Names,
    pub mount: Mount,
}

const fn route(
    method: Method,
    path: &'static str,
    access: Access,
    answer: Answer,
    names: Names,
    mount: Mount,
) -> Route {
    Route {
        method,
        path,
        access,
        answer,
        names,
        mount,
    }
}

const fn server_fn<T: ServerFn>(access: Access, names: Names) -> Route {
    route(Method::GET, T::PATH, access, Answer::Json, names, Mount::ServerFn)
}

use Access::{Account, Public, SignedUrl};
use Answer::{Download, Html, Json, Redirect, Static};
use Mount::{Handler, Page, SignedObjects, SiteFiles};

pub const ROUTES: &[Route] = &[
    // pages
    route(Method::GET, "/", Public, Html, Names::Nothing, Page),
    route(Method::GET, "/signup", Public, Html, Names::Nothing, Page),
    route(Method::GET, "/login", Public, Html, Names::Nothing, Page),
    route(Method::GET, "/privacy", Public, Html, Names::Nothing, Page),
    route(Method::GET, "/home", Account, Html, Names::Nothing, Page),
    route(Method::GET, "/upload", Account, Html, Names::Nothing, Page),
    route(Method::GET, "/scans/{id}", Account, Html, Names::Scan, Page),
    route(Method::GET, "/scans/{id}/report", Account, Html, Names::Scan, Page),
    route(Method::GET, "/timeline", Account, Html, Names::Nothing, Page),
    route(Method::GET, "/account", Account, Html, Names::Nothing, Page),
    // a receipt: an account's for anyone holding its id, a scan's for its account only
    route(Method::GET, "/deleted/{id}", Public, Html, Names::Receipt, Page),
    // server functions
    server_fn::<app::session::GetSessionInfo>(Public, Names::Nothing),
    server_fn::<app::session::GetPrivacyFacts>(Public, Names::Nothing),
    server_fn::<app::scans_api::ListScans>(Account, Names::Nothing),
    server_fn::<app::scans_api::GetScan>(Account, Names::Scan),
    server_fn::<app::scans_api::GetTimeline>(Account, Names::Nothing),
    server_fn::<app::account::GetAccount>(Account, Names::Nothing),
    server_fn::<app::account::GetReceipt>(Public, Names::Receipt),
    // account forms
    route(Method::POST, "/auth/signup", Public, Redirect, Names::Nothing, Handler),
    route(Method::POST, "/auth/login", Public, Redirect, Names::Nothing, Handler),
    route(Method::POST, "/auth/logout", Public, Redirect, Names::Nothing, Handler),
    // Google sign-in (404 unless NEUROVOL_GOOGLE_* are set)
    route(Method::POST, "/auth/google", Public, Redirect, Names::Nothing, Handler),
    route(
        Method::GET,
        "/auth/google/callback",
        Public,
        Redirect,
        Names::Nothing,
        Handler,
    ),
    route(
        Method::POST,
        "/account/google/link",
        Account,
        Redirect,
        Names::Nothing,
        Handler,
    ),
    route(
        Method::POST,
        "/account/google/unlink",
        Account,
        Redirect,
        Names::Nothing,
        Handler,
    ),
    route(
        Method::POST,
        "/account/delete/google",
        Account,
        Redirect,
        Names::Nothing,
        Handler,
    ),
    route(
        Method::POST,
        "/account/password",
        Account,
        Redirect,
        Names::Nothing,
        Handler,
    ),
    route(
        Method::POST,
        "/account/export",
        Account,
        Download,
        Names::Nothing,
        Handler,
    ),
    route(
        Method::POST,
        "/account/delete",
        Account,
        Redirect,
        Names::Nothing,
        Handler,
    ),
    // upload API
    route(Method::POST, "/uploads", Account, Json, Names::Nothing, Handler),
    route(Method::GET, "/uploads/{id}", Account, Json, Names::Upload, Handler),
    route(Method::DELETE, "/uploads/{id}", Account, Json, Names::Upload, Handler),
    route(
        Method::PUT,
        "/uploads/{id}/chunks/{index}",
        Account,
        Json,
        Names::Upload,
        Handler,
    ),
    route(
        Method::POST,
        "/uploads/{id}/complete",
        Account,
        Json,
        Names::Upload,
        Handler,
    ),
    // a scan's actions and files
    route(
        Method::POST,
        "/scans/{id}/retry",
        Account,
        Redirect,
        Names::Scan,
        Handler,
    ),
    route(
        Method::POST,
        "/scans/{id}/delete",
        Account,
        Redirect,
        Names::Scan,
        Handler,
    ),
    route(
        Method::POST,
        "/scans/{id}/delete/google",
        Account,
        Redirect,
        Names::Scan,
        Handler,
    ),
    route(
        Method::GET,
        "/scans/{id}/files/{name}",
        Account,
        Download,
        Names::Scan,
        Handler,
    ),
    // the slice viewer: its short-lived URLs, then the volumes they name
    route(
        Method::GET,
        "/scans/{id}/viewer.json",
        Account,
        Json,
        Names::Scan,
        Handler,
    ),
    route(
        Method::GET,
        "/scans/{id}/view/{name}",
        Account,
        Download,
        Names::Scan,
        Handler,
    ),
    // the local store's signed URLs, for the segmentation worker
    route(
        Method::GET,
        "/objects/{key}",
        SignedUrl,
        Download,
        Names::Object,
        SignedObjects,
    ),
    route(
        Method::PUT,
        "/objects/{key}",
        SignedUrl,
        Json,
        Names::Object,
        SignedObjects,
    ),
    // anything else: a file of the built site, or 404
    route(Method::GET, "/{*file}", Public, Static, Names::Nothing, SiteFiles),
];

/// The listed route of a request, by method and matched path pattern (axum's
/// `MatchedPath`; `None` for the site's files, which match no pattern).
pub fn find(method: &Method, matched_path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    ROUTES.iter().find(|r| r.path == matched_path && r.method == method)
}

/// The axum handler of a listed [`Mount::Handler`] route.
fn handler(r: &Route) -> MethodRouter<AppState> {
    use super::{account_routes, auth_routes, google_routes, scan_actions, upload, viewer};
    match (r.method.as_str(), r.path) {
        ("POST", "/auth/signup") => post(auth_routes::sign_up),
        ("POST", "/auth/login") => post(auth_routes::log_in),
        ("POST", "/auth/logout") => post(auth_routes::log_out),
        ("POST", "/auth/google") => post(google_routes::start),
        ("GET", "/auth/google/callback") => get(google_routes::callback),
        ("POST", "/account/google/link") => post(google_routes::link),
        ("POST", "/account/google/unlink") => post(google_routes::unlink),
        ("POST", "/account/delete/google") => post(google_routes::delete_account),
        ("POST", "/account/password") => post(account_routes::change_password),
        ("POST", "/account/export") => post(account_routes::export),
        ("POST", "/account/delete") => post(account_routes::delete_account),
        ("POST", "/uploads") => post(upload::create),
        ("GET", "/uploads/{id}") => get(upload::status),
        ("DELETE", "/uploads/{id}") => delete(upload::cancel),
        ("PUT", "/uploads/{id}/chunks/{index}") => {
            put(upload::put_chunk).layer(DefaultBodyLimit::max(upload::MAX_CHUNK as usize))
        }
        ("POST", "/uploads/{id}/complete") => post(upload::complete),
        ("POST", "/scans/{id}/retry") => post(scan_actions::retry),
        ("POST", "/scans/{id}/delete") => post(scan_actions::delete),
        ("POST", "/scans/{id}/delete/google") => post(google_routes::delete_scan),
        ("GET", "/scans/{id}/files/{name}") => get(scan_actions::download),
        ("GET", "/scans/{id}/viewer.json") => get(viewer::data),
        ("GET", "/scans/{id}/view/{name}") => get(viewer::file),
        (method, path) => panic!("route {method} {path} is listed in web/routes.rs but has no handler"),
    }
}

/// Every listed handler route, registered.
pub fn handlers() -> Router<AppState> {
    ROUTES
        .iter()
        .filter(|r| r.mount == Mount::Handler)
        .fold(Router::new(), |router, r| router.route(r.path, handler(r)))
}

/// Panics at start when the Leptos pages or server functions differ from the listed ones:
/// a page or server function cannot be added without listing it (and so testing it).
pub fn check_mounted(pages: &[String]) {
    let listed = |mount: Mount| -> Vec<(String, String)> {
        let mut v: Vec<_> = ROUTES
            .iter()
            .filter(|r| r.mount == mount)
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        v.sort();
        v
    };
    let mut mounted_pages: Vec<(String, String)> = pages.iter().map(|p| ("GET".to_string(), p.clone())).collect();
    mounted_pages.sort();
    mounted_pages.dedup();
    assert_eq!(
        mounted_pages,
        listed(Mount::Page),
        "the Leptos pages differ from web/routes.rs"
    );
    let mut fns: Vec<(String, String)> = leptos::server_fn::axum::server_fn_paths()
        .map(|(p, m)| (m.to_string(), p.to_string()))
        .collect();
    fns.sort();
    assert_eq!(
        fns,
        listed(Mount::ServerFn),
        "the server functions differ from web/routes.rs"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method.clone(), r.path)),
                "{} {} listed twice",
                r.method,
                r.path
            );
            assert!(r.path.starts_with('/'), "{}", r.path);
            if r.access == Access::SignedUrl {
                assert_eq!(r.mount, Mount::SignedObjects);
            }
        }
        // every handler route has its handler (panics otherwise)
        let _ = handlers();
    }

    #[test]
    fn lookups() {
        assert_eq!(
            find(&Method::GET, "/scans/{id}").map(|r| r.access),
            Some(Access::Account)
        );
        assert_eq!(find(&Method::HEAD, "/").map(|r| r.answer), Some(Answer::Html));
        assert!(find(&Method::DELETE, "/").is_none());
    }
}
