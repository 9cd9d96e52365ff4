//! The cell's life with discovery: register (exponential back-off with full
//! jitter), heartbeat with the last level the plugin reported (the plugin
//! is never called here: see [`crate::plugin_watch`]), register again when
//! discovery forgot the cell, re-claim the id when another registration
//! took it (the rules of [`crate::contest`]), deregister at shutdown.
//! [`LifecycleSettings`] and [`ShutdownSettings`] hold its timings and
//! their defaults; the cell's standing is written to
//! [`CellRuntime::registration_status`] as it changes.
//!
//! The lifecycle never ends the host because of a 409. It ends it only when
//! discovery refuses the cell's first registration itself (400, 413, 422:
//! a field too long, say), which no retry can cure.
//!
//! A heartbeat answered 403 (discovery no longer takes this cell's lease
//! and secret) is handled as a 409: the lease is no longer the cell's.
//!
//! The transitions of a cell's standing (registered, forgotten, displaced,
//! a failed registration) are functions of this module that the many-cell
//! host's batch liveness ([`crate::liveness`]) calls too, so both paths say
//! and decide the same.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cell::CellRuntime;
use crate::contest::{Contest, ContestPolicy, Verdict};
use crate::discovery_client::{DiscoveryClient, DiscoveryError, Lease};
use crate::status::{RegistrationStatus, UNKNOWN_HOLDER};

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
                log_retry(policy, what, attempt, &error, wait);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Logs failed try number `attempt` (1-based) of `what`.
pub(crate) fn log_retry(
    policy: BackoffPolicy,
    what: &str,
    attempt: u32,
    error: &dyn std::fmt::Display,
    wait: Duration,
) {
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
    /// When a displaced id is re-claimed, and when the host gives up.
    pub contest: ContestPolicy,
}

impl LifecycleSettings {
    /// Default interval between heartbeats (the original's 5 s).
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
    /// Default wait before the first registration: none (the original
    /// waited 2-3 s; back-off makes that unnecessary).
    pub const DEFAULT_STARTUP_DELAY: Duration = Duration::ZERO;
}

impl Default for LifecycleSettings {
    /// Heartbeats every 5 s, the default back-off and contest rules, no
    /// start-up delay.
    fn default() -> Self {
        Self {
            heartbeat: Self::DEFAULT_HEARTBEAT,
            backoff: BackoffPolicy::default(),
            startup_delay: Self::DEFAULT_STARTUP_DELAY,
            contest: ContestPolicy::default(),
        }
    }
}

/// Bounds on each step of a cell's shutdown, in the order the steps run:
/// deregister (peers stop sending), drain the requests in flight, call the
/// plugin's shutdown hook. With the defaults a stop takes at most
/// 2 + 3 + 1 = 6 s; a second SIGTERM or Ctrl-C ends the process at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// Bound on deregistration.
    pub deregister: Duration,
    /// Bound on draining open HTTP requests.
    pub drain: Duration,
    /// Bound on the plugin's shutdown hook.
    pub plugin_hook: Duration,
}

impl ShutdownSettings {
    /// Default bound on deregistration (the original's 2 s).
    pub const DEFAULT_DEREGISTER: Duration = Duration::from_secs(2);
    /// Default bound on draining open HTTP requests.
    pub const DEFAULT_DRAIN: Duration = Duration::from_secs(3);
    /// Default bound on the plugin's shutdown hook.
    pub const DEFAULT_PLUGIN_HOOK: Duration = Duration::from_secs(1);
}

impl Default for ShutdownSettings {
    /// Deregister 2 s, drain 3 s, hook 1 s.
    fn default() -> Self {
        Self {
            deregister: Self::DEFAULT_DEREGISTER,
            drain: Self::DEFAULT_DRAIN,
            plugin_hook: Self::DEFAULT_PLUGIN_HOOK,
        }
    }
}

/// Why the lifecycle ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleEnd {
    /// Cancelled by shutdown.
    Cancelled,
    /// Discovery refused the cell's first registration (400, 413 or 422):
    /// the registration itself is wrong; discovery's reason.
    Refused(String),
}

