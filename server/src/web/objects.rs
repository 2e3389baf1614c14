//! `GET|PUT /objects/{key}?method=..&exp=..&sig=..`: the local object store's signed URLs
//! (see `storage::UrlSigner`), used by the segmentation worker, which has no session.
//! The signature is the only authorization; the CSRF middleware skips these paths.
//! Refusals answer 403 with a short reason ("signed URL has expired", ...), never the URL.

use std::collections::HashMap;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use std::path::PathBuf;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

use crate::config::Config;
use crate::storage::{self, ObjectFolder, UrlSigner};

/// Largest object a signed PUT may write (label NIfTIs and volumes JSON are far smaller).
pub const MAX_SIGNED_PUT: usize = 512 << 20;

/// What the signed-object routes need: the folder, the signer, a staging dir. Separate from
/// `AppState` so `neurovol analyze` serves the same routes for its own temporary store.
#[derive(Clone)]
pub struct SignedObjects {
    store: ObjectFolder,
    /// `None` when the secret could not be loaded: every request gets 503.
    signer: Option<UrlSigner>,
    staging: PathBuf,
}

impl SignedObjects {
    pub fn new(store: ObjectFolder, signer: Option<UrlSigner>, staging: PathBuf) -> SignedObjects {
        SignedObjects { store, signer, staging }
    }

    /// The app's store `<data_dir>/objects` with the configured (or persisted) secret.
    pub fn from_config(config: &Config) -> SignedObjects {
        let signer =
            storage::load_or_create_secret(config.object_url_key.as_ref().map(|k| k.expose()), &config.data_dir)
                .map(|secret| UrlSigner::new(secret, &config.public_url))
                .map_err(|e| tracing::error!(error = %e, "object URL secret unavailable"))
                .ok();
        SignedObjects::new(
            ObjectFolder::new(config.data_dir.join("objects")),
            signer,
            config.tmp_dir(),
        )
    }
}

/// `GET|PUT /objects/{key}` (HEAD too), with its own state.
pub fn router<S: Clone + Send + Sync + 'static>(objects: SignedObjects) -> Router<S> {
    Router::new()
        .route(
            "/objects/{key}",
            get(get_object)
                .put(put_object)
                .layer(DefaultBodyLimit::max(MAX_SIGNED_PUT)),
        )
        .with_state(objects)
}

fn refuse(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why.to_string(),
    )
        .into_response()
}

#[expect(
    clippy::result_large_err,
    reason = "the refusal is the response itself, built once per request"
)]
fn check(
    state: &SignedObjects,
    key: &str,
    method: &str,
    q: &HashMap<String, String>,
) -> Result<ObjectFolder, Response> {
    let signer = state
        .signer
        .as_ref()
        .ok_or_else(|| refuse(StatusCode::SERVICE_UNAVAILABLE, "object store unavailable"))?;
    if q.get("method").map(String::as_str) != Some(method) {
        return Err(refuse(StatusCode::FORBIDDEN, "signed URL is for another method"));
    }
    signer
        .verify(
            key,
            method,
            q.get("exp").map(String::as_str),
            q.get("sig").map(String::as_str),
        )
        .map_err(|e| {
            tracing::warn!(reason = %e, "signed object URL refused");
            refuse(StatusCode::FORBIDDEN, e)
        })?;
    Ok(state.store.clone())
}

pub async fn get_object(
    State(state): State<SignedObjects>,
    method: Method,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let store = match check(&state, &key, "GET", &q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match store.get(&key).await {
        Ok(bytes) => {
            let len = bytes.len();
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(bytes)
            };
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                body,
            )
                .into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => refuse(StatusCode::NOT_FOUND, "no such object"),
        Err(e) => {
            tracing::error!(error = %e, "object read failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "object read failed")
        }
    }
}

pub async fn put_object(
    State(state): State<SignedObjects>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let store = match check(&state, &key, "PUT", &q) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let bytes: Bytes = match to_bytes(body, MAX_SIGNED_PUT).await {
        Ok(b) => b,
        Err(_) => return refuse(StatusCode::PAYLOAD_TOO_LARGE, "object too large"),
    };
    let tmp = state.staging.clone();
    let staging = tmp.join(format!("put-{}", hex::encode(rand::random::<[u8; 8]>())));
    let result = async {
        tokio::fs::create_dir_all(&tmp).await?;
        tokio::fs::write(&staging, &bytes).await?;
        store.put_file(&key, &staging).await
    }
    .await;
    match result {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => {
            let _ = tokio::fs::remove_file(&staging).await;
            tracing::error!(error = %e, "object write failed");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "object write failed")
        }
    }
}
