//! [`Registry`]: the shared handle on the peer registry (like mini-redis's `Db`).
//!
//! It owns the [`PeerRegistry`] state machine behind a short-held mutex and the reaper's
//! wake-up. Each method locks, calls the state machine, unlocks, and only then wakes the reaper
//! when the call gave it an earlier deadline to sleep until: callers never remember that rule.
//! No method is `async` while it holds the lock, so the lock is never held across an `.await`.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::registry::{
    Authority, Claim, HeartbeatAck, Membership, PeerRecord, PeerRegistry, PeersView, ReapOutcome,
    Registered, RegistryError, RegistryStats, Resume, SECRET_LEN, WatchEvent,
};
use crate::validate::CellInfo;

/// The shared registry: the state machine behind a mutex, plus the reaper's wake-up. Cheap to
/// clone (one reference count).
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<PeerRegistry>,
    /// Wakes the reaper to recompute its next deadline.
    reaper_wake: Notify,
    /// The registry's monotonic origin (fixed at creation, so read without the lock).
    epoch: Instant,
}

/// Cells a batch call handles per lock acquisition: a batch of 1,000 registrations takes the
/// lock four times for about a millisecond each, so single heartbeats never wait long behind
/// it (the reaper evicts in batches of the same size for the same reason).
pub const BATCH_LOCK_CHUNK: usize = 256;

/// One cell of [`Registry::register_batch`].
#[derive(Debug, Clone, Copy)]
pub struct CellRegistration<'a> {
    /// What it registers.
    pub info: &'a CellInfo,
    /// The new registration's secret.
    pub secret: [u8; SECRET_LEN],
    /// Who asks (as for the single call).
    pub claim: Claim<'a>,
}

/// One cell of [`Registry::heartbeat_batch`].
#[derive(Debug, Clone, Copy)]
pub struct CellHeartbeat<'a> {
    /// Cell id.
    pub id: &'a str,
    /// Its level now.
    pub level: f64,
    /// The incarnation it renews.
    pub incarnation: Option<u64>,
    /// Who asks.
    pub authority: Authority<'a>,
}

/// One cell of [`Registry::deregister_batch`].
#[derive(Debug, Clone, Copy)]
pub struct CellDeparture<'a> {
    /// Cell id.
    pub id: &'a str,
    /// The incarnation it ends.
    pub incarnation: Option<u64>,
    /// Who asks.
    pub authority: Authority<'a>,
}

/// What `/health` and `/readyz` report about the registry, read under one lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryStatus {
    /// Registered peers.
    pub peers: usize,
    /// Current revision.
    pub revision: u64,
    /// Whether the start-up grace window is still open.
    pub in_grace: bool,
}

/// What `/metrics` reports about the registry, read under one lock.
#[derive(Debug, Clone)]
pub struct RegistryGauges {
    /// Registered peers.
    pub peers: usize,
    /// Current revision.
    pub revision: u64,
    /// Whether the start-up grace window is still open.
    pub in_grace: bool,
    /// Counters.
    pub stats: RegistryStats,
    /// Peers past their deadline whose eviction is held.
    pub held: usize,
    /// Whether the mass-eviction guard holds evictions.
    pub holding: bool,
    /// Distinct failure domains among registered peers.
    pub failure_domains: usize,
}

