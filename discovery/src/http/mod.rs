//! HTTP handlers and the router ([`app`]).
//!
//! # Modules
//!
//! - [`membership`]: register, heartbeat, deregister (the calls that change the registry);
//! - [`peers`]: `GET /peers` (filters, weak ETag) and `GET /peers/{id}`;
//! - [`status`]: `/health`, `/readyz`, `/metrics` and the fallbacks;
//! - [`auth`]: bearer tokens and per-cell secrets; [`body`]: bounded body reading;
//! - [`query`]: query strings, filters, incarnations and path ids;
//! - [`track`]: the per-request layer (span, timeout, latency histogram, refusal counters).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};

use crate::state::AppState;
use crate::{dashboard, watch};

pub mod auth;
pub mod body;
pub mod membership;
pub mod peers;
pub mod query;
pub mod status;
pub mod track;

pub use body::LimitedBody;
pub use peers::etag;
pub use query::{parse_filter, query_pairs};

/// Header carrying the per-cell secret.
pub const SECRET_HEADER: &str = "x-cell-secret";
/// Header carrying the incarnation on `DELETE` (alternative to `?incarnation=`).
pub const INCARNATION_HEADER: &str = "x-cell-incarnation";
/// Header carrying the registry revision on `/peers`.
pub const REVISION_HEADER: &str = "x-registry-revision";

/// The router, for oneshot tests and [`crate::serve`].
pub fn app(state: AppState) -> Router {
    let limit = state.config().body_limit;
    Router::new()
        .route("/", get(dashboard::page))
        .route("/register", post(membership::register))
        .route("/heartbeat", post(membership::heartbeat))
        .route("/peers", get(peers::list_peers))
        .route("/peers/watch", get(watch::watch))
        .route("/peers/{cell_id}", get(peers::get_peer))
        .route("/peer/{cell_id}", delete(membership::deregister))
        .route("/unregister/{cell_id}", delete(membership::unregister))
        .route("/health", get(status::health))
        .route("/readyz", get(status::readyz))
        .route("/metrics", get(status::metrics))
        .fallback(status::not_found)
        .method_not_allowed_fallback(status::method_not_allowed)
        // Per route, so the matched path is known: span, timeout, latency histogram.
        .layer(track::TrackLayer::new(state.clone()))
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
}

/// A JSON answer from already serialised bytes.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
