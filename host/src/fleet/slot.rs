//! [`CellSlot`]: one cell a host was asked to run, whether it runs or
//! failed, as the admin API reports it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::cell::CellRuntime;

/// Where a cell of the host stands.
#[derive(Debug, Clone)]
pub enum SlotState {
    /// Loaded and serving; its registration is in
    /// [`CellRuntime::registration_status`].
    Running(Arc<CellRuntime>),
    /// The cell could not run (its plugin failed to load, its port could
    /// not be bound, discovery refused its registration): why, in one
    /// sentence.
    Failed(String),
}

/// One cell of a host: what was asked for, and what became of it.
#[derive(Debug)]
pub struct CellSlot {
    /// Position in the host's list of cells (0-based).
    pub index: usize,
    /// The cell id, once known (from the spec, or the plugin's manifest);
    /// the spec's name (`cell #3`) until then.
    pub name: String,
    /// The plugin file.
    pub plugin: PathBuf,
    /// SHA-256 of the plugin file (hex), when it could be read.
    pub digest: Option<String>,
    /// `host:port` peers are given for the cell, once bound.
    pub address: Option<String>,
    state: Mutex<SlotState>,
    /// Cancelled when the cell fails: its listener and plugin watch stop.
    failed: CancellationToken,
}

impl CellSlot {
    /// A slot in `state`.
    pub fn new(
        index: usize,
        name: String,
        plugin: PathBuf,
        digest: Option<String>,
        address: Option<String>,
        state: SlotState,
    ) -> Self {
        let failed = CancellationToken::new();
        if matches!(state, SlotState::Failed(_)) {
            failed.cancel();
        }
        Self {
            index,
            name,
            plugin,
            digest,
            address,
            state: Mutex::new(state),
            failed,
        }
    }

    /// The slot's state now.
    pub fn state(&self) -> SlotState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The running cell, if it runs.
    pub fn runtime(&self) -> Option<Arc<CellRuntime>> {
        match &*self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            SlotState::Running(cell) => Some(cell.clone()),
            SlotState::Failed(_) => None,
        }
    }

    /// Marks the cell failed (e.g. discovery refused it), keeping the
    /// reason for the admin API; the host stops serving it.
    pub fn fail(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(index = self.index, cell = %self.name, %reason, "cell failed");
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = SlotState::Failed(reason);
        self.failed.cancel();
    }

    /// Resolves once the cell has failed.
    pub async fn failure(&self) {
        self.failed.cancelled().await;
    }

    /// Whether the cell failed.
    pub fn is_failed(&self) -> bool {
        matches!(
            &*self.state.lock().unwrap_or_else(|p| p.into_inner()),
            SlotState::Failed(_)
        )
    }
}
