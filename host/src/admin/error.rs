//! [`AdminError`]: every error answer of the admin API, as a status and the
//! cell API's JSON body `{"error": SENTENCE, "detail": SENTENCE, "kind":
//! KIND}` (see [`crate::api::ApiError`]), so that one client reads both.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answer of the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is not acceptable: a bad query, say (400).
    #[error("{0}")]
    BadRequest(String),
    /// No cell or route of that name (404).
    #[error("{0}")]
    NotFound(String),
    /// The bearer token is missing or wrong (401, with
    /// `WWW-Authenticate: Bearer`).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The route exists, not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
}

impl AdminError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The answer's machine-readable `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            AdminError::BadRequest(_) => "bad_request",
            AdminError::NotFound(_) => "not_found",
            AdminError::Unauthorized(_) => "unauthorized",
            AdminError::MethodNotAllowed(_) => "method_not_allowed",
        }
    }
}

/// The body of every error answer (the cell API's).
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
    kind: &'a str,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let body = ErrorBody {
            error: &message,
            detail: &message,
            kind: self.kind(),
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let AdminError::Unauthorized(_) = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Any path the API does not serve.
pub(super) async fn unknown_route(request: Request) -> AdminError {
    AdminError::NotFound(format!(
        "no admin route {} {}: the admin API serves GET /cells, GET /cells/{{cell_id}}, \
         GET /metrics and GET /health",
        request.method(),
        request.uri().path()
    ))
}

/// A served path asked with another method than `GET`.
pub(super) async fn method_not_allowed(request: Request) -> AdminError {
    AdminError::MethodNotAllowed(format!(
        "{} is not allowed on {}: the admin API only reads (GET)",
        request.method(),
        request.uri().path()
    ))
}
