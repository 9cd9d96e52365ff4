//! The cell's HTTP server: an accept loop with a cap on connections and a
//! header-read timeout (which also closes idle keep-alive connections),
//! request-level bounds ([`harden`]), and a graceful stop with a drain
//! deadline ([`serve`]).
//!
//! What a client can hold, and for how long ([`ServerLimits`]):
//! - a connection slot, up to `max_connections`; further connections wait
//!   in the listen backlog. A connection that does not finish its headers
//!   within `header_timeout` is closed.
//! - its request's body is read in full, within `body_timeout` (408
//!   beyond) and up to `max_body_bytes` (413 beyond), *before* the request
//!   takes a slot of the one global `max_concurrent_requests` limit: a
//!   client that sends headers and no body holds a connection, never a
//!   slot the API's work needs.
//! - the whole request (body, wait for a slot, handler) is bounded by
//!   `request_timeout` (503 with `Retry-After` beyond).
//!
//! Error answers carry the message under both `error` and `detail`, as
//! the API's own errors do.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_REQUESTS};

/// Bounds of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Deadline for a request's headers, from the first byte awaited (also
    /// the longest idle keep-alive).
    pub header_timeout: Duration,
    /// Deadline for a request's whole body, once its headers are in.
    pub body_timeout: Duration,
    /// Deadline for a whole request: body, wait for a slot and handler.
    pub request_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most requests handled at once, across every route.
    pub max_concurrent_requests: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

impl ServerLimits {
    /// Default deadline for a request's headers.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default deadline for a request's body.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default deadline for a whole request: above the body timeout and
    /// the longest call the API makes (`/send_to_peer`'s 10 s).
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default most connections open at once.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;
}

impl Default for ServerLimits {
    /// Headers 10 s, body 10 s, request 30 s, 4,096 connections, 1,024
    /// requests at once, bodies up to 256 KiB.
    fn default() -> Self {
        Self {
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// An error answer in the API's format.
fn refusal(status: StatusCode, message: String) -> Response {
    let body = serde_json::json!({ "error": message, "detail": message });
    (status, axum::Json(body)).into_response()
}

/// What the request-level layers share.
#[derive(Debug)]
struct Bounds {
    limits: ServerLimits,
    slots: Arc<Semaphore>,
}

/// Wraps `router` in the request-level bounds of `limits`: the whole
/// request within `request_timeout`, the body read first (within
/// `body_timeout`, up to `max_body_bytes`), then one slot of the global
/// concurrency limit.
pub fn harden(router: Router, limits: ServerLimits) -> Router {
    let bounds = Arc::new(Bounds {
        limits,
        slots: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
    });
    // The last layer added runs first.
    router
        .layer(from_fn_with_state(bounds.clone(), take_slot))
        .layer(from_fn_with_state(bounds.clone(), read_body))
        .layer(from_fn_with_state(bounds, bound_request))
}

async fn bound_request(
    State(bounds): State<Arc<Bounds>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = bounds.limits.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request was not answered within {} ms; try again later",
                    limit.as_millis()
                ),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

async fn read_body(State(bounds): State<Arc<Bounds>>, request: Request, next: Next) -> Response {
    let max = bounds.limits.max_body_bytes;
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {max} bytes"),
        )
    };
    let (parts, body) = request.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let limit = bounds.limits.body_timeout;
    let read = tokio::time::timeout(limit, Limited::new(body, max).collect()).await;
    match read {
        Ok(Ok(collected)) => {
            let request = Request::from_parts(parts, Body::from(collected.to_bytes()));
            next.run(request).await
        }
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => too_large(),
        Ok(Err(_)) => refusal(
            StatusCode::BAD_REQUEST,
            "the request body could not be read".to_owned(),
        ),
        Err(_) => refusal(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} ms",
                limit.as_millis()
            ),
        ),
    }
}

async fn take_slot(State(bounds): State<Arc<Bounds>>, request: Request, next: Next) -> Response {
    match bounds.slots.clone().acquire_owned().await {
        Ok(_slot) => next.run(request).await,
        Err(_) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping".to_owned(),
        ),
    }
}

/// Serves `app` on `listener` until `stop` is cancelled; then stops
/// accepting, lets open requests finish (idle connections close at once)
/// and after `drain` closes what is still open.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stop: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let closing = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let closing = closing.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                app.clone().oneshot(request)
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    closing.cancel();
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            drain_ms = drain.as_millis() as u64,
            "open requests did not finish in time; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::sync::Notify;

    /// Medium 5: the concurrency limit was one per route. It is one for
    /// every route together: with one slot, a request to `/b` waits while
    /// a request to `/a` holds it.
    #[tokio::test(start_paused = true)]
    async fn one_concurrency_limit_covers_every_route() {
        let release = Arc::new(Notify::new());
        let held = release.clone();
        let router = Router::new()
            .route(
                "/a",
                get(move || {
                    let held = held.clone();
                    async move {
                        held.notified().await;
                        "a"
                    }
                }),
            )
            .route("/b", get(|| async { "b" }));
        let limits = ServerLimits {
            max_concurrent_requests: 1,
            request_timeout: Duration::from_secs(3600),
            ..ServerLimits::default()
        };
        let app = harden(router, limits);
        let request = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let a = tokio::spawn(app.clone().oneshot(request("/a")));
        tokio::task::yield_now().await;
        let b = tokio::spawn(app.clone().oneshot(request("/b")));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!b.is_finished(), "/b ran while /a held the only slot");
        release.notify_one();
        assert_eq!(a.await.unwrap().unwrap().status(), StatusCode::OK);
        assert_eq!(b.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_deadline_is_answered_503_with_retry_after() {
        let router = Router::new().route("/slow", get(std::future::pending::<&'static str>));
        let limits = ServerLimits {
            request_timeout: Duration::from_secs(5),
            ..ServerLimits::default()
        };
        let response = harden(router, limits)
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn an_announced_body_over_the_limit_is_refused_413_before_reading_it() {
        let router = Router::new().route("/", axum::routing::post(|| async { "ok" }));
        let limits = ServerLimits {
            max_body_bytes: 10,
            ..ServerLimits::default()
        };
        let request = Request::post("/")
            .header(header::CONTENT_LENGTH, "11")
            .body(Body::from("01234567890"))
            .unwrap();
        let response = harden(router, limits).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
