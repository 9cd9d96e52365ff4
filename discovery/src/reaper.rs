//! The expiry task: sleeps until the earliest deadline (or grace/hold end), evicts in batches
//! and logs holds. Woken early when a registration creates an earlier deadline.
//!
//! Each evicted peer is logged at debug; each wake that evicted anything logs one info summary,
//! so a mass expiry of 10,000 peers is one info line, not 10,000.

use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::registry_handle::Registry;

/// Peers evicted per lock acquisition, so heartbeats never wait long behind a mass expiry.
pub const REAP_BATCH: usize = 256;

/// Starts the expiry task over `registry`; it ends when `shutdown` is cancelled.
pub fn spawn(registry: Registry, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(run(registry, shutdown))
}

async fn run(registry: Registry, shutdown: CancellationToken) {
    let hold_ms = registry.lock().settings().mass_eviction_hold.as_millis() as u64;
    let mut holding = false;
    // Peers evicted since this wake began (a large expiry drains over several batches).
    let mut evicted = 0usize;
    let mut wake_started = Instant::now();
    loop {
        let now = Instant::now();
        let (outcome, next) = registry.reap(now, REAP_BATCH);
        for id in &outcome.evicted {
            debug!(cell_id = %id, reason = "expired", "peer evicted");
        }
        evicted += outcome.evicted.len();
        if outcome.hold_started {
            holding = true;
            warn!(
                held = outcome.held,
                hold_ms,
                "mass-eviction guard: holding evictions (too many failure domains expiring at once)"
            );
        }
        if outcome.hold_released && holding {
            holding = false;
            if outcome.hold_recovered {
                warn!(
                    "mass-eviction hold ended early: the mesh recovered; peers still silent get one more TTL"
                );
            } else {
                warn!("mass-eviction hold ended; evicting peers still silent");
            }
        }
        if outcome.more {
            tokio::task::yield_now().await;
            continue;
        }
        if evicted > 0 {
            info!(
                evicted,
                reason = "expired",
                elapsed_ms = wake_started.elapsed().as_millis() as u64,
                "peers evicted"
            );
            evicted = 0;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = registry.reaper_wake() => {}
            () = sleep_opt(next) => {}
        }
        wake_started = Instant::now();
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
