//! The per-request layer: opens the request's tracing span, applies the request timeout,
//! records the latency per route and counts refusals for `/metrics`.
//!
//! One hand-written layer instead of `tower_http::TraceLayer` plus `axum::middleware::from_fn`:
//! on the heartbeat hot path those two cost a boxed service clone, two boxed futures, a second
//! pair of clock reads and a failure classifier per request. Here the span is a `debug` span
//! (free when debug is off: no field is formatted), the clock is read twice, and the only
//! allocation is the boxed future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::error::ApiError;
use crate::metrics::route_index;
use crate::state::AppState;

/// Wraps each route in [`Track`].
#[derive(Clone)]
pub struct TrackLayer {
    state: AppState,
}

impl TrackLayer {
    /// A layer recording into `state`'s metrics, with its request timeout.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            state: self.state.clone(),
        }
    }
}

/// One route wrapped with its span, timeout and metrics (see the module docs).
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = std::time::Instant::now();
        let route_name = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("other", MatchedPath::as_str);
        let route = route_index(route_name);
        // Fields are only formatted when a subscriber wants debug spans.
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            route = route_name,
            uri = %req.uri()
        );
        let state = self.state.clone();
        let timeout = state.config().request_timeout;
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                // The timer is only registered if the handler does not finish in its first poll.
                let resp = match tokio::time::timeout(timeout, fut).await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    Err(_) => ApiError::Timeout.into_response(),
                };
                let elapsed = start.elapsed();
                let status = resp.status();
                count_refusal(&state, status);
                state.inner.metrics.observe(route, elapsed);
                tracing::debug!(
                    status = status.as_u16(),
                    latency_us = elapsed.as_micros() as u64,
                    "finished processing request"
                );
                Ok(resp)
            }
            .instrument(span),
        )
    }
}

/// Counts a refusal with `status` in the refusal counters (also used for each refused cell of
/// a batch, so a batch counts as the single calls it replaces would have).
pub(crate) fn count_refusal(state: &AppState, status: StatusCode) {
    let m = &state.inner.metrics;
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            m.auth_failures.fetch_add(1, Ordering::Relaxed);
        }
        StatusCode::CONFLICT => {
            m.stale_incarnations.fetch_add(1, Ordering::Relaxed);
        }
        s if s.is_client_error() && s != StatusCode::NOT_FOUND => {
            m.bad_requests.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}