/// Registers, then heartbeats until cancelled (or until discovery refuses
/// the first registration). Refreshes the cell's mesh view after each
/// registration and heartbeat.
pub async fn run_lifecycle(
    cell: Arc<CellRuntime>,
    settings: LifecycleSettings,
    cancel: CancellationToken,
) -> LifecycleEnd {
    run(cell, settings, MeshRefresh::PerCell, cancel).await
}

/// [`run_lifecycle`] for one cell of a host whose cells share one mesh view,
/// which the host refreshes once per interval for all of them: this cell's
/// lifecycle leaves it alone.
pub(crate) async fn run_lifecycle_sharing_view(
    cell: Arc<CellRuntime>,
    settings: LifecycleSettings,
    cancel: CancellationToken,
) -> LifecycleEnd {
    run(cell, settings, MeshRefresh::Shared, cancel).await
}

/// Who refreshes the mesh view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MeshRefresh {
    /// The lifecycle, after each registration and heartbeat.
    PerCell,
    /// Someone else (the host, for all its cells).
    Shared,
}

async fn run(
    cell: Arc<CellRuntime>,
    settings: LifecycleSettings,
    refresh: MeshRefresh,
    cancel: CancellationToken,
) -> LifecycleEnd {
    tokio::select! {
        end = lifecycle(&cell, settings, refresh) => end,
        () = cancel.cancelled() => LifecycleEnd::Cancelled,
    }
}

/// How a heartbeat loop ended.
enum HeartbeatEnd {
    /// Discovery forgot the cell (404): register again now.
    Forgotten,
    /// Another registration took the id: what the contest rules say.
    Displaced(Displaced),
}

async fn lifecycle(
    cell: &CellRuntime,
    settings: LifecycleSettings,
    refresh: MeshRefresh,
) -> LifecycleEnd {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    if !settings.startup_delay.is_zero() {
        tokio::time::sleep(settings.startup_delay).await;
    }
    let mut contest = Contest::new(settings.contest);
    let mut first = true;
    loop {
        let lease = match register(cell, settings.backoff, &mut rng, first, &contest).await {
            Ok(lease) => lease,
            Err(detail) => return LifecycleEnd::Refused(detail),
        };
        first = false;
        on_registered(cell, &mut contest, lease);
        if refresh == MeshRefresh::PerCell {
            refresh_mesh(cell).await;
        }
        match heartbeats(cell, settings, refresh, &mut rng, &mut contest).await {
            HeartbeatEnd::Forgotten | HeartbeatEnd::Displaced(Displaced::RegisterNow) => {}
            HeartbeatEnd::Displaced(Displaced::Reclaim(not_before)) => {
                tokio::time::sleep_until(not_before).await
            }
            HeartbeatEnd::Displaced(Displaced::GiveUp) => {
                // Stay up, unregistered; keep the mesh view fresh for sends.
                loop {
                    tokio::time::sleep(settings.heartbeat).await;
                    if refresh == MeshRefresh::PerCell {
                        refresh_mesh(cell).await;
                    }
                }
            }
        }
    }
}

/// Heartbeats with the last level the plugin reported, until discovery
/// forgets the cell or another registration takes its id.
async fn heartbeats(
    cell: &CellRuntime,
    settings: LifecycleSettings,
    refresh: MeshRefresh,
    rng: &mut impl Rng,
    contest: &mut Contest,
) -> HeartbeatEnd {
    // Random initial phase, so replicas started together spread out.
    let phase_ms = rng.random_range(0..=settings.heartbeat.as_millis() as u64);
    let mut next = Instant::now() + Duration::from_millis(phase_ms);
    loop {
        tokio::time::sleep_until(next).await;
        next = next_beat(next, settings.heartbeat, Instant::now());
        let lease = cell.lease().unwrap_or_default();
        let beat = cell
            .mesh
            .discovery()
            .heartbeat(cell.cell_id(), cell.level(), &lease)
            .await;
        match beat {
            Ok(peers_count) => {
                if let Some(count) = peers_count {
                    cell.set_peers_count(count);
                }
                if refresh == MeshRefresh::PerCell {
                    refresh_mesh(cell).await;
                }
            }
            Err(DiscoveryError::NotRegistered(detail)) => {
                on_forgotten(cell, &detail);
                return HeartbeatEnd::Forgotten;
            }
            Err(DiscoveryError::Conflict(detail) | DiscoveryError::Forbidden(detail)) => {
                let holder = holder(cell.mesh.discovery(), cell.cell_id()).await;
                return HeartbeatEnd::Displaced(on_displaced(cell, contest, holder, &detail));
            }
            Err(error) => {
                tracing::warn!(cell_id = %cell.cell_id(), %error, "heartbeat failed");
            }
        }
    }
}

