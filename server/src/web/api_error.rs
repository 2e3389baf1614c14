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
    /// `Retry-After` seconds (429 answers).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// A JSON body that could not be read: too large (the route's body limit) or malformed.
    pub fn from_json_rejection(e: &axum::extract::rejection::JsonRejection, malformed: &str) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The request is too large.",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", malformed)
        }
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
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
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "code": self.code, "error": self.message })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        resp
    }
}
