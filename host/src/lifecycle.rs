//! The cell's life with discovery: register (exponential back-off with full
//! jitter), heartbeat with the level from `evolve`, register again when
//! discovery forgot the cell, stop when a newer incarnation took the id,
//! deregister at shutdown. [`LifecycleSettings`] and [`ShutdownSettings`]
//! hold its timings and their defaults.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cell::CellRuntime;
use crate::discovery_client::{DiscoveryError, Lease};

/// Registration retry schedule: try `attempts` times with ceilings
/// `base`, `2*base`, `4*base`... capped at `cap`, each wait drawn uniformly
/// in `[0, ceiling]` ("full jitter"); then keep trying at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Ceiling of the first wait.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
    /// Tries before the host says it keeps trying in the background.
    pub attempts: u32,
}

impl BackoffPolicy {
    /// Default ceiling of the first wait.
    pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
    /// Default largest ceiling.
    pub const DEFAULT_CAP: Duration = Duration::from_secs(30);
    /// Default tries before the host says it keeps trying in the background.
    pub const DEFAULT_ATTEMPTS: u32 = 10;

    /// The ceiling of the wait after failed try number `attempt` (0-based):
    /// `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait after failed try number `attempt`: uniform in `[0, ceiling]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rng.random_range(0..=ceiling))
    }
}

/// Runs `op` until it succeeds, waiting [`BackoffPolicy::delay`] between
/// tries. After `policy.attempts` failures it logs once that it keeps
/// trying in the background, and goes on at the capped ceiling. Stops only
/// on success or when the returned future is dropped.
pub async fn retry_with_backoff<T, E, F, Fut>(
    policy: BackoffPolicy,
    rng: &mut impl Rng,
    what: &str,
    mut op: F,
) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt: u32 = 0;
    loop {
        match op().await {
            Ok(value) => return value,
            Err(error) => {
                let wait = policy.delay(attempt, rng);
                attempt = attempt.saturating_add(1);
                if attempt == policy.attempts {
                    tracing::warn!(
                        attempts = attempt,
                        %error,
                        "{what} failed {attempt} times; still trying in the background every {} s at most",
                        policy.cap.as_secs_f64()
                    );
                } else {
                    tracing::info!(attempt, %error, wait_ms = wait.as_millis() as u64, "{what} failed; retrying");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl Default for BackoffPolicy {
    /// Ceilings 1 s, 2 s, 4 s... capped at 30 s; 10 tries before the log.
    fn default() -> Self {
        Self {
            base: Self::DEFAULT_BASE,
            cap: Self::DEFAULT_CAP,
            attempts: Self::DEFAULT_ATTEMPTS,
        }
    }
}

/// Settings of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleSettings {
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Registration back-off.
    pub backoff: BackoffPolicy,
    /// Wait before the first registration.
    pub startup_delay: Duration,
}

impl LifecycleSettings {
    /// Default interval between heartbeats (the original's 5 s).
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
    /// Default wait before the first registration: none (the original
    /// waited 2-3 s; back-off makes that unnecessary).
    pub const DEFAULT_STARTUP_DELAY: Duration = Duration::ZERO;
}

impl Default for LifecycleSettings {
    /// Heartbeats every 5 s, the default back-off, no start-up delay.
    fn default() -> Self {
        Self {
            heartbeat: Self::DEFAULT_HEARTBEAT,
            backoff: BackoffPolicy::default(),
            startup_delay: Self::DEFAULT_STARTUP_DELAY,
        }
    }
}

/// Bounds on each step of a cell's shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// Bound on draining open HTTP requests.
    pub drain: Duration,
    /// Bound on the plugin's shutdown hook.
    pub plugin_hook: Duration,
    /// Bound on deregistration.
    pub deregister: Duration,
}

impl ShutdownSettings {
    /// Default bound on draining open HTTP requests.
    pub const DEFAULT_DRAIN: Duration = Duration::from_secs(3);
    /// Default bound on the plugin's shutdown hook.
    pub const DEFAULT_PLUGIN_HOOK: Duration = Duration::from_secs(1);
    /// Default bound on deregistration.
    pub const DEFAULT_DEREGISTER: Duration = Duration::from_secs(2);
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain: Self::DEFAULT_DRAIN,
            plugin_hook: Self::DEFAULT_PLUGIN_HOOK,
            deregister: Self::DEFAULT_DEREGISTER,
        }
    }
}

/// Why the lifecycle ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleEnd {
    /// Cancelled by shutdown.
    Cancelled,
    /// Discovery answered 409: a newer incarnation of this id exists.
    Superseded(String),
}

/// Registers, then heartbeats until cancelled or superseded.
pub async fn run_lifecycle(
    cell: Arc<CellRuntime>,
    settings: LifecycleSettings,
    cancel: CancellationToken,
) -> LifecycleEnd {
    tokio::select! {
        end = lifecycle(&cell, settings) => end,
        () = cancel.cancelled() => LifecycleEnd::Cancelled,
    }
}