/// The heartbeat after the one due at `due`, at `interval`; when the host
/// fell behind (`now` past it), one interval from `now` rather than a burst.
pub(crate) fn next_beat(due: Instant, interval: Duration, now: Instant) -> Instant {
    let next = due + interval;
    if next < now { now + interval } else { next }
}

/// What a displaced cell does next (the contest rules' verdict, or at once
/// when the id was re-registered at the cell's own address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Displaced {
    /// Register again at once.
    RegisterNow,
    /// Re-claim the id, not before this.
    Reclaim(Instant),
    /// Too many displacements in a row: stay unregistered.
    GiveUp,
}

/// Discovery accepted `lease`: the contest counts the claim, the status
/// says registered (and re-claimed, after displacements), the lease is kept
/// for the next calls.
pub(crate) fn on_registered(cell: &CellRuntime, contest: &mut Contest, lease: Lease) {
    contest.claimed(Instant::now(), lease.ttl);
    cell.update_registration(|s| s.registered(lease.incarnation));
    cell.set_lease(Some(lease));
}

/// Discovery forgot the cell (a heartbeat's 404): register again.
pub(crate) fn on_forgotten(cell: &CellRuntime, detail: &str) {
    tracing::info!(cell_id = %cell.cell_id(), %detail, "discovery no longer knows this cell; registering again");
    cell.set_lease(None);
    cell.update_registration(RegistrationStatus::forgotten);
}

/// Another registration took the id (a heartbeat's 409, or 403: discovery
/// no longer takes this cell's lease), held by `holder` when discovery
/// says: counts it, reports it and decides whether to re-claim.
pub(crate) fn on_displaced(
    cell: &CellRuntime,
    contest: &mut Contest,
    holder: Option<String>,
    detail: &str,
) -> Displaced {
    cell.set_lease(None);
    let ours = address(&cell.identity.advertise_host, cell.identity.advertise_port);
    if holder.as_deref() == Some(ours.as_str()) {
        // Re-registered at our own address (an earlier answer of ours lost
        // on the way, say): peers still reach us; take it back at once.
        tracing::info!(cell_id = %cell.cell_id(), "the id was registered again at this cell's own address; registering again");
        return Displaced::RegisterNow;
    }
    let verdict = contest.displaced(Instant::now());
    cell.update_registration(|s| s.displaced(verdict, holder.clone(), contest));
    let by = holder.unwrap_or_else(|| UNKNOWN_HOLDER.to_owned());
    let in_a_row = contest.in_a_row();
    match verdict {
        Verdict::Reclaim { not_before } => {
            tracing::warn!(
                cell_id = %cell.cell_id(),
                by = %by,
                displacements = in_a_row,
                %detail,
                wait_ms = not_before.saturating_duration_since(Instant::now()).as_millis() as u64,
                "another registration took this cell's id; re-claiming it"
            );
            Displaced::Reclaim(not_before)
        }
        Verdict::GiveUp => {
            tracing::error!(
                cell_id = %cell.cell_id(),
                by = %by,
                displacements = in_a_row,
                "id contested by {by}: displaced {in_a_row} times in a row; staying up unregistered \
                 until restarted"
            );
            Displaced::GiveUp
        }
    }
}

