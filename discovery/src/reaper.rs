//! The expiry task: sleeps until the earliest deadline (or grace/hold end), evicts in batches
//! and logs holds. Woken early when a registration creates an earlier deadline.

use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use crate::state::AppState;

/// Peers evicted per lock acquisition, so heartbeats never wait long behind a mass expiry.
pub const REAP_BATCH: usize = 256;

/// Runs until the state's shutdown token is cancelled.
pub async fn run(state: AppState) {
    let shutdown = state.shutdown_token();
    let mut holding = false;
    loop {
        let now = Instant::now();
        let (outcome, next) = {
            let mut reg = state.registry();
            let outcome = reg.reap(now, REAP_BATCH);
            (outcome, reg.next_wakeup(now))
        };
        for id in &outcome.evicted {
            info!(cell_id = %id, reason = "expired", "peer evicted");
        }
        if outcome.hold_started {
            holding = true;
            warn!(
                held = outcome.held,
                hold_ms = state.config().mass_eviction_hold.as_millis() as u64,
                "mass-eviction guard: holding evictions (too many peers expiring at once)"
            );
        }
        if outcome.hold_released && holding {
            holding = false;
            warn!(
                evicted = outcome.evicted.len(),
                "mass-eviction hold ended; evicting peers still silent"
            );
        }
        if outcome.more {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = state.inner.reaper_wake.notified() => {}
            () = sleep_opt(next) => {}
        }
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}
