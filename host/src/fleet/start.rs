//! Starting a host of many cells, in the order the design fixes: check the
//! system's limits, build the one engine (pooled for many cells), load
//! every distinct plugin file once, bind every cell's listener, build
//! every cell (instantiate, read the manifest) a few at a time, settle the
//! ids, then read each cell's first state a few at a time. A cell that
//! cannot start (its plugin refused, its port taken, its id taken) becomes
//! a failed [`CellSlot`]; the others go on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::load::{Loaded, LoadedPlugin, load_plugins};
use super::os_limits;
use super::spec::CellSpec;
use super::{CellSlot, Fleet, ReadyCell, SlotState};
use crate::cell::{CellRuntime, Identity, unique_cell_id};
use crate::config::FleetConfig;
use crate::discovery_client::{DiscoveryClient, http_client};
use crate::egress::PeerClient;
use crate::error::Error;
use crate::mesh::{Mesh, MeshServices};
use crate::mesh_view::{MeshView, ViewPolicy};
use crate::plugin::engine::PoolSizing;
use crate::plugin::{ComponentCache, LoadError, PluginEngine, PluginSandbox, SandboxLimits};

/// Cells instantiated, or asked for their first state, at once during
/// start-up: enough to keep every core busy, few enough that start-up
/// never holds many fiber stacks or instances half-made.
pub const STARTUP_CONCURRENCY: usize = 16;

/// What the host shares between its cells while they start.
struct Shared {
    engine: PluginEngine,
    discovery: DiscoveryClient,
    peers: PeerClient,
    view: Arc<MeshView>,
    register_peer: bool,
}

/// A cell's sandbox (or why it could not be built) and its mesh.
type Built = (Result<PluginSandbox, LoadError>, Arc<Mesh>);

/// A cell whose listener is bound, not yet built.
struct Bound {
    spec: CellSpec,
    plugin: Arc<LoadedPlugin>,
    listener: TcpListener,
    advertise: (String, u16),
}

/// The largest of every limit over `cells`, for sizing the pool.
fn largest_limits(cells: &[CellSpec]) -> SandboxLimits {
    let mut largest = cells.first().map(|c| c.limits).unwrap_or_default();
    for cell in cells {
        let limits = &cell.limits;
        largest.memory_limit_bytes = largest.memory_limit_bytes.max(limits.memory_limit_bytes);
        largest.max_instances = largest.max_instances.max(limits.max_instances);
        largest.max_tables = largest.max_tables.max(limits.max_tables);
        largest.max_memories = largest.max_memories.max(limits.max_memories);
    }
    largest
}

/// The name of a cell before its id is known.
fn provisional_name(spec: &CellSpec) -> String {
    match &spec.cell_id {
        Some(id) if !spec.unique_id => id.clone(),
        _ => format!("cell #{}", spec.index),
    }
}

/// `host:port`, with brackets around an IPv6 host.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Fleet {
    /// Starts every cell of `config` (see the module docs) without serving
    /// yet. Fails only when the system cannot hold the cells
    /// ([`crate::ConfigError`]), the engine cannot be built, or the admin
    /// API's address cannot be bound; a cell that cannot start is a failed
    /// slot.
    pub async fn start(config: FleetConfig) -> Result<Fleet, Error> {
        let started = Instant::now();
        let count = config.cells.len();
        let sizing = (count > 1).then(|| PoolSizing::new(count, &largest_limits(&config.cells)));
        os_limits::check(count, sizing.as_ref())?;
        let engine = match &sizing {
            Some(sizing) => PluginEngine::pooled(sizing),
            None => PluginEngine::new(),
        }
        .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let admin = match &config.admin {
            Some(admin) => Some(TcpListener::bind(admin.listen).await.map_err(|error| {
                Error::Serve(std::io::Error::new(
                    error.kind(),
                    format!(
                        "cannot listen on {} (--admin-listen): {error}",
                        admin.listen
                    ),
                ))
            })?),
            None => None,
        };
        let host = &config.host;
        let http = http_client(host.http_timeout);
        let discovery = DiscoveryClient::new(http, &host.discovery_url)
            .with_token(host.discovery_token.clone())
            .with_limits(host.discovery_limits);
        let view = Arc::new(MeshView::default());
        view.set_policy(ViewPolicy {
            untagged_interval: host.lifecycle.heartbeat,
            refresh_interval: host.lifecycle.heartbeat / 2,
            ..ViewPolicy::default()
        });
        let shared = Shared {
            engine,
            discovery: discovery.clone(),
            peers: PeerClient::new(host.peer_policy.clone(), host.http_timeout),
            view,
            register_peer: host.register_peer,
        };

        let cache = host.cache_dir.as_deref().map(ComponentCache::new);
        let plugins = config.cells.iter().map(|c| c.plugin.clone());
        let loaded = load_plugins(&shared.engine, plugins, cache).await;
        let mut slots: Vec<Option<Arc<CellSlot>>> = vec![None; count];
        let bound = bind_all(&config, &loaded, &mut slots).await;
        let ready = build_all(&shared, bound, &mut slots).await;
        let slots: Vec<Arc<CellSlot>> = slots
            .into_iter()
            .map(|slot| slot.expect("every cell has a slot"))
            .collect();
        first_states(&ready).await;
        let failed = slots.iter().filter(|s| s.is_failed()).count();
        tracing::info!(
            host_id = %config.host_id,
            cells = count,
            running = count - failed,
            failed,
            pooled = sizing.is_some(),
            took_ms = started.elapsed().as_secs_f64() * 1e3,
            "cells started"
        );
        Ok(Fleet {
            config,
            slots,
            ready,
            discovery,
            admin,
            engine: shared.engine,
        })
    }
}

