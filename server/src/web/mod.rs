//! The HTTP server: Leptos pages and server functions, account endpoints, static files.

mod account_routes;
pub mod api_error;
mod auth_routes;
mod client;
pub mod csrf;
mod google_routes;
pub mod headers;
pub mod objects;
pub mod privacy;
pub mod rate_limit;
pub mod routes;
mod scan_actions;
pub mod security;
mod signed_in;
pub mod upload;
mod viewer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::db::Db;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub leptos: LeptosOptions,
    pub privacy: Arc<app::PrivacyFacts>,
    /// Where scans' objects live (local folder or S3/R2).
    pub store: Arc<dyn crate::object_store::ObjectStore>,
    /// Wakes the pipeline's runners when a scan is queued.
    pub wake: Arc<tokio::sync::Notify>,
    /// Wakes the deleter when a deletion is queued (`deletion.rs`).
    pub deletions: Arc<tokio::sync::Notify>,
    /// Signs and checks the session-bound CSRF tokens (`csrf.rs`).
    pub csrf: csrf::CsrfKey,
    /// Per-account request limits (uploads).
    pub limits: Arc<rate_limit::RateLimits>,
    /// Google sign-in, when configured (`NEUROVOL_GOOGLE_*`); `None`: its routes answer 404.
    pub google: Option<Arc<crate::oidc::Provider>>,
}

impl axum::extract::FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos.clone()
    }
}

/// Largest request body of any route but the chunk upload (forms and JSON).
const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn leptos_options(config: &Config) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("neurovol")
        // content-hashed static files: scripts/build.sh writes hash.txt beside the binary
        .hash_files(hash_file_beside_binary())
        .site_root(config.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .build()
}

/// Whether `hash.txt` (the content hashes of the site's files) sits beside this binary,
/// where Leptos looks for it.
fn hash_file_beside_binary() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("hash.txt")))
        .is_some_and(|p| p.is_file())
}

/// Random request ids (no user data), returned in `x-request-id` and logged on every line.
#[derive(Clone, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&hex::encode(rand::random::<[u8; 8]>()))
            .ok()
            .map(RequestId::new)
    }
}

pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let leptos = state.leptos.clone();
    let privacy = state.privacy.clone();
    let scans: app::scans_api::SharedScanStore = Arc::new(crate::scans::DbScanStore { db: state.db.clone() });
    let accounts: app::account::SharedAccountStore = Arc::new(crate::accounts::DbAccountStore {
        db: state.db.clone(),
        google_available: state.google.is_some(),
    });
    let provide = move || {
        // the CSP nonce of this response (headers.rs) goes on Leptos's inline scripts
        if let Some(nonce) =
            use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<headers::CspNonce>().cloned())
        {
            provide_context(leptos::nonce::Nonce::from_value(nonce.0));
        }
        provide_context((*privacy).clone());
        provide_context(scans.clone());
        provide_context(accounts.clone());
    };

    let site_root = std::path::PathBuf::from(leptos.site_root.as_ref());
    let request_id = axum::http::HeaderName::from_static("x-request-id");

    // every route is listed in routes.rs: handlers are registered from the list, pages and
    // server functions are checked against it
    routes::check_mounted(&routes.iter().map(|r| r.path().to_string()).collect::<Vec<_>>());
    Router::new()
        .merge(routes::handlers())
        // signed URLs of the local object store, for the segmentation worker (no session)
        .merge(objects::router(objects::SignedObjects::from_config(&state.config)))
        .leptos_routes_with_context(&state, routes, provide, {
            let leptos = leptos.clone();
            move || app::shell(leptos.clone())
        })
        .fallback_service(ServeDir::new(site_root).fallback(axum::routing::any(not_found)))
        // every JSON and form body is small; the chunk route sets its own limit above
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(headers::visitors_sign_in))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::session_and_csrf,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), headers::security_headers))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // The matched route pattern, not the raw URI: URIs can carry query data.
                    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %req.method(),
                        route = route.as_deref().unwrap_or("(static)"),
                        account = tracing::field::Empty,
                    )
                })
                .on_request(())
                .on_response(
                    |res: &axum::response::Response, latency: Duration, _span: &tracing::Span| {
                        tracing::info!(
                            status = res.status().as_u16(),
                            ms = latency.as_millis() as u64,
                            "response"
                        );
                    },
                ),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RandomRequestId))
        .with_state(state)
}

async fn not_found() -> axum::response::Response {
    use axum::response::IntoResponse;
    (axum::http::StatusCode::NOT_FOUND, "Not found").into_response()
}

/// Binds, prints the URL once ready, and serves until Ctrl-C / SIGTERM.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    upload::spawn_sweeper(&state);
    let app = router(state);
    // Tests and scripts wait for this exact line.
    println!("NeuroVol is ready at http://{addr}");
    tracing::info!(%addr, "listening");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
