//! The host's admin API (`--admin-listen`): which cells a host runs and how
//! each is doing, on a listener of its own, apart from the cells' APIs.
//!
//! - `cells`: `GET /cells` (`?state=running|failed`) and
//!   `GET /cells/{cell_id}`, one JSON entry per cell.
//! - `health`: `GET /health`, `ok`, `degraded` or `failed`.
//! - `metrics`: `GET /metrics`, the host's gauges and every cell's series
//!   with a `cell` label, as Prometheus text.
//! - `auth`: the bearer token every route needs when one is set.
//! - `error`: [`AdminError`], every error answer, in the cell API's format
//!   (`{"error", "detail", "kind"}`).
//!
//! Every handler reads what the cells already keep (their slot, their
//! registration status, their plugin's last state): none waits on a plugin
//! or on discovery, so the API answers at once however busy the cells are.

mod auth;
mod cells;
mod error;
mod health;
mod metrics;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::routing::get;
use tower_http::trace::TraceLayer;

pub use error::AdminError;

use crate::fleet::CellSlot;

/// What the admin API shows: the host's cells, whether each runs or failed.
#[derive(Debug)]
pub struct AdminHost {
    /// The host's failure-domain name (`--host-id`).
    pub host_id: String,
    /// Every cell the host was asked to run, in order.
    pub slots: Vec<Arc<CellSlot>>,
    /// When the host started (for its uptime).
    pub started: Instant,
}

impl AdminHost {
    /// The host `host_id` running `slots`, started now.
    pub fn new(host_id: String, slots: Vec<Arc<CellSlot>>) -> Self {
        Self {
            host_id,
            slots,
            started: Instant::now(),
        }
    }
}

/// The router of the host's admin API. With `token`, every route (unknown
/// ones too) answers 401 unless the request carries
/// `Authorization: Bearer <token>`; an empty token is refused to every
/// request. Without, the API is open: bind it to a loopback address.
pub fn admin_app(host: Arc<AdminHost>, token: Option<String>) -> Router {
    let router = Router::new()
        .route("/cells", get(cells::list))
        .route("/cells/{cell_id}", get(cells::one))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::method_not_allowed);
    let router = match token {
        Some(token) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(auth::BearerToken::new(&token)),
            auth::require_token,
        )),
        None => router,
    };
    router
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(host)
}

/// One span per request, named by its matched route (not the raw URI).
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    tracing::debug_span!("admin_request", method = %request.method(), route)
}
