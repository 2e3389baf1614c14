//! `SignedIn`: the extractor of every route that needs an account. The session middleware
//! (security.rs) has already resolved the cookie into a [`SessionInfo`]; a visitor without
//! an account is refused with the JSON routes' error (401 `not_signed_in`).

use app::SessionInfo;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::api_error::ApiError;

/// The signed-in account's id.
pub struct SignedIn {
    pub user_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<SignedIn, ApiError> {
        parts
            .extensions
            .get::<SessionInfo>()
            .and_then(|s| s.user.as_ref())
            .map(|u| SignedIn { user_id: u.id.clone() })
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not_signed_in", "Please log in."))
    }
}