/// Binds the listener of every cell whose plugin loaded; the others'
/// slots fail.
async fn bind_all(
    config: &FleetConfig,
    loaded: &Loaded,
    slots: &mut [Option<Arc<CellSlot>>],
) -> Vec<Bound> {
    let mut bound = Vec::with_capacity(config.cells.len());
    for spec in &config.cells {
        let failed = |digest: Option<String>, address: Option<String>, reason: String| {
            Some(Arc::new(CellSlot::new(
                spec.index,
                provisional_name(spec),
                spec.plugin.clone(),
                digest,
                address,
                SlotState::Failed(reason),
            )))
        };
        let plugin = match loaded.get(&spec.plugin) {
            Some(Ok(plugin)) => plugin.clone(),
            Some(Err(failure)) => {
                let reason = format!("its plugin was refused: {}", failure.reason);
                slots[spec.index] = failed(failure.digest.clone(), None, reason);
                continue;
            }
            None => unreachable!("every cell's plugin was loaded or refused"),
        };
        let listener = match TcpListener::bind(spec.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(cell = spec.index, listen = %spec.listen, %error, "cannot listen; this cell will not run");
                let reason = format!("cannot listen on {}: {error}", spec.listen);
                slots[spec.index] = failed(Some(plugin.digest.clone()), None, reason);
                continue;
            }
        };
        let local: SocketAddr = match listener.local_addr() {
            Ok(local) => local,
            Err(error) => {
                let reason = format!("cannot read the address it listens on: {error}");
                slots[spec.index] = failed(Some(plugin.digest.clone()), None, reason);
                continue;
            }
        };
        let host = match &config.advertise_host {
            Some(host) => host.clone(),
            None if local.ip().is_unspecified() => crate::hostname(),
            None => local.ip().to_string(),
        };
        bound.push(Bound {
            spec: spec.clone(),
            plugin,
            listener,
            advertise: (host, local.port()),
        });
    }
    bound
}

