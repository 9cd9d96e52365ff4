//! `cell-host`: runs a cell plugin (a WebAssembly component targeting the
//! `cellmesh:cell` world of `wit/cell.wit`) as a networked cell: the host
//! owns the network life (HTTP API, discovery), the plugin its identity and
//! behaviour.
//!
//! Modules:
//! - [`config`]: command-line arguments with environment twins, and the
//!   typed [`HostConfig`] they become at the edge.
//! - [`plugin`]: loading, checking, caching and sandboxing plugins; usable
//!   on its own (the conformance suite builds on it).
//! - [`conformance`]: the plugin conformance suite (`cell-host conformance`).
//! - [`cell`]: [`cell::CellRuntime`], the state API and lifecycle share.
//! - [`api`]: the cell's HTTP API (`fn app(state) -> Router`).
//! - [`lifecycle`]: registration with back-off, heartbeats, deregistration.
//! - [`discovery_client`]: the discovery service's HTTP API.
//! - [`mesh`]: the cached mesh view, hand-kept peers, message delivery.
//! - [`messages`]: bounded message and sync logs.
//! - [`error`]: [`Error`] and [`error::ApiError`].
//!
//! [`run`] is the whole host, driven by a [`HostConfig`]: [`start`] loads
//! the plugin and builds the cell, [`CellHost::serve`] serves until the
//! shutdown future resolves, then stops accepting, calls the plugin's
//! shutdown hook and deregisters.

pub mod api;
pub mod cell;
pub mod config;
pub mod conformance;
pub mod discovery_client;
pub mod error;
pub mod lifecycle;
pub mod mesh;
pub mod messages;
pub mod plugin;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::{Args, Cli, Command, ConfigError, ConformanceArgs, HostConfig};
pub use crate::error::Error;

use crate::cell::{CellRuntime, Identity, unique_cell_id};
use crate::config::AdvertiseAddr;
use crate::discovery_client::{DiscoveryClient, http_client};
use crate::lifecycle::LifecycleEnd;
use crate::mesh::{Mesh, MeshServices};
use crate::plugin::{ComponentCache, LoadError, PluginEngine, PluginSandbox};

/// A cell ready to serve: plugin loaded and checked, listener bound.
#[derive(Debug)]
pub struct CellHost {
    cell: Arc<CellRuntime>,
    listener: TcpListener,
    config: HostConfig,
}

/// Runs a cell until `shutdown` resolves (or discovery reports a newer
/// incarnation of its id), then shuts down cleanly.
pub async fn run(
    config: HostConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    start(config, listener).await?.serve(shutdown).await
}

/// The machine's host name: `$HOSTNAME`, `/etc/hostname`, or `localhost`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Where peers reach this cell: the configured address, else the bound
/// address when it is a loopback or specific one, else the host name with
/// the bound port.
fn advertise(config: &HostConfig, bound: SocketAddr) -> AdvertiseAddr {
    if let Some(given) = &config.advertise {
        return given.clone();
    }
    let host = if bound.ip().is_unspecified() {
        hostname()
    } else {
        bound.ip().to_string()
    };
    AdvertiseAddr {
        host,
        port: bound.port(),
    }
}

