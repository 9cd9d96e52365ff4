//! The cell's HTTP API: the union of what the original pure and alpha cells
//! served (same paths, same JSON), behaviour delegated to the plugin, plus
//! `POST /send` and `POST /invoke/{capability}`.
//!
//! - [`state_routes`]: health, consciousness, sync, messages, discover, metrics.
//! - [`peer_routes`]: peers, register_peer, send_to_peer, send, invoke.

mod peer_routes;
mod state_routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Map, Value};
use tower::limit::ConcurrencyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::cell::CellRuntime;
use crate::error::ApiError;

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most requests served at once.
    pub max_concurrent: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            max_concurrent: crate::config::DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }
}

/// The router of a cell's API.
pub fn app(cell: Arc<CellRuntime>, limits: ApiLimits) -> Router {
    Router::new()
        .route("/health", get(state_routes::health))
        .route("/consciousness", get(state_routes::consciousness))
        .route("/consciousness/primitives", get(state_routes::primitives))
        .route(
            "/consciousness/sync",
            post(state_routes::consciousness_sync),
        )
        .route("/sync", post(state_routes::sync))
        .route("/message", post(state_routes::message))
        .route("/messages", get(state_routes::messages))
        .route("/discover", get(state_routes::discover))
        .route("/metrics", get(state_routes::metrics))
        .route("/peers", get(peer_routes::peers))
        .route("/register_peer", post(peer_routes::register_peer))
        .route("/send_to_peer", post(peer_routes::send_to_peer))
        .route("/send", post(peer_routes::send))
        .route("/invoke/{capability}", post(peer_routes::invoke))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(ConcurrencyLimitLayer::new(limits.max_concurrent))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(cell)
}

/// One span per request, named by its matched route (not the raw URI).
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    tracing::debug_span!("request", method = %request.method(), route)
}

/// A JSON object body; a malformed body answers 400 in the API's format.
pub(crate) struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<Value>::from_request(req, state).await {
            Ok(axum::Json(Value::Object(map))) => Ok(JsonObject(map)),
            Ok(axum::Json(_)) => Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            )),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge(rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection_text(&rejection))),
        }
    }
}

fn rejection_text(rejection: &JsonRejection) -> String {
    format!("invalid JSON body: {}", rejection.body_text())
}

/// Field access that names what is missing or mistyped.
pub(crate) trait Fields {
    /// A required string field.
    fn required_str(&self, name: &str) -> Result<String, ApiError>;
    /// An optional string field (absent or null: `None`).
    fn optional_str(&self, name: &str) -> Result<Option<String>, ApiError>;
    /// A required field taken as text: a string as it is, any other JSON
    /// value as its JSON text (the original cells accepted both).
    fn required_text(&self, name: &str) -> Result<String, ApiError>;
    /// A required number field.
    fn required_f64(&self, name: &str) -> Result<f64, ApiError>;
}

impl Fields for Map<String, Value> {
    fn required_str(&self, name: &str) -> Result<String, ApiError> {
        self.optional_str(name)?
            .ok_or_else(|| ApiError::BadRequest(format!("missing required field `{name}`")))
    }

    fn optional_str(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::BadRequest(format!(
                "field `{name}` must be a string"
            ))),
        }
    }

    fn required_text(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            None | Some(Value::Null) => Err(ApiError::BadRequest(format!(
                "missing required field `{name}`"
            ))),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Ok(other.to_string()),
        }
    }

    fn required_f64(&self, name: &str) -> Result<f64, ApiError> {
        match self.get(name) {
            None | Some(Value::Null) => Err(ApiError::BadRequest(format!(
                "missing required field `{name}`"
            ))),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ApiError::BadRequest(format!("field `{name}` must be a number"))),
        }
    }
}

/// Adds `labels` to `body` as string fields, never replacing a field the
/// host already wrote.
pub(crate) fn add_labels(body: &mut Map<String, Value>, labels: &[(String, String)]) {
    for (key, value) in labels {
        body.entry(key.clone())
            .or_insert_with(|| Value::String(value.clone()));
    }
}
