//! The crate's error type ([`Error`]) and the HTTP error answers ([`ApiError`]).
//!
//! Every HTTP error is JSON with a `detail`: a sentence for most, pydantic's list of field
//! errors for 422, like the original FastAPI service. Causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::validate::FieldError;

/// Errors at the library's public boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener failed in a way that stops the server.
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// An HTTP error answer.
#[derive(Debug)]
pub enum ApiError {
    /// 422 with pydantic-style field errors.
    Validation(Vec<FieldError>),
    /// 400 with a sentence.
    BadRequest(String),
    /// 401: missing or wrong bearer token.
    Unauthorized(&'static str),
    /// 403: missing or wrong per-cell secret.
    Forbidden(&'static str),
    /// 404 with the original's sentence.
    NotFound(&'static str),
    /// 405.
    MethodNotAllowed,
    /// 408: the request took longer than the request timeout.
    Timeout,
    /// 409: a stale incarnation.
    Conflict(String),
    /// 413: body over the limit.
    PayloadTooLarge(usize),
    /// 503 with a sentence.
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `detail` as one sentence (a validation error's messages joined with `; `): what a
    /// batch answer says of a refused cell.
    pub fn detail_text(&self) -> String {
        match self {
            Self::Validation(errors) => errors
                .iter()
                .map(|e| e.msg.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            other => match other.detail() {
                Value::String(s) => s,
                v => v.to_string(),
            },
        }
    }

    fn detail(&self) -> Value {
        match self {
            Self::Validation(errors) => {
                Value::Array(errors.iter().map(FieldError::to_json).collect())
            }
            Self::BadRequest(s) | Self::Conflict(s) | Self::Unavailable(s) => {
                Value::from(s.as_str())
            }
            Self::Unauthorized(s) | Self::Forbidden(s) | Self::NotFound(s) => Value::from(*s),
            Self::MethodNotAllowed => Value::from("Method Not Allowed"),
            Self::Timeout => Value::from("Request timed out"),
            Self::PayloadTooLarge(limit) => Value::from(format!(
                "Request body too large: the limit is {limit} bytes"
            )),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut resp = (status, Json(json!({ "detail": self.detail() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<Vec<FieldError>> for ApiError {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::Validation(errors)
    }
}