/// Builds every bound cell, [`STARTUP_CONCURRENCY`] at a time, then
/// settles their ids in order (a cell whose id an earlier cell holds
/// fails); fills `slots`.
async fn build_all(
    shared: &Shared,
    bound: Vec<Bound>,
    slots: &mut [Option<Arc<CellSlot>>],
) -> Vec<ReadyCell> {
    let permits = Arc::new(Semaphore::new(STARTUP_CONCURRENCY));
    let mut building = JoinSet::new();
    for (position, cell) in bound.iter().enumerate() {
        let mesh = Arc::new(
            Mesh::with_view(
                shared.discovery.clone(),
                shared.peers.clone(),
                shared.view.clone(),
            )
            .with_register_peer(shared.register_peer),
        );
        let services = Arc::new(MeshServices::new(
            mesh.clone(),
            cell.spec.plugin_config.clone(),
        ));
        let engine = shared.engine.clone();
        let linked = cell.plugin.linked.clone();
        let (path, limits) = (cell.spec.plugin.clone(), cell.spec.limits);
        let permits = permits.clone();
        building.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let sandbox = PluginSandbox::builder(&engine, &path)
                .linked(linked)
                .limits(limits)
                .services(services)
                .load()
                .await;
            (position, sandbox, mesh)
        });
    }
    let mut built: Vec<Option<Built>> = (0..bound.len()).map(|_| None).collect();
    while let Some(joined) = building.join_next().await {
        match joined {
            Ok((position, sandbox, mesh)) => built[position] = Some((sandbox, mesh)),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => unreachable!("start-up tasks are never cancelled: {error}"),
        }
    }

    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut ready = Vec::with_capacity(bound.len());
    for (cell, built) in bound.into_iter().zip(built) {
        let Bound {
            spec,
            plugin,
            listener,
            advertise: (host, port),
        } = cell;
        let address = host_port(&host, port);
        let digest = Some(plugin.digest.clone());
        let (sandbox, mesh) = built.expect("every cell was built");
        let sandbox = match sandbox {
            Ok(sandbox) => sandbox,
            Err(error) => {
                tracing::error!(cell = spec.index, plugin = %spec.plugin.display(), %error, "this cell will not run");
                slots[spec.index] = Some(Arc::new(CellSlot::new(
                    spec.index,
                    provisional_name(&spec),
                    spec.plugin.clone(),
                    digest,
                    Some(address),
                    SlotState::Failed(error.to_string()),
                )));
                continue;
            }
        };
        let manifest = sandbox.manifest();
        let base = spec
            .cell_id
            .clone()
            .unwrap_or_else(|| manifest.cell_id.clone());
        let cell_id = if spec.unique_id {
            // Six hex digits of a hash collide now and then among
            // thousands of replicas: the later cell hashes its address
            // again with a counter (still stable for a given address).
            let address = format!("{host}:{port}");
            let mut id = unique_cell_id(&base, &address);
            let mut salt = 1u32;
            while ids.contains_key(&id) && salt < 64 {
                id = unique_cell_id(&base, &format!("{address}#{salt}"));
                salt += 1;
            }
            id
        } else {
            base
        };
        if let Some(first) = ids.get(&cell_id) {
            let reason = format!(
                "cell id `{cell_id}` is already taken by cell #{first} of this host: give the \
                 cells distinct ids (`id` in the cells file, --cell-id, --unique-id)"
            );
            tracing::error!(cell = spec.index, %reason, "this cell will not run");
            slots[spec.index] = Some(Arc::new(CellSlot::new(
                spec.index,
                format!("cell #{}", spec.index),
                spec.plugin.clone(),
                digest,
                Some(address),
                SlotState::Failed(reason),
            )));
            continue;
        }
        ids.insert(cell_id.clone(), spec.index);
        let branch = spec
            .branch
            .clone()
            .filter(|b| !b.is_empty())
            .or_else(|| Some(manifest.branch.clone()).filter(|b| !b.is_empty()))
            .unwrap_or_else(|| "main".to_owned());
        mesh.set_self_id(cell_id.clone());
        tracing::debug!(
            cell_id = %cell_id,
            index = spec.index,
            plugin = %spec.plugin.display(),
            address = %address,
            "cell built"
        );
        let identity = Identity {
            cell_id: cell_id.clone(),
            branch,
            advertise_host: host,
            advertise_port: port,
        };
        let runtime = Arc::new(CellRuntime::new(sandbox, identity, mesh));
        let slot = Arc::new(CellSlot::new(
            spec.index,
            cell_id,
            spec.plugin.clone(),
            digest,
            Some(address),
            SlotState::Running(runtime.clone()),
        ));
        slots[spec.index] = Some(slot.clone());
        ready.push(ReadyCell {
            slot,
            cell: runtime,
            listener,
        });
    }
    ready
}

/// Reads every cell's first state for `/health` and `/metrics` (later ones
/// come from its plugin watch), [`STARTUP_CONCURRENCY`] at a time; each
/// read is bounded by the sandbox's bounds, and a failure only logs.
async fn first_states(ready: &[ReadyCell]) {
    let permits = Arc::new(Semaphore::new(STARTUP_CONCURRENCY));
    let mut reads = JoinSet::new();
    for ready in ready {
        let (cell, permits) = (ready.cell.clone(), permits.clone());
        reads.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Err(error) = cell.refresh_state().await {
                tracing::warn!(cell_id = %cell.cell_id(), %error, "the plugin's state cannot be read yet");
            }
        });
    }
    while let Some(joined) = reads.join_next().await {
        if let Err(error) = joined
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}