impl Registry {
    /// A handle owning `registry`.
    pub fn new(registry: PeerRegistry) -> Self {
        let epoch = registry.epoch();
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(registry),
                reaper_wake: Notify::new(),
                epoch,
            }),
        }
    }

    /// Locks the state machine, for tests and tools. Never hold the guard across `.await`;
    /// changes made through it do not wake the reaper (the methods below do).
    pub fn lock(&self) -> MutexGuard<'_, PeerRegistry> {
        // A panic in one request must not fail every later one: a poisoned lock is used as is.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers (or re-registers) a cell for `claim`; see [`PeerRegistry::register_as`].
    /// Wakes the reaper when the new lease expires before every other.
    pub fn register(
        &self,
        info: &CellInfo,
        secret: [u8; SECRET_LEN],
        claim: Claim<'_>,
        now: Instant,
        wall_micros: i64,
    ) -> Result<Registered, RegistryError> {
        let registered = self
            .lock()
            .register_as(info, secret, claim, now, wall_micros)?;
        if registered.wake_reaper {
            self.shared.reaper_wake.notify_one();
        }
        Ok(registered)
    }

    /// Records a heartbeat; see [`PeerRegistry::heartbeat`]. A later deadline never needs the
    /// reaper woken: it finds nothing to evict at the earlier one and looks again.
    pub fn heartbeat(
        &self,
        id: &str,
        level: f64,
        incarnation: Option<u64>,
        authority: Authority<'_>,
        now: Instant,
        wall_micros: i64,
    ) -> Result<HeartbeatAck, RegistryError> {
        self.lock()
            .heartbeat(id, level, incarnation, authority, now, wall_micros)
    }

    /// Deregisters a cell; see [`PeerRegistry::deregister`]. Removing a deadline never needs
    /// the reaper woken.
    pub fn deregister(
        &self,
        id: &str,
        incarnation: Option<u64>,
        authority: Authority<'_>,
        now: Instant,
    ) -> Result<(), RegistryError> {
        self.lock().deregister(id, incarnation, authority, now)
    }

    /// Registers the cells of one host's batch, all in failure domain `host`, each as
    /// [`Registry::register`] would (same rules, events and counters), taking the lock once per
    /// [`BATCH_LOCK_CHUNK`] cells. Results are in the order of `cells`. Wakes the reaper once
    /// when a new lease expires before every other.
    pub fn register_batch(
        &self,
        host: &str,
        cells: &[CellRegistration<'_>],
        now: Instant,
        wall_micros: i64,
    ) -> Vec<Result<Registered, RegistryError>> {
        let mut results = Vec::with_capacity(cells.len());
        let mut wake = false;
        for chunk in cells.chunks(BATCH_LOCK_CHUNK) {
            let mut reg = self.lock();
            for cell in chunk {
                let r = reg.register_in(
                    cell.info,
                    cell.secret,
                    cell.claim,
                    Some(host),
                    now,
                    wall_micros,
                );
                wake |= r.as_ref().is_ok_and(|r| r.wake_reaper);
                results.push(r);
            }
        }
        if wake {
            self.shared.reaper_wake.notify_one();
        }
        results
    }

    /// Renews the cells of one host's batch, each as [`Registry::heartbeat`] would, taking
    /// the lock once per [`BATCH_LOCK_CHUNK`] cells; every renewed cell gets the same deadline
    /// (`now` + TTL), so a host's cells expire together. Answers the results in the order of
    /// `cells` and the number of peers registered after the last chunk.
    pub fn heartbeat_batch(
        &self,
        cells: &[CellHeartbeat<'_>],
        now: Instant,
        wall_micros: i64,
    ) -> (Vec<Result<HeartbeatAck, RegistryError>>, usize) {
        let mut results = Vec::with_capacity(cells.len());
        let mut peers = None;
        for chunk in cells.chunks(BATCH_LOCK_CHUNK) {
            let mut reg = self.lock();
            for c in chunk {
                results.push(reg.heartbeat(
                    c.id,
                    c.level,
                    c.incarnation,
                    c.authority,
                    now,
                    wall_micros,
                ));
            }
            peers = Some(reg.len());
        }
        let peers = peers.unwrap_or_else(|| self.lock().len());
        (results, peers)
    }

    /// Deregisters the cells of one host's batch, each as [`Registry::deregister`] would,
    /// taking the lock once per [`BATCH_LOCK_CHUNK`] cells; results in the order of `cells`.
    pub fn deregister_batch(
        &self,
        cells: &[CellDeparture<'_>],
        now: Instant,
    ) -> Vec<Result<(), RegistryError>> {
        let mut results = Vec::with_capacity(cells.len());
        for chunk in cells.chunks(BATCH_LOCK_CHUNK) {
            let mut reg = self.lock();
            for c in chunk {
                results.push(reg.deregister(c.id, c.incarnation, c.authority, now));
            }
        }
        results
    }

    /// One peer's record.
    pub fn peer(&self, id: &str) -> Option<Arc<PeerRecord>> {
        self.lock().peer(id)
    }

    /// The registry's monotonic origin (for [`crate::registry::render_peer`]).
    pub fn epoch(&self) -> Instant {
        self.shared.epoch
    }

    /// The view at the current revision; when it must be built, the sort happens outside the
    /// lock so heartbeats do not wait behind it.
    pub fn peers_view(&self) -> Arc<PeersView> {
        let members = {
            let reg = self.lock();
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
        self.lock().install_view(view.clone());
        view
    }

    /// Subscribes to changes after revision `since`; see [`PeerRegistry::subscribe`].
    pub fn subscribe(&self, since: Option<u64>) -> (broadcast::Receiver<Arc<WatchEvent>>, Resume) {
        self.lock().subscribe(since)
    }

    /// Peers, revision and grace window at `now`.
    pub fn status(&self, now: Instant) -> RegistryStatus {
        let reg = self.lock();
        RegistryStatus {
            peers: reg.len(),
            revision: reg.revision(),
            in_grace: reg.in_grace(now),
        }
    }

    /// Everything `/metrics` shows about the registry at `now`.
    pub fn gauges(&self, now: Instant) -> RegistryGauges {
        let reg = self.lock();
        RegistryGauges {
            peers: reg.len(),
            revision: reg.revision(),
            in_grace: reg.in_grace(now),
            stats: reg.stats().clone(),
            held: reg.held(now),
            holding: reg.holding(now),
            failure_domains: reg.failure_domains(),
        }
    }

    /// One reaper pass: evicts at most `batch` expired peers at `now`, and answers when the
    /// reaper must look again (`None`: not before a registration wakes it).
    pub fn reap(&self, now: Instant, batch: usize) -> (ReapOutcome, Option<Instant>) {
        let mut reg = self.lock();
        let outcome = reg.reap(now, batch);
        (outcome, reg.next_wakeup(now))
    }

    /// Resolves when a change asks the reaper to recompute its next wake-up (a wake-up sent
    /// while nobody waits is kept for the next wait).
    pub async fn reaper_wake(&self) {
        self.shared.reaper_wake.notified().await;
    }
}