async fn lifecycle(cell: &CellRuntime, settings: LifecycleSettings) -> LifecycleEnd {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    if !settings.startup_delay.is_zero() {
        tokio::time::sleep(settings.startup_delay).await;
    }
    let mut last_evolve = Instant::now();
    loop {
        register(cell, settings.backoff, &mut rng).await;
        refresh_mesh(cell).await;
        // Random initial phase, so replicas started together spread out.
        let phase_ms = rng.random_range(0..=settings.heartbeat.as_millis() as u64);
        let mut next = Instant::now() + Duration::from_millis(phase_ms);
        loop {
            tokio::time::sleep_until(next).await;
            next += settings.heartbeat;
            if next < Instant::now() {
                next = Instant::now() + settings.heartbeat;
            }
            let elapsed = last_evolve.elapsed();
            last_evolve = Instant::now();
            match cell.sandbox.evolve(elapsed.as_millis() as u64).await {
                Ok(level) => cell.set_level(level),
                Err(error) => {
                    tracing::warn!(cell_id = %cell.cell_id(), %error, "evolution step failed; sending the last level")
                }
            }
            let lease = cell.lease().unwrap_or_default();
            match cell
                .mesh
                .discovery()
                .heartbeat(cell.cell_id(), cell.level(), &lease)
                .await
            {
                Ok(peers_count) => {
                    if let Some(count) = peers_count {
                        cell.set_peers_count(count);
                    }
                    refresh_mesh(cell).await;
                }
                Err(DiscoveryError::NotRegistered(detail)) => {
                    tracing::info!(cell_id = %cell.cell_id(), %detail, "discovery no longer knows this cell; registering again");
                    cell.set_lease(None);
                    break;
                }
                Err(DiscoveryError::Superseded(detail)) => {
                    tracing::error!(cell_id = %cell.cell_id(), %detail, "a newer incarnation of this cell id registered with discovery; this host stops");
                    cell.set_lease(None);
                    return LifecycleEnd::Superseded(detail);
                }
                Err(error) => {
                    tracing::warn!(cell_id = %cell.cell_id(), %error, "heartbeat failed");
                }
            }
        }
    }
}

/// Registers with back-off until discovery accepts, and records the lease.
async fn register(cell: &CellRuntime, policy: BackoffPolicy, rng: &mut impl Rng) {
    let discovery = cell.mesh.discovery();
    let lease: Lease = retry_with_backoff(policy, rng, "registration with discovery", || async {
        discovery.register(&cell.registration()).await
    })
    .await;
    tracing::info!(
        cell_id = %cell.cell_id(),
        discovery = discovery.base_url(),
        incarnation = ?lease.incarnation,
        "registered with discovery"
    );
    cell.set_lease(Some(lease));
}

/// Refreshes the mesh view; failures are logged (the old view stays).
async fn refresh_mesh(cell: &CellRuntime) {
    match cell.mesh.refresh().await {
        Ok(count) => tracing::trace!(peers = count, "mesh view refreshed"),
        Err(error) => tracing::debug!(%error, "cannot refresh the mesh view"),
    }
}

/// Deregisters within `timeout`, if registered. Logs the outcome.
pub async fn deregister(cell: &CellRuntime, timeout: Duration) {
    let Some(lease) = cell.lease() else {
        tracing::info!(cell_id = %cell.cell_id(), "not registered; nothing to deregister");
        return;
    };
    let call = cell.mesh.discovery().deregister(cell.cell_id(), &lease);
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(())) => {
            cell.set_lease(None);
            tracing::info!(cell_id = %cell.cell_id(), "deregistered from discovery");
        }
        Ok(Err(error)) => {
            tracing::warn!(cell_id = %cell.cell_id(), %error, "deregistration failed")
        }
        Err(_) => tracing::warn!(
            cell_id = %cell.cell_id(),
            timeout_ms = timeout.as_millis() as u64,
            "deregistration timed out"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const POLICY: BackoffPolicy = BackoffPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
        attempts: 10,
    };

    #[test]
    fn ceilings_double_from_one_second_and_cap_at_thirty() {
        let ceilings: Vec<u64> = (0..12).map(|a| POLICY.ceiling(a).as_secs()).collect();
        assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30]);
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn delays_stay_within_their_ceiling_and_vary() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut distinct = std::collections::HashSet::new();
        for attempt in 0..10 {
            for _ in 0..50 {
                let d = POLICY.delay(attempt, &mut rng);
                assert!(d <= POLICY.ceiling(attempt));
                distinct.insert(d);
            }
        }
        assert!(distinct.len() > 100, "full jitter should spread the waits");
    }
}
