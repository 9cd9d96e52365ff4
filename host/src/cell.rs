//! [`CellRuntime`]: everything a running cell shares between its HTTP API,
//! its lifecycle and its plugin watch: the plugin, its identity, the mesh,
//! the logs, and what the cell reports about itself (its standing with
//! discovery, the plugin's last state: see [`crate::status`]), which the
//! API reads without waiting on discovery or on the plugin.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::discovery_client::{Lease, Registration};
use crate::mesh::Mesh;
use crate::messages::{MessageStore, SyncLog};
use crate::plugin::bindings::CellState;
use crate::plugin::validate::MAX_CELL_ID_LEN;
use crate::plugin::{PluginError, PluginSandbox};
use crate::status::{PluginCache, PluginView, RegistrationStatus, status_metrics};

/// Who the cell is on the mesh and where it is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Registered id (manifest, `--cell-id`, `--unique-id` applied).
    pub cell_id: String,
    /// Registered branch.
    pub branch: String,
    /// Host peers call (discovery's `ip` and `hostname`).
    pub advertise_host: String,
    /// Port peers call.
    pub advertise_port: u16,
}

/// Length of the `--unique-id` suffix, in hex digits.
pub const UNIQUE_SUFFIX_LEN: usize = 6;

/// Appends a stable suffix derived from `advertise` (`alpha` ->
/// `alpha-1a2b3c`), keeping the id within the contract's length.
pub fn unique_cell_id(base: &str, advertise: &str) -> String {
    let digest = hex::encode(Sha256::digest(advertise.as_bytes()));
    let keep = MAX_CELL_ID_LEN - UNIQUE_SUFFIX_LEN - 1;
    let base: String = base.chars().take(keep).collect();
    format!("{base}-{}", &digest[..UNIQUE_SUFFIX_LEN])
}

/// The current UTC time as the wire contract writes it
/// (`2026-01-02T12:21:45.755329Z`).
pub fn now_iso() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

/// State shared by a cell's API and lifecycle.
#[derive(Debug)]
pub struct CellRuntime {
    /// The plugin.
    pub sandbox: PluginSandbox,
    /// Identity on the mesh.
    pub identity: Identity,
    /// Mesh view and delivery.
    pub mesh: Arc<Mesh>,
    /// Received messages.
    pub messages: MessageStore,
    /// Syncs with peers.
    pub syncs: SyncLog,
    /// The plugin's last state and whether it answers; read by `/health`
    /// and `/metrics`, refreshed by the plugin watch.
    pub plugin: PluginCache,
    level: Mutex<f64>,
    lease: Mutex<Option<Lease>>,
    registration: Mutex<RegistrationStatus>,
    peers_count: AtomicU64,
    started: Instant,
}

impl CellRuntime {
    /// A runtime for a loaded plugin.
    pub fn new(sandbox: PluginSandbox, identity: Identity, mesh: Arc<Mesh>) -> Self {
        let level = sandbox.manifest().consciousness_level;
        Self {
            sandbox,
            identity,
            mesh,
            messages: MessageStore::default(),
            syncs: SyncLog::default(),
            plugin: PluginCache::default(),
            level: Mutex::new(level),
            lease: Mutex::new(None),
            registration: Mutex::new(RegistrationStatus::default()),
            peers_count: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// The cell id.
    pub fn cell_id(&self) -> &str {
        &self.identity.cell_id
    }

    /// The last level the plugin reported.
    pub fn level(&self) -> f64 {
        *self.level.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the level a plugin call reported (non-finite values are
    /// ignored), and asks the plugin watch to read the state again soon
    /// (the call may have changed more than the level).
    pub fn set_level(&self, level: f64) {
        self.record_level(level);
        self.plugin.wake();
    }

    /// Records the level the plugin reported, without waking the watch.
    pub(crate) fn record_level(&self, level: f64) {
        if level.is_finite() {
            *self.level.lock().unwrap_or_else(|p| p.into_inner()) = level;
        }
    }

    /// Calls the plugin's `state` and records the answer (level and the
    /// cached state) or the failure. Waits on the plugin: the API's own
    /// routes may, `/health` and `/metrics` use [`Self::plugin_view`].
    pub async fn refresh_state(&self) -> Result<CellState, PluginError> {
        self.plugin.probe_started();
        match self.sandbox.state().await {
            Ok(state) => {
                self.record_level(state.consciousness_level);
                self.plugin.record_state(state.clone());
                Ok(state)
            }
            Err(error) => {
                tracing::debug!(cell_id = %self.cell_id(), %error, "reading the plugin's state failed");
                self.plugin.record_failure(&error);
                Err(error)
            }
        }
    }

    /// The plugin as `/health` shows it, from its last reported state;
    /// never waits.
    pub fn plugin_view(&self) -> PluginView {
        let mut view = self.plugin.view();
        view.resets = Some((&self.sandbox.stats().resets()).into());
        view
    }

    /// The cell's standing with discovery; never waits.
    pub fn registration_status(&self) -> RegistrationStatus {
        self.registration
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the standing with discovery.
    pub(crate) fn update_registration(&self, change: impl FnOnce(&mut RegistrationStatus)) {
        change(&mut self.registration.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The gauges of [`Self::registration_status`] and
    /// [`Self::plugin_view`] as Prometheus text for `/metrics`, every series
    /// with the label set `labels` (`key="value",...`, escaped).
    pub fn status_metrics(&self, labels: &str) -> String {
        status_metrics(labels, &self.registration_status(), &self.plugin_view())
    }

    /// The lease from the last successful registration, if registered.
    pub fn lease(&self) -> Option<Lease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records (or clears) the registration lease.
    pub fn set_lease(&self, lease: Option<Lease>) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = lease;
    }

    /// Whether discovery has accepted this cell.
    pub fn is_registered(&self) -> bool {
        self.lease
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Peers discovery counted at the last heartbeat.
    pub fn peers_count(&self) -> u64 {
        self.peers_count.load(Ordering::Relaxed)
    }

    /// Records discovery's peer count.
    pub fn set_peers_count(&self, count: u64) {
        self.peers_count.store(count, Ordering::Relaxed);
    }

    /// Time since the runtime was created.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The registration body, with the current level.
    pub fn registration(&self) -> Registration {
        let manifest = self.sandbox.manifest();
        Registration {
            cell_id: self.identity.cell_id.clone(),
            ip: self.identity.advertise_host.clone(),
            port: self.identity.advertise_port,
            consciousness_level: self.level(),
            services: manifest
                .capabilities
                .iter()
                .map(|c| c.name.clone())
                .collect(),
            branch: self.identity.branch.clone(),
            cell_type: manifest.cell_type.clone(),
            hostname: self.identity.advertise_host.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_ids_are_stable_distinct_and_bounded() {
        let a = unique_cell_id("alpha", "host-a:8000");
        assert_eq!(a, unique_cell_id("alpha", "host-a:8000"));
        assert_ne!(a, unique_cell_id("alpha", "host-b:8000"));
        assert!(a.starts_with("alpha-") && a.len() == "alpha-".len() + UNIQUE_SUFFIX_LEN);
        assert_eq!(
            unique_cell_id(&"x".repeat(MAX_CELL_ID_LEN), "h:1").len(),
            MAX_CELL_ID_LEN
        );
    }

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let ts = now_iso();
        assert_eq!(ts.len(), "2026-01-02T12:21:45.755329Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
    }
}
