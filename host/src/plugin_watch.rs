//! The plugin watch: the one task that calls the plugin for the host's own
//! needs, off the liveness path. It runs `evolve` on its own schedule (the
//! heartbeat sends whatever level the plugin last reported) and reads
//! `state` for `/health` and `/metrics` (every [`PluginWatchSettings::state_every`],
//! and soon after a call that may have changed it: see
//! [`crate::status::PluginCache::wake`]). Each call is bounded by the
//! sandbox's own bounds; a stuck plugin leaves the last level and state in
//! place, and the cache reports it `busy` once a call has waited
//! [`crate::status::DEFAULT_BUSY_AFTER`].

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::cell::CellRuntime;

/// When the watch calls the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginWatchSettings {
    /// Interval between `evolve` calls (the host uses its heartbeat
    /// interval, as the original sent a fresh level with each heartbeat).
    pub evolve_every: Duration,
    /// Longest interval between two reads of `state`.
    pub state_every: Duration,
}

impl PluginWatchSettings {
    /// Default interval between `evolve` calls (the default heartbeat).
    pub const DEFAULT_EVOLVE_EVERY: Duration = Duration::from_secs(5);
    /// Default longest interval between two reads of `state`.
    pub const DEFAULT_STATE_EVERY: Duration = Duration::from_secs(1);
}

impl Default for PluginWatchSettings {
    /// `evolve` every 5 s, `state` at least every second.
    fn default() -> Self {
        Self {
            evolve_every: Self::DEFAULT_EVOLVE_EVERY,
            state_every: Self::DEFAULT_STATE_EVERY,
        }
    }
}

/// Runs the watch until `cancel` fires. A call in flight then is left to
/// the sandbox (it completes or hits its bound; its answer is dropped).
pub async fn run_plugin_watch(
    cell: Arc<CellRuntime>,
    settings: PluginWatchSettings,
    cancel: CancellationToken,
) {
    tokio::select! {
        () = watch(&cell, settings) => {}
        () = cancel.cancelled() => {}
    }
}

async fn watch(cell: &CellRuntime, settings: PluginWatchSettings) {
    let evolve_every = settings.evolve_every.max(Duration::from_millis(1));
    let state_every = settings.state_every.max(Duration::from_millis(1));
    let mut last_evolve = Instant::now();
    let mut next_evolve = last_evolve + evolve_every;
    let mut next_state = Instant::now() + state_every;
    loop {
        tokio::select! {
            () = sleep_until(next_evolve) => {
                let elapsed = last_evolve.elapsed();
                last_evolve = Instant::now();
                evolve(cell, elapsed).await;
                // Scheduled from the end of the call: a slow plugin is not
                // asked again at once.
                next_evolve = Instant::now() + evolve_every;
            }
            () = sleep_until(next_state) => {}
            () = cell.plugin.woken() => {}
        }
        // Every wake-up ends with a fresh state.
        let _ = cell.refresh_state().await;
        next_state = Instant::now() + state_every;
    }
}

async fn evolve(cell: &CellRuntime, elapsed: Duration) {
    cell.plugin.probe_started();
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match cell.sandbox.evolve(elapsed_ms).await {
        Ok(level) => {
            cell.record_level(level);
            cell.plugin.record_ok();
        }
        Err(error) => {
            tracing::warn!(cell_id = %cell.cell_id(), %error, "evolution step failed; heartbeats keep the last level");
            cell.plugin.record_failure(&error);
        }
    }
}
