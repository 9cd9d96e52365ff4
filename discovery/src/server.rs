//! The accept loop: bounded connections, header-read timeout, keep-alive, graceful shutdown
//! with a drain deadline.

use std::future::Future;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::error::Error;
use crate::http::app;
use crate::reaper;
use crate::state::AppState;

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
    let addr = listener.local_addr()?;
    info!(%addr, my_host = %cfg.my_host, ttl_ms = cfg.ttl.as_millis() as u64,
          security = cfg.security_on(), "discovery listening");
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
        let router = router.clone();
        let token = token.clone();
        let header_timeout = cfg.header_timeout;
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                router.clone().oneshot(req)
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
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
