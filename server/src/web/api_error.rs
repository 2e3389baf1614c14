//! The one error type of the JSON routes: a status, a stable code the page can act on, and
//! a sentence for the user (never a value from the user's data).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Answered as `{"code": …, "error": …}` with its status.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    /// The stable code (logged; the page acts on it).
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side. Nothing was kept; please try again.",
        )
    }
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "upload_not_found",
            "This upload does not exist or has expired. Please start the upload again.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "code": self.code, "error": self.message })),
        )
            .into_response()
    }
}