/// A registration failed with `error`, when held by `holder` (a 409: the
/// id is held under another secret) or otherwise (the status says why,
/// unless the cell is contested).
pub(crate) fn on_registration_failed(
    cell: &CellRuntime,
    contest: &Contest,
    error: &DiscoveryError,
    holder: Option<String>,
) {
    match error {
        DiscoveryError::Conflict(_) => {
            cell.update_registration(|s| s.held(holder, contest.in_a_row()));
        }
        error => cell.update_registration(|s| s.registering_failed(error)),
    }
}

/// `HOST:PORT`, the host bracketed when it is an IPv6 address.
pub(crate) fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `HOST:PORT` of the registration now holding `cell_id`, if discovery
/// says (`GET /peers/{id}`, else the listing).
pub(crate) async fn holder(discovery: &DiscoveryClient, cell_id: &str) -> Option<String> {
    let peer = match discovery.peer(cell_id).await {
        Ok(Some(peer)) => Some(peer),
        Ok(None) | Err(_) => discovery
            .peers()
            .await
            .ok()
            .and_then(|peers| peers.into_iter().find(|p| p.cell_id == cell_id)),
    }?;
    Some(address(&peer.ip, peer.port))
}

/// Registers with back-off until discovery accepts, presenting the
/// previous lease's secret (if any). On a 409 (the id is held under another
/// secret) it reports the holder and keeps trying. On a refusal of the
/// request itself it gives up when `first` (the host then ends at start),
/// and otherwise keeps trying at the capped back-off.
async fn register(
    cell: &CellRuntime,
    policy: BackoffPolicy,
    rng: &mut impl Rng,
    first: bool,
    contest: &Contest,
) -> Result<Lease, String> {
    let discovery = cell.mesh.discovery();
    let previous = cell.lease();
    let mut attempt: u32 = 0;
    loop {
        let registration = cell.registration();
        let error = match discovery
            .register_presenting(&registration, previous.as_ref())
            .await
        {
            Ok(lease) => {
                tracing::info!(
                    cell_id = %cell.cell_id(),
                    discovery = discovery.base_url(),
                    incarnation = ?lease.incarnation,
                    "registered with discovery"
                );
                return Ok(lease);
            }
            Err(error) => error,
        };
        let holder = match &error {
            DiscoveryError::Refused { detail, .. } if first => {
                tracing::error!(cell_id = %cell.cell_id(), %detail, "discovery refuses this cell's registration");
                return Err(detail.clone());
            }
            DiscoveryError::Refused { .. } => {
                tracing::error!(cell_id = %cell.cell_id(), %error, "discovery refuses this cell's registration");
                attempt = attempt.max(REFUSED_ATTEMPT);
                None
            }
            DiscoveryError::Conflict(_) => holder(discovery, cell.cell_id()).await,
            _ => None,
        };
        on_registration_failed(cell, contest, &error, holder);
        let wait = policy.delay(attempt, rng);
        attempt = attempt.saturating_add(1);
        log_retry(policy, "registration with discovery", attempt, &error, wait);
        tokio::time::sleep(wait).await;
    }
}

/// The back-off attempt a refused re-registration jumps to: the capped
/// ceiling (no retry can cure it soon; an operator may).
pub(crate) const REFUSED_ATTEMPT: u32 = 31;

/// Refreshes the mesh view; failures are logged (the old view stays).
pub(crate) async fn refresh_mesh(cell: &CellRuntime) {
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
    fn a_late_heartbeat_schedule_restarts_from_now_rather_than_bursting() {
        let t0 = Instant::now();
        let interval = Duration::from_secs(5);
        assert_eq!(
            next_beat(t0, interval, t0 + Duration::from_secs(1)),
            t0 + interval
        );
        let late = t0 + Duration::from_secs(12);
        assert_eq!(next_beat(t0, interval, late), late + interval);
    }

    #[test]
    fn addresses_bracket_ipv6_hosts() {
        assert_eq!(address("10.0.0.9", 8000), "10.0.0.9:8000");
        assert_eq!(address("::1", 8000), "[::1]:8000");
        assert_eq!(address("cell.example", 80), "cell.example:80");
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
