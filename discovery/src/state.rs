//! Shared server state: configuration, the registry behind a short-held mutex, metrics and the
//! shutdown token.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_micros_now;
use crate::config::Config;
use crate::metrics::RequestMetrics;
use crate::reaper;
use crate::registry::{Membership, PeerRegistry, PeersView, RegistrySettings};

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) registry: Mutex<PeerRegistry>,
    pub(crate) reaper_wake: Notify,
    pub(crate) metrics: RequestMetrics,
    pub(crate) shutdown: CancellationToken,
    /// Distinguishes this run in ETags and event ids.
    pub(crate) boot: String,
    /// `my_host` as a JSON string literal.
    pub(crate) my_host_json: String,
    pub(crate) started: Instant,
    /// Size of the last `/peers` answer, to size the next buffer.
    pub(crate) last_peers_len: AtomicUsize,
}

impl AppState {
    /// State for a server started now with `config`.
    pub fn new(config: Config) -> Self {
        let now = Instant::now();
        let wall = unix_micros_now();
        let settings = RegistrySettings {
            ttl: config.ttl,
            startup_grace: config.startup_grace,
            mass_eviction_share: config.mass_eviction_share,
            mass_eviction_min_peers: config.mass_eviction_min_peers,
            mass_eviction_hold: config.mass_eviction_hold,
            history: config.watch_history,
            max_peers: config.max_peers,
        };
        let registry = PeerRegistry::new(settings, now, u64::try_from(wall).unwrap_or(1));
        let boot = hex::encode(rand::random::<[u8; 4]>());
        Self {
            inner: Arc::new(Shared {
                my_host_json: serde_json::to_string(&config.my_host).unwrap_or_default(),
                config,
                registry: Mutex::new(registry),
                reaper_wake: Notify::new(),
                metrics: RequestMetrics::default(),
                shutdown: CancellationToken::new(),
                boot,
                started: now,
                last_peers_len: AtomicUsize::new(1024),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Locks the registry (for tests and tools; never hold it across `.await`).
    pub fn registry(&self) -> MutexGuard<'_, PeerRegistry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Token cancelled when the server shuts down; ends the reaper and watch streams.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Starts the expiry task; it stops when [`AppState::shutdown_token`] is cancelled.
    pub fn spawn_reaper(&self) -> JoinHandle<()> {
        tokio::spawn(reaper::run(self.clone()))
    }

    /// The registry's view at its current revision; when it must be built, the sort happens
    /// outside the lock so heartbeats do not wait behind it.
    pub fn peers_view(&self) -> Arc<PeersView> {
        let members = {
            let reg = self.registry();
            if let Some(v) = reg.cached_view() {
                return v;
            }
            reg.membership()
        };
        self.install_view(members)
    }

    /// Sorts `members` (without holding the lock) and caches the view if it is still current.
    pub fn install_view(&self, members: Membership) -> Arc<PeersView> {
        let view = Arc::new(members.sorted());
        self.registry().install_view(view.clone());
        view
    }

    pub(crate) fn wake_reaper(&self) {
        self.inner.reaper_wake.notify_one();
    }
}
