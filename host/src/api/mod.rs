//! The cell's HTTP API: the union of what the original pure and alpha cells
//! served (same paths, same JSON), behaviour delegated to the plugin, plus
//! `POST /send` and `POST /invoke/{capability}`.
//!
//! - `state_routes`: health, consciousness, sync, messages, discover.
//! - `metrics`: `/metrics` and `/metrics/prometheus`, Prometheus text.
//! - `peer_routes`: peers, register_peer, send_to_peer, send, invoke.
//! - `requests`: the typed request bodies.
//! - `answers`: the typed answer bodies.
//! - `body`: `AppJson`, the extractor that reads request bodies, and
//!   [`BodyError`].
//! - `error`: [`ApiError`], every error answer, and the layer logging the
//!   server-side ones.

mod answers;
mod body;
mod error;
mod metrics;
mod peer_routes;
mod requests;
mod state_routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{get, post};
use tower_http::trace::TraceLayer;

pub use body::BodyError;
pub use error::ApiError;

use crate::cell::CellRuntime;

/// Default largest request body the API accepts, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default most concurrent requests the API serves, all routes together;
/// further ones wait (the server applies it: see [`crate::server`]).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1_024;

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ApiLimits {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most requests served at once, all routes together (applied by
    /// [`crate::server::harden`], not by [`app`]).
    pub max_concurrent: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT_REQUESTS,
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
        .route("/metrics", get(metrics::metrics))
        .route("/metrics/prometheus", get(metrics::metrics))
        .route("/peers", get(peer_routes::peers))
        .route("/register_peer", post(peer_routes::register_peer))
        .route("/send_to_peer", post(peer_routes::send_to_peer))
        .route("/send", post(peer_routes::send))
        .route("/invoke/{capability}", post(peer_routes::invoke))
        // Innermost, so that its records fall inside the request span.
        .layer(axum::middleware::from_fn(error::log_server_errors))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
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
