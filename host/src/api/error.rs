//! [`ApiError`]: every error answer of the API, as a status and a JSON body
//! `{"error": SENTENCE, "detail": SENTENCE, "kind": KIND}`: the original
//! alpha answered `error`, the original pure `detail`, so both carry the same
//! sentence; `kind` is ours, machine-readable. Client errors are 400, or 422
//! on routes only pure served ([`ApiError::unprocessable`]). Server-side
//! failures are logged by [`log_server_errors`], a layer, so that turning an
//! error into an answer stays free of side effects.

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

/// An HTTP error answer: a status and a JSON body with `error` and
/// `detail`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the route expects (400; 413 when too large).
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The body is not the JSON a route of pure's expects (422, as pure's
    /// validation answered; 413 when too large).
    #[error(transparent)]
    Unprocessable(BodyError),
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
    /// The same error on a route the original pure served, whose invalid
    /// bodies answered 422: a [`ApiError::Body`] becomes
    /// [`ApiError::Unprocessable`]; other errors stay.
    pub fn unprocessable(self) -> Self {
        match self {
            ApiError::Body(error) => ApiError::Unprocessable(error),
            other => other,
        }
    }

    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Body(BodyError::TooLarge(_))
            | ApiError::Unprocessable(BodyError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Body(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::UnknownCapability { .. } => StatusCode::NOT_FOUND,
            ApiError::Peer(_) | ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::CapabilityFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Plugin(PluginError::Timeout { .. } | PluginError::WallTimeout { .. }) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ApiError::Plugin(PluginError::Instantiate(_) | PluginError::Busy { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Plugin(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A short machine-readable kind, the answer's `kind`: the body error's
    /// kind (`missing_field`, `invalid_json`, ...), `plugin_<kind>` for a
    /// plugin failure (`plugin_timeout`, ...), else one word per variant.
    pub fn kind(&self) -> String {
        match self {
            ApiError::Body(error) | ApiError::Unprocessable(error) => error.kind().to_owned(),
            ApiError::BadRequest(_) => "bad_request".to_owned(),
            ApiError::NotFound(_) => "not_found".to_owned(),
            ApiError::UnknownCapability { .. } => "unknown_capability".to_owned(),
            ApiError::Peer(_) => "peer_failed".to_owned(),
            ApiError::BadGateway(_) => "bad_gateway".to_owned(),
            ApiError::CapabilityFailed(_) => "capability_failed".to_owned(),
            ApiError::Plugin(error) => format!("plugin_{}", error.kind()),
            ApiError::Unavailable(_) => "unavailable".to_owned(),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ErrorBody {
    /// What went wrong, for a person (the original alpha's key).
    error: String,
    /// The same sentence (the original pure's key).
    detail: String,
    /// Machine-readable kind ([`ApiError::kind`]).
    kind: String,
    /// The known capabilities, when an unknown one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    capabilities: Option<Vec<String>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        let body = ErrorBody {
            error: message.clone(),
            detail: message,
            kind: self.kind(),
            capabilities: match &self {
                ApiError::UnknownCapability { known, .. } => Some(known.clone()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        // A busy plugin: when to try again.
        if let ApiError::Plugin(error) = &self
            && let Some(after) = error.retry_after()
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(after.as_secs()),
            );
        }
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    async fn answer(error: ApiError) -> (u16, Value) {
        let response = error.into_response();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[tokio::test]
    async fn every_error_answer_carries_error_and_detail() {
        let missing = || ApiError::Body(BodyError::Missing("from_cell".into()));
        assert_eq!(
            answer(missing()).await,
            (
                400,
                json!({"error": "Missing required field: from_cell",
                       "detail": "Missing required field: from_cell",
                       "kind": "missing_field"})
            )
        );
        let (status, body) = answer(missing().unprocessable()).await;
        assert_eq!((status, &body["kind"]), (422, &json!("missing_field")));
        let too_large = ApiError::Body(BodyError::TooLarge("too big".into())).unprocessable();
        assert_eq!(answer(too_large).await.0, 413);
        let (status, body) = answer(ApiError::UnknownCapability {
            name: "x".into(),
            known: vec!["a".into()],
        })
        .await;
        assert_eq!(status, 404);
        assert_eq!(body["error"], body["detail"]);
        assert_eq!(body["capabilities"], json!(["a"]));
        // Only a body error becomes a 422.
        assert_eq!(
            ApiError::NotFound("x".into()).unprocessable().status(),
            StatusCode::NOT_FOUND
        );
    }
}
