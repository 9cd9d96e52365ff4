//! The accept loop: bounded connections (refused with 503 and `Retry-After` beyond the cap,
//! never left waiting), header-read and write timeouts, bounded per-connection buffers,
//! keep-alive, graceful shutdown with a drain deadline.
//!
//! A connection's memory is bounded whatever the client does: hyper's read buffer and write
//! queue are capped at [`CONNECTION_BUFFER_BYTES`] each (a request head larger than that is
//! refused), answers come in batches of at most 64 KiB ([`crate::http::peers`]), and a client
//! that stops reading is dropped once a write has made no progress for `write_timeout`
//! ([`WriteTimeout`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::error::Error;
use crate::http::app;
use crate::http::json::refusal;
use crate::reaper;
use crate::state::AppState;

/// Cap on hyper's read buffer and on its write queue, per connection.
pub const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

/// Connections over the cap that are answered 503 at the same time; beyond, they are closed
/// without an answer.
pub const REFUSALS_IN_FLIGHT: usize = 64;

/// How long a connection over the cap may take to send its request before it is closed.
pub const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client refused for too many connections is asked to wait (`Retry-After`).
pub const CONNECTIONS_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs the server on an already bound listener until `shutdown` resolves, then drains
/// (bounded by `config.drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    if config.ttl.is_zero() {
        return Err(Error::Config("ttl must be greater than zero".into()));
    }
    if !(0.0..=1.0).contains(&config.mass_eviction_share) {
        return Err(Error::Config(
            "mass-eviction share must be between 0 and 1".into(),
        ));
    }
    if config.write_timeout.is_zero() {
        return Err(Error::Config(
            "write timeout must be greater than zero".into(),
        ));
    }
    let state = AppState::new(config);
    serve_with_state(listener, state, shutdown).await
}

/// Like [`serve`], with state built by the caller (to inspect it from tests).
pub async fn serve_with_state(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let cfg = state.config().clone();
    let token = state.shutdown_token();
    let reaper_task = reaper::spawn(state.registry().clone(), token.clone());
    let router = app(state.clone());
    let mut connections = JoinSet::new();
    let permits = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let addr = listener.local_addr()?;
    info!(%addr, my_host = %cfg.my_host, ttl_ms = cfg.ttl.as_millis() as u64,
          security = cfg.security_on(), "discovery listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let metrics = &state.inner.metrics;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
            match refusals.clone().try_acquire_owned() {
                Ok(slot) => {
                    let max = cfg.max_connections;
                    connections.spawn(async move {
                        let _slot = slot;
                        refuse(stream, max).await;
                    });
                }
                Err(_) => debug!(%peer, "connection over the cap closed without an answer"),
            }
            continue;
        };
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let router = router.clone();
        let token = token.clone();
        let state = state.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _open = OpenConnection(state.clone());
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                router.clone().oneshot(req)
            });
            let io = WriteTimeout::new(stream, state.config().write_timeout, state.clone());
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(state.config().header_timeout)
                .max_buf_size(CONNECTION_BUFFER_BYTES)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    info!("shutting down: draining connections");
    token.cancel();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(cfg.drain_timeout, drain)
        .await
        .is_err()
    {
        warn!(
            open = connections.len(),
            "drain deadline passed; dropping remaining connections"
        );
        connections.abort_all();
    }
    let _ = reaper_task.await;
    info!("discovery stopped");
    Ok(())
}

/// Counts a connection as open until dropped.
struct OpenConnection(AppState);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0
            .inner
            .metrics
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers one request on a connection over the cap with 503 and `Retry-After`, then closes it
/// (bounded by [`REFUSAL_TIMEOUT`]).
async fn refuse(stream: TcpStream, max: usize) {
    let service = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
        let resp = refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Too many connections are open (the limit is {max}); try again later."),
            CONNECTIONS_RETRY_AFTER,
        );
        std::future::ready(Ok::<_, std::convert::Infallible>(resp))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_TIMEOUT)
        .max_buf_size(8 * 1024)
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, conn).await;
}

/// A stream whose writes fail with [`io::ErrorKind::TimedOut`] once one has been blocked
/// (the client not reading) for longer than the timeout; reads pass through.
///
/// The timer starts when a write (or flush or shutdown) returns `Pending` and is cleared by the
/// next one that makes progress, so a slow but steady reader is never cut off, and a stream that
/// has nothing to write (an idle keep-alive connection, a quiet watch stream) never times out
/// here.
pub struct WriteTimeout<T> {
    io: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    state: AppState,
}

impl<T> WriteTimeout<T> {
    /// Wraps `io`; timeouts are counted in `state`'s metrics.
    pub fn new(io: T, timeout: Duration, state: AppState) -> Self {
        Self {
            io,
            timeout,
            stalled: None,
            state,
        }
    }

    /// Called when a write returned `Pending`: fails once the stall has lasted the timeout.
    fn stall<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if sleep.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            self.state
                .inner
                .metrics
                .write_timeouts
                .fetch_add(1, Ordering::Relaxed);
            debug!(
                timeout_ms = timeout.as_millis() as u64,
                "write timed out; dropping the connection"
            );
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read for the write timeout",
            )));
        }
        Poll::Pending
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stall(cx),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.progress(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(cx, r)
    }
}
