//! `cell-host`: runs cell plugins (WebAssembly components targeting the
//! `cellmesh:cell` world of `wit/cell.wit`) as networked cells, one or many
//! per process: the host owns the network life (HTTP API, discovery), each
//! plugin its cell's identity and behaviour.
//!
//! Modules:
//! - [`config`]: command-line arguments with environment twins, and the
//!   typed [`HostConfig`] (one cell) or [`FleetConfig`] (many) they become
//!   at the edge ([`RunConfig`]).
//! - [`fleet`]: many cells in one host: cells file and expansion, plugins
//!   compiled once, the pooled engine, start-up, serving and shutdown.
//! - [`liveness`]: registration, heartbeats and deregistration of all the
//!   cells of a host in batches.
//! - [`admin`]: the host's admin API (`--admin-listen`).
//! - [`plugin`]: loading, checking, caching and sandboxing plugins; usable
//!   on its own (the conformance suite builds on it).
//! - [`conformance`]: the plugin conformance suite (`cell-host conformance`).
//! - [`cell`]: [`cell::CellRuntime`], the state API, lifecycle and plugin
//!   watch share.
//! - [`status`]: what the cell reports about itself (registration, plugin),
//!   read without waiting.
//! - [`api`]: the cell's HTTP API (`fn app(state) -> Router`).
//! - [`server`]: the accept loop and the request-level bounds (timeouts,
//!   one global concurrency limit).
//! - [`lifecycle`]: registration with back-off, heartbeats, deregistration.
//! - [`contest`]: what the host does when another registration takes its id.
//! - [`plugin_watch`]: `evolve` and `state` off the liveness path.
//! - [`discovery_client`]: the discovery service's HTTP API.
//! - [`mesh`]: the cached mesh view, hand-kept peers, message delivery.
//! - [`mesh_view`]: the cached listing, refreshed conditionally and
//!   rate-limited.
//! - [`egress`]: where a cell may send (`--peer-allow`), peer URLs built
//!   with a URL type, the peer HTTP client (no redirects).
//! - [`messages`]: bounded message and sync logs.
//! - [`error`]: [`Error`] and [`error::ApiError`].
//!
//! [`run`] is the whole host of one cell, driven by a [`HostConfig`]:
//! [`start`] loads the plugin and builds the cell, [`CellHost::serve`]
//! serves until the shutdown future resolves, then deregisters, drains the
//! requests in flight and calls the plugin's shutdown hook, each step
//! bounded. [`fleet::run`] is the same for many cells, driven by a
//! [`FleetConfig`].

pub mod admin;
pub mod api;
pub mod cell;
pub mod config;
pub mod conformance;
pub mod contest;
pub mod discovery_client;
pub mod egress;
pub mod error;
pub mod fleet;
pub mod lifecycle;
pub mod liveness;
pub mod mesh;
pub mod mesh_view;
pub mod messages;
pub mod plugin;
pub mod plugin_watch;
pub mod server;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::{
    Args, Cli, Command, ConfigError, ConformanceArgs, FleetConfig, HostConfig, RunConfig,
};
pub use crate::error::Error;

use crate::cell::{CellRuntime, Identity, unique_cell_id};
use crate::config::AdvertiseAddr;
use crate::discovery_client::{DiscoveryClient, http_client};
use crate::egress::PeerClient;
use crate::lifecycle::LifecycleEnd;
use crate::mesh::{Mesh, MeshServices};
use crate::mesh_view::ViewPolicy;
use crate::plugin::{ComponentCache, LoadError, PluginEngine, PluginSandbox};

/// A cell ready to serve: plugin loaded and checked, listener bound.
#[derive(Debug)]
pub struct CellHost {
    cell: Arc<CellRuntime>,
    listener: TcpListener,
    config: HostConfig,
}

/// Runs a cell until `shutdown` resolves (or discovery refuses its
/// registration at start), then shuts down cleanly.
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
        .with_token(config.discovery_token.clone())
        .with_limits(config.discovery_limits);
    let peers = PeerClient::new(config.peer_policy.clone(), config.http_timeout);
    let mesh = Arc::new(Mesh::new(discovery, peers).with_register_peer(config.register_peer));
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
    mesh.view().set_policy(ViewPolicy {
        untagged_interval: config.lifecycle.heartbeat,
        ..ViewPolicy::default()
    });
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
    // The first state for /health and /metrics (later ones come from the
    // plugin watch); bounded, as a plugin's every call is.
    if let Err(error) = cell.refresh_state().await {
        tracing::warn!(cell_id = %cell.cell_id(), %error, "the plugin's state cannot be read yet");
    }
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

    /// Serves the API and runs the lifecycle and the plugin watch until
    /// `shutdown` resolves (or discovery refuses the cell's registration at
    /// start); then stops in this order, each step bounded
    /// ([`ShutdownSettings`](crate::lifecycle::ShutdownSettings)):
    /// 1. deregisters (peers stop sending), still serving meanwhile;
    /// 2. stops accepting and drains the requests in flight;
    /// 3. calls the plugin's shutdown hook.
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

        let stop_tasks = CancellationToken::new();
        let mut lifecycle = Some(tokio::spawn(lifecycle::run_lifecycle(
            cell.clone(),
            config.lifecycle,
            stop_tasks.clone(),
        )));
        let watch = tokio::spawn(plugin_watch::run_plugin_watch(
            cell.clone(),
            config.plugin_watch,
            stop_tasks.clone(),
        ));
        let stop_http = CancellationToken::new();
        let app = server::harden(api::app(cell.clone(), config.api), config.server);
        let mut server = tokio::spawn(server::serve(
            listener,
            app,
            config.server,
            stop_http.clone(),
            bounds.drain,
        ));
        let mut shutdown = std::pin::pin!(shutdown);

        let mut outcome: Result<(), Error> = Ok(());
        let mut server_done = false;
        tokio::select! {
            result = &mut server => {
                server_done = true;
                if let Ok(Err(error)) = result {
                    outcome = Err(Error::Serve(error));
                }
            }
            () = &mut shutdown => {
                tracing::info!(cell_id = %cell.cell_id(), "shutdown requested");
            }
            end = async { lifecycle.as_mut().expect("present").await } => {
                lifecycle = None;
                if let Ok(LifecycleEnd::Refused(detail)) = end {
                    outcome = Err(Error::Refused { cell_id: cell.cell_id().to_owned(), detail });
                }
            }
        }

        // 0. Stop heartbeats and the plugin watch (their calls in flight
        //    are left to their own bounds).
        stop_tasks.cancel();
        if let Some(handle) = lifecycle.take() {
            let _ = handle.await;
        }
        let _ = watch.await;
        // 1. Deregister, bounded, still serving: peers stop sending.
        lifecycle::deregister(&cell, bounds.deregister).await;
        // 2. Stop accepting; let in-flight requests finish, within a bound.
        stop_http.cancel();
        if !server_done {
            match (&mut server).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "HTTP server error while draining"),
                Err(error) => tracing::warn!(%error, "HTTP server task failed"),
            }
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
        tracing::info!(cell_id = %cell.cell_id(), "cell stopped");
        outcome
    }
}