/// Loads and checks the plugin, reads its manifest and builds the cell.
/// Every reason to refuse the plugin is an [`Error::Load`] saying exactly
/// what is wrong.
pub async fn start(config: HostConfig, listener: TcpListener) -> Result<CellHost, Error> {
    let bound = listener.local_addr().map_err(Error::Serve)?;
    let AdvertiseAddr {
        host: advertise_host,
        port: advertise_port,
    } = advertise(&config, bound);
    let http = http_client(config.http_timeout);
    let discovery = DiscoveryClient::new(http.clone(), &config.discovery_url)
        .with_token(config.discovery_token.clone());
    let mesh = Arc::new(Mesh::new(discovery, http));
    let services = Arc::new(MeshServices::new(
        mesh.clone(),
        config.plugin_config.clone(),
    ));
    let engine = PluginEngine::new().map_err(|e| LoadError::Engine(format!("{e:#}")))?;
    let cache = config.cache_dir.as_deref().map(ComponentCache::new);
    let sandbox = PluginSandbox::builder(&engine, &config.plugin)
        .cache(cache.as_ref())
        .limits(config.limits)
        .services(services)
        .load()
        .await?;
    let manifest = sandbox.manifest();
    let base_id = config
        .cell_id
        .clone()
        .unwrap_or_else(|| manifest.cell_id.clone());
    let cell_id = if config.unique_id {
        unique_cell_id(&base_id, &format!("{advertise_host}:{advertise_port}"))
    } else {
        base_id
    };
    let branch = config
        .branch
        .clone()
        .filter(|b| !b.is_empty())
        .or_else(|| Some(manifest.branch.clone()).filter(|b| !b.is_empty()))
        .unwrap_or_else(|| "main".to_owned());
    mesh.set_self_id(cell_id.clone());
    let report = sandbox.load_report();
    tracing::info!(
        cell_id = %cell_id,
        plugin = %config.plugin.display(),
        cache = ?report.cache,
        compile_ms = report.compile.as_secs_f64() * 1e3,
        instantiate_ms = report.instantiate.as_secs_f64() * 1e3,
        "plugin loaded"
    );
    let identity = Identity {
        cell_id,
        branch,
        advertise_host,
        advertise_port,
    };
    let cell = Arc::new(CellRuntime::new(sandbox, identity, mesh));
    Ok(CellHost {
        cell,
        listener,
        config,
    })
}

impl CellHost {
    /// The cell's shared state.
    pub fn cell(&self) -> &Arc<CellRuntime> {
        &self.cell
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the API and runs the lifecycle until `shutdown` resolves or
    /// discovery reports a newer incarnation; then stops accepting
    /// requests, drains them (bounded), calls the plugin's shutdown hook
    /// (bounded) and deregisters (bounded).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let CellHost {
            cell,
            listener,
            config,
        } = self;
        let bounds = config.shutdown;
        let local = listener.local_addr().map_err(Error::Serve)?;
        tracing::info!(
            cell_id = %cell.cell_id(),
            api = %format!("http://{local}"),
            advertised = %format!("http://{}:{}", cell.identity.advertise_host, cell.identity.advertise_port),
            discovery = %config.discovery_url,
            "cell serving"
        );

        let stop_lifecycle = CancellationToken::new();
        let mut lifecycle = Some(tokio::spawn(lifecycle::run_lifecycle(
            cell.clone(),
            config.lifecycle,
            stop_lifecycle.clone(),
        )));
        let stop_http = CancellationToken::new();
        let app = api::app(cell.clone(), config.api);
        let signal = stop_http.clone();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { signal.cancelled().await });
        let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
        let mut shutdown = std::pin::pin!(shutdown);

        let mut outcome: Result<(), Error> = Ok(());
        let mut server_done = false;
        tokio::select! {
            result = &mut server => {
                server_done = true;
                if let Err(error) = result {
                    outcome = Err(Error::Serve(error));
                }
            }
            () = &mut shutdown => {
                tracing::info!(cell_id = %cell.cell_id(), "shutdown requested");
            }
            end = async { lifecycle.as_mut().expect("present").await } => {
                lifecycle = None;
                if let Ok(LifecycleEnd::Superseded(detail)) = end {
                    outcome = Err(Error::Superseded { cell_id: cell.cell_id().to_owned(), detail });
                }
            }
        }

        // 1. Stop accepting; let in-flight requests finish, within a bound.
        stop_http.cancel();
        if !server_done {
            match tokio::time::timeout(bounds.drain, &mut server).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "HTTP server error while draining"),
                Err(_) => tracing::warn!(
                    drain_ms = bounds.drain.as_millis() as u64,
                    "open requests did not finish in time; closing them"
                ),
            }
        }
        // 2. Stop heartbeats.
        stop_lifecycle.cancel();
        if let Some(handle) = lifecycle.take() {
            let _ = handle.await;
        }
        // 3. The plugin's shutdown hook, bounded.
        match tokio::time::timeout(bounds.plugin_hook, cell.sandbox.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "plugin shutdown hook failed"),
            Err(_) => tracing::warn!(
                timeout_ms = bounds.plugin_hook.as_millis() as u64,
                "plugin shutdown hook timed out"
            ),
        }
        // 4. Deregister, bounded (not when superseded: the id is someone else's).
        if !matches!(outcome, Err(Error::Superseded { .. })) {
            lifecycle::deregister(&cell, bounds.deregister).await;
        }
        tracing::info!(cell_id = %cell.cell_id(), "cell stopped");
        outcome
    }
}
