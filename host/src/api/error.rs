//! [`ApiError`]: every error answer of the API, as a status and a JSON body
//! with a `detail`. Server-side failures are logged by [`log_server_errors`],
//! a layer, so that turning an error into an answer stays free of side
//! effects.

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::body::BodyError;
use crate::mesh::PeerError;
use crate::plugin::PluginError;

/// An HTTP error answer: a status and a JSON body with a `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the route expects (400).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The request is well-formed but not acceptable (400).
    #[error("{0}")]
    BadRequest(String),
    /// Something named in the request does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// No capability of that name (404); the body lists the known ones.
    #[error("unknown capability `{name}`")]
    UnknownCapability {
        /// The name asked for.
        name: String,
        /// The capabilities the plugin offers.
        known: Vec<String>,
    },
    /// A peer could not be reached or failed (502).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A message could not be delivered through discovery (502).
    #[error("{0}")]
    BadGateway(String),
    /// A capability ran and failed (500).
    #[error("capability failed: {0}")]
    CapabilityFailed(String),
    /// The plugin call failed (5xx, naming what happened).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A resource is exhausted (503).
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Body(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::UnknownCapability { .. } => StatusCode::NOT_FOUND,
            ApiError::Peer(_) | ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::CapabilityFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Plugin(PluginError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Plugin(PluginError::Instantiate(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    /// What went wrong, for a person.
    detail: String,
    /// `plugin_<kind>` when the plugin call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The known capabilities, when an unknown one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<Vec<String>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            detail: self.to_string(),
            error: match &self {
                ApiError::Plugin(error) => Some(format!("plugin_{}", error.kind())),
                _ => None,
            },
            capabilities: match &self {
                ApiError::UnknownCapability { known, .. } => Some(known.clone()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        // Handed to `log_server_errors`, which logs inside the request span.
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// Logs the server-side failures (5xx) handlers answered with, with their
/// cause; client errors are the client's business and are not logged.
pub(crate) async fn log_server_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if status.is_server_error()
        && let Some(error) = response.extensions().get::<Arc<ApiError>>()
    {
        tracing::warn!(status = status.as_u16(), detail = %error, "request failed");
    }
    response
}
