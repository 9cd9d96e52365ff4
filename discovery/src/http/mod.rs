//! HTTP handlers and the router ([`app`]).
//!
//! # Modules
//!
//! - [`membership`]: register, heartbeat, deregister (the calls that change the registry);
//! - [`peers`]: `GET /peers` (filters, weak ETag; answers shared, rendered at once or streamed
//!   in batches, see its docs) and `GET /peers/{id}`;
//! - [`watch`]: `GET /peers/watch`, the SSE stream of registry changes (capped, snapshots
//!   streamed from the shared view);
//! - [`status`]: `/health`, `/readyz`, `/metrics` and the fallbacks;
//! - [`auth`]: bearer tokens and per-cell secrets; [`body`]: bounded body reading and the
//!   answers to a registration over its byte budget;
//! - [`query`]: query strings, filters, incarnations and path ids;
//! - [`json`]: JSON answers from bytes rendered by hand (the hot paths), refusals with
//!   `Retry-After`;
//! - [`track`]: the per-request layer (span, timeout, latency histogram, refusal counters).
//!
//! Header names come from [`cellmesh_wire::headers`].

use axum::Router;
use axum::routing::{delete, get, post};

use crate::dashboard;
use crate::state::AppState;

pub mod auth;
pub mod body;
pub mod json;
pub mod membership;
pub mod peers;
pub mod query;
pub mod status;
pub mod track;
pub mod watch;

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
