//! Errors at the crate's boundaries: [`Error`] for starting and running a
//! host, [`ApiError`] for HTTP answers (clients see a clean `detail`, the
//! cause goes to the log). Plugin-level errors live in
//! [`crate::plugin::error`], a library API of its own.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::plugin::{LoadError, PluginError};

/// Why a host could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin file was refused.
    #[error("plugin refused: {0}")]
    Load(LoadError),
    /// The command line or environment is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// Discovery reported a newer incarnation of this cell id (409).
    #[error(
        "stopped: discovery reports that a newer incarnation of cell `{cell_id}` registered \
         ({detail}); two hosts must not run the same cell id (see --unique-id)"
    )]
    Superseded {
        /// The contested id.
        cell_id: String,
        /// Discovery's explanation.
        detail: String,
    },
}

// Written by hand rather than with `#[from]`: the message already contains
// the cause, and a `source` would make `{:#}` print it twice.
impl From<LoadError> for Error {
    fn from(error: LoadError) -> Self {
        Error::Load(error)
    }
}

/// An HTTP error answer: a status and a JSON body with a `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or lacks a field (400).
    #[error("{0}")]
    BadRequest(String),
    /// Something named in the request does not exist (404); `extra` fields
    /// are added to the body.
    #[error("{detail}")]
    NotFound {
        /// What was not found.
        detail: String,
        /// More fields for the body (e.g. the known capabilities).
        extra: Option<Value>,
    },
    /// A peer could not be reached or failed (502).
    #[error("{0}")]
    BadGateway(String),
    /// A capability ran and failed (500).
    #[error("capability failed: {0}")]
    CapabilityFailed(String),
    /// The plugin call failed (5xx, naming what happened).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The body exceeds the limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A resource is exhausted (503).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::CapabilityFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Plugin(PluginError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Plugin(PluginError::Instantiate(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "detail": self.to_string() });
        match &self {
            ApiError::Plugin(error) => {
                body["error"] = Value::String(format!("plugin_{}", error.kind()));
            }
            ApiError::NotFound {
                extra: Some(Value::Object(extra)),
                ..
            } => {
                for (k, v) in extra {
                    body[k] = v.clone();
                }
            }
            _ => {}
        }
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), detail = %self, "request failed");
        }
        (status, Json(body)).into_response()
    }
}
