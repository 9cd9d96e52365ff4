//! HTTP handlers and the router ([`app`]).
//!
//! # Modules
//!
//! - [`membership`]: register, heartbeat, deregister (the calls that change the registry);
//! - [`batch`]: the same three calls for many cells of one host in one request
//!   (`POST /batch/register|heartbeat|deregister`), with their own body limit;
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
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use cellmesh_wire::batch::BATCH_MAX_BYTES;

use crate::dashboard;
use crate::state::AppState;

pub mod auth;
pub mod batch;
pub mod body;
pub mod json;
pub mod membership;
pub mod peers;
pub mod query;
pub mod status;
pub mod track;
pub mod watch;

/// The router, for oneshot tests and [`crate::serve`].
///
/// Every route's body limit is the configured `body_limit`, except the batch routes', which
/// is [`BATCH_MAX_BYTES`] (their handlers read the body with that limit; the route layer says
/// the same to any extractor).
pub fn app(state: AppState) -> Router {
    let limit = state.config().body_limit;
    let batch_limit = || DefaultBodyLimit::max(BATCH_MAX_BYTES);
    Router::new()
        .route("/", get(dashboard::page))
        .route("/register", post(membership::register))
        .route("/heartbeat", post(membership::heartbeat))
        .route(
            "/batch/register",
            post(batch::register).layer(batch_limit()),
        )
        .route(
            "/batch/heartbeat",
            post(batch::heartbeat).layer(batch_limit()),
        )
        .route(
            "/batch/deregister",
            post(batch::deregister).layer(batch_limit()),
        )
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
        .layer(DefaultBodyLimit::max(limit))
}
