//! Shared server state: configuration, the [`Registry`] handle, metrics and the shutdown token.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::unix_micros_now;
use crate::config::Config;
use crate::metrics::RequestMetrics;
use crate::reaper;
use crate::registry::{PeerRegistry, RegistrySettings};
use crate::registry_handle::Registry;

/// Everything the handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    pub(crate) metrics: RequestMetrics,
    pub(crate) shutdown: CancellationToken,
    /// Distinguishes this run in ETags and event ids.
    pub(crate) boot: String,
    /// `my_host` as a JSON string literal.
    pub(crate) my_host_json: String,
    pub(crate) started: Instant,
    /// The unfiltered `/peers` answer shared between readers.
    pub(crate) listing: crate::listings::Listings,
    /// Turns for batch bodies ([`crate::config::BATCH_BODIES_IN_FLIGHT`]).
    pub(crate) batch_turns: Arc<tokio::sync::Semaphore>,
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
            max_bytes: config.registry_max_bytes,
        };
        let registry = PeerRegistry::new(settings, now, u64::try_from(wall).unwrap_or(1));
        let boot = hex::encode(rand::random::<[u8; 4]>());
        Self {
            inner: Arc::new(Shared {
                my_host_json: serde_json::to_string(&config.my_host).unwrap_or_default(),
                config,
                registry: Registry::new(registry),
                metrics: RequestMetrics::default(),
                shutdown: CancellationToken::new(),
                boot,
                started: now,
                listing: crate::listings::Listings::default(),
                batch_turns: Arc::new(tokio::sync::Semaphore::new(
                    crate::config::BATCH_BODIES_IN_FLIGHT,
                )),
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The registry handle (`registry().lock()` gives tests and tools the state machine).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Token cancelled when the server shuts down; ends the reaper and watch streams.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Starts the expiry task over this state's registry, as [`crate::serve_with_state`] does
    /// (for tests that drive [`crate::app`] without a server); it stops when
    /// [`AppState::shutdown_token`] is cancelled.
    pub fn spawn_reaper(&self) -> JoinHandle<()> {
        reaper::spawn(self.registry().clone(), self.shutdown_token())
    }
}
