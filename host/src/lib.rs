//! `cell-host`: runs a cell plugin (a WebAssembly component targeting the
//! `cellmesh:cell` world of `wit/cell.wit`) as a networked cell: the host
//! owns the network life (HTTP API, discovery), the plugin its identity and
//! behaviour.
//!
//! Modules:
//! - [`config`]: command-line arguments with environment twins.
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
//! [`run`] is the whole host: [`start`] loads the plugin and builds the
//! cell, [`CellHost::serve`] serves until the shutdown future resolves,
//! then stops accepting, calls the plugin's shutdown hook and deregisters.

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
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::{Args, Cli, Command, ConformanceArgs};
pub use crate::error::Error;

use crate::api::ApiLimits;
use crate::cell::{CellRuntime, Identity, unique_cell_id};
use crate::discovery_client::{DiscoveryClient, http_client};
use crate::lifecycle::{BackoffPolicy, LifecycleEnd, LifecycleSettings};
use crate::mesh::{Mesh, MeshServices};
use crate::plugin::validate::valid_cell_id;
use crate::plugin::{ComponentCache, LoadError, PluginEngine, PluginSandbox, SandboxLimits};

/// A cell ready to serve: plugin loaded and checked, listener bound.
#[derive(Debug)]
pub struct CellHost {
    cell: Arc<CellRuntime>,
    listener: TcpListener,
    args: Args,
}

/// Runs a cell until `shutdown` resolves (or discovery reports a newer
/// incarnation of its id), then shuts down cleanly.
pub async fn run(
    args: Args,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    start(args, listener).await?.serve(shutdown).await
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

/// Where peers reach this cell: `--advertise`, else the listen address
/// when it is a loopback or specific address, else the host name; the port
/// is the bound one.
fn advertise(args: &Args, bound: SocketAddr) -> Result<(String, u16), Error> {
    if let Some(given) = &args.advertise {
        let bad = || Error::Config(format!("--advertise must be HOST:PORT, got `{given}`"));
        let (host, port) = given.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        return Ok((host.to_owned(), port));
    }
    let host = if bound.ip().is_unspecified() {
        hostname()
    } else {
        bound.ip().to_string()
    };
    Ok((host, bound.port()))
}

/// Loads and checks the plugin, reads its manifest and builds the cell.
/// Every reason to refuse the plugin is an [`Error::Load`] saying exactly
/// what is wrong.
pub async fn start(args: Args, listener: TcpListener) -> Result<CellHost, Error> {
    let bound = listener.local_addr().map_err(Error::Serve)?;
    let (advertise_host, advertise_port) = advertise(&args, bound)?;
    if let Some(id) = &args.cell_id
        && !valid_cell_id(id)
    {
        return Err(Error::Config(format!(
            "--cell-id {id:?} must be 1 to 64 characters from [A-Za-z0-9._-]"
        )));
    }
    let http = http_client(Duration::from_millis(args.http_timeout_ms));
    let discovery = DiscoveryClient::new(http.clone(), &args.discovery)
        .with_token(args.discovery_token.clone());
    let mesh = Arc::new(Mesh::new(discovery, http));
    let services = Arc::new(MeshServices::new(mesh.clone(), args.config.clone()));
    let engine = PluginEngine::new().map_err(|e| LoadError::Engine(format!("{e:#}")))?;
    let cache = args.effective_cache_dir().map(ComponentCache::new);
    let limits = SandboxLimits {
        call_timeout: args.call_timeout(),
        memory_limit_bytes: usize::try_from(args.memory_limit_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
    };
    let sandbox =
        PluginSandbox::load(&engine, &args.plugin, cache.as_ref(), limits, services).await?;
    let manifest = sandbox.manifest();
    let base_id = args
        .cell_id
        .clone()
        .unwrap_or_else(|| manifest.cell_id.clone());
    let cell_id = if args.unique_id {
        unique_cell_id(&base_id, &format!("{advertise_host}:{advertise_port}"))
    } else {
        base_id
    };
    let branch = args
        .branch
        .clone()
        .filter(|b| !b.is_empty())
        .or_else(|| Some(manifest.branch.clone()).filter(|b| !b.is_empty()))
        .unwrap_or_else(|| "main".to_owned());
    mesh.set_self_id(cell_id.clone());
    let report = sandbox.load_report();
    tracing::info!(
        cell_id = %cell_id,
        plugin = %args.plugin.display(),
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
        args,
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
            args,
        } = self;
        let settings = LifecycleSettings {
            heartbeat: args.heartbeat_interval(),
            backoff: BackoffPolicy {
                base: Duration::from_millis(args.register_base_ms.max(1)),
                cap: Duration::from_millis(args.register_cap_ms.max(1)),
                attempts: args.register_attempts,
            },
            startup_delay: Duration::from_millis(args.startup_delay_ms),
        };
        let local = listener.local_addr().map_err(Error::Serve)?;
        tracing::info!(
            cell_id = %cell.cell_id(),
            api = %format!("http://{local}"),
            advertised = %format!("http://{}:{}", cell.identity.advertise_host, cell.identity.advertise_port),
            discovery = %args.discovery,
            "cell serving"
        );

        let stop_lifecycle = CancellationToken::new();
        let mut lifecycle = Some(tokio::spawn(lifecycle::run_lifecycle(
            cell.clone(),
            settings,
            stop_lifecycle.clone(),
        )));
        let stop_http = CancellationToken::new();
        let app = api::app(cell.clone(), ApiLimits::default());
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
            let drain = Duration::from_millis(args.drain_ms);
            match tokio::time::timeout(drain, &mut server).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "HTTP server error while draining"),
                Err(_) => tracing::warn!(
                    drain_ms = args.drain_ms,
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
        let hook = Duration::from_millis(args.shutdown_hook_ms);
        match tokio::time::timeout(hook, cell.sandbox.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "plugin shutdown hook failed"),
            Err(_) => tracing::warn!(
                timeout_ms = args.shutdown_hook_ms,
                "plugin shutdown hook timed out"
            ),
        }
        // 4. Deregister, bounded (not when superseded: the id is someone else's).
        if !matches!(outcome, Err(Error::Superseded { .. })) {
            lifecycle::deregister(&cell, Duration::from_millis(args.deregister_timeout_ms)).await;
        }
        tracing::info!(cell_id = %cell.cell_id(), "cell stopped");
        outcome
    }
}
