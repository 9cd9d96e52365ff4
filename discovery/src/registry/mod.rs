//! The peer registry: a synchronous state machine driven with explicit monotonic time.
//!
//! * peers live in a `HashMap` keyed by id; deadlines in an ordered index
//!   (`BTreeMap<(deadline, incarnation), id>`) so expiry touches only expired peers;
//! * every membership or level change bumps the revision and records a [`WatchEvent`] in a
//!   bounded history ring and on a broadcast channel;
//! * `/peers` answers come from a [`PeersView`] built once per revision; the parts that change
//!   with every heartbeat (`last_seen`, age) live in atomics shared with the view, so readers
//!   render without holding the registry lock.
//!
//! Callers hold the registry in a mutex for the few microseconds each call takes.
//!
//! # Modules
//!
//! - [`peer`]: [`PeerRecord`] (pre-serialised JSON, heartbeat atomics) and interned shapes;
//! - [`lease`]: register, heartbeat, deregister, incarnations, authority and the takeover rule;
//! - [`expiry`]: the deadline index walk ([`PeerRegistry::reap`]);
//! - [`guard`]: the start-up grace window and the mass-eviction guard (holds, early ends and
//!   reprieves);
//! - [`domains`]: failure domains (a batch-registered host and its cells count as one),
//!   which the guard counts instead of peers;
//! - [`events`]: revisions, [`WatchEvent`]s (including `takeover`), history and subscriptions;
//! - [`snapshot`]: [`PeerFilter`], [`PeersView`] and rendering with `age_ms` at answer time.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

pub mod domains;
pub mod events;
pub mod expiry;
pub mod guard;
pub mod lease;
pub mod peer;
pub mod snapshot;

pub use domains::FailureDomains;
pub use events::{EventKind, LeaveReason, Resume, WatchEvent};
pub use expiry::ReapOutcome;
pub use lease::{Authority, Claim, HeartbeatAck, Registered, RegistryError, Takeover};
pub use peer::{PeerRecord, SECRET_LEN, Shape, Storage};
pub use snapshot::{
    LIVE_MAX_LEN, Membership, PeerCursor, PeerFilter, PeersView, push_u64, render_peer,
};

/// Counters kept under the registry lock, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct RegistryStats {
    /// Registrations of new ids.
    pub registrations: u64,
    /// Registrations that replaced a live incarnation.
    pub reregistrations: u64,
    /// Accepted heartbeats.
    pub heartbeats: u64,
    /// Peers removed by deregistration.
    pub evicted_deregistered: u64,
    /// Peers removed by expiry.
    pub evicted_expired: u64,
    /// Incarnations removed by re-registration.
    pub evicted_replaced: u64,
    /// Mass-eviction holds started.
    pub holds: u64,
    /// Holds that ended before their time because the share of silent peers fell back under
    /// the threshold.
    pub holds_ended_early: u64,
    /// Live ids moved to another address by a registration without their secret (allowed in
    /// the open mode, or by the admin token).
    pub takeovers: u64,
    /// Registrations refused because the id is held by a live registration under another
    /// secret (security on).
    pub takeovers_refused: u64,
}

/// Liveness and guard settings of a registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Time to live after the last heartbeat.
    pub ttl: Duration,
    /// No evictions before `start + startup_grace`.
    pub startup_grace: Duration,
    /// Guard threshold (share of the population, in failure domains).
    pub mass_eviction_share: f64,
    /// Guard minimum population (failure domains).
    pub mass_eviction_min_peers: usize,
    /// Longest hold.
    pub mass_eviction_hold: Duration,
    /// Events kept for resumption.
    pub history: usize,
    /// Cap on peers.
    pub max_peers: usize,
    /// Cap on the sum of the live registrations' costs in bytes
    /// ([`PeerRecord::cost`]; a registration past it is refused as [`RegistryError::Full`]).
    pub max_bytes: usize,
}

/// A registered peer: its current record, its secret, its address (to tell a move from a
/// renewal) and its deadline (also the key of its entry in the deadline index, with its
/// incarnation).
struct PeerEntry {
    record: Arc<PeerRecord>,
    secret: [u8; SECRET_LEN],
    /// `ip:port` (`[ip]:port` for IPv6) as registered.
    address: Box<str>,
    deadline: Instant,
    /// Its deadline was extended once already when a mass-eviction hold ended early (cleared
    /// by a heartbeat): a peer is given that second chance only once.
    reprieved: bool,
    /// The `host_id` of the batch that registered it; `None` for a single-call registration
    /// (its own failure domain). See [`domains`].
    domain: Option<Arc<str>>,
}

/// The registry state machine. See the module docs.
pub struct PeerRegistry {
    settings: RegistrySettings,
    epoch: Instant,
    grace_until: Instant,
    hold_until: Option<Instant>,
    /// Set while a large expiry drains in batches: the deadline it evicts through.
    drain_through: Option<Instant>,
    /// Whether the evictions of the current drain count towards the guard's next decision
    /// (not when the drain ends a hold: see [`guard`]).
    drain_counts: bool,
    /// Set while a hold that ended early gives the still-silent peers a fresh deadline, in
    /// batches: (peers with a deadline at or before this, their new deadline).
    reprieve: Option<(Instant, Instant)>,
    /// Live and recently expired failure domains, for the mass-eviction guard.
    domains: FailureDomains,
    peers: HashMap<Arc<str>, PeerEntry>,
    deadlines: BTreeMap<(Instant, u64), Arc<str>>,
    revision: u64,
    next_incarnation: u64,
    history: VecDeque<Arc<WatchEvent>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    view: Option<Arc<PeersView>>,
    stats: RegistryStats,
    storage: peer::Storage,
}

impl PeerRegistry {
    /// A registry started at `now`. Incarnations are at least `first_incarnation` (the server
    /// passes the start's Unix time in microseconds); see [`PeerRegistry::register_as`] for
    /// the rule that keeps them increasing across restarts.
    pub fn new(settings: RegistrySettings, now: Instant, first_incarnation: u64) -> Self {
        let (events, _) = broadcast::channel(settings.history.max(16));
        Self {
            grace_until: now + settings.startup_grace,
            epoch: now,
            hold_until: None,
            drain_through: None,
            drain_counts: true,
            reprieve: None,
            domains: FailureDomains::default(),
            peers: HashMap::new(),
            deadlines: BTreeMap::new(),
            revision: 0,
            next_incarnation: first_incarnation.max(1),
            history: VecDeque::with_capacity(settings.history),
            events,
            view: None,
            stats: RegistryStats::default(),
            storage: peer::Storage::default(),
            settings,
        }
    }

    /// Settings in force.
    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Current revision (bumped by membership and level changes only).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of registered peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is registered.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Counters.
    pub fn stats(&self) -> &RegistryStats {
        &self.stats
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.peers.contains_key(id)
    }

    /// The failure domain of `id`: the `host_id` of the batch that registered it (`None` for
    /// a single-call registration, or an unknown id).
    pub fn domain(&self, id: &str) -> Option<Arc<str>> {
        self.peers.get(id).and_then(|e| e.domain.clone())
    }

    /// Distinct failure domains among registered peers (a peer without a domain counts one).
    pub fn failure_domains(&self) -> usize {
        self.domains.live()
    }

    /// Current incarnation and deadline of `id`.
    pub fn lease(&self, id: &str) -> Option<(u64, Instant)> {
        self.peers
            .get(id)
            .map(|e| (e.record.incarnation, e.deadline))
    }

    /// One peer's record.
    pub fn peer(&self, id: &str) -> Option<Arc<PeerRecord>> {
        self.peers.get(id).map(|e| e.record.clone())
    }

    /// Monotonic origin of this registry.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    fn beat_nanos(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The membership at the current revision (built once per revision).
    pub fn view(&mut self) -> Arc<PeersView> {
        if let Some(v) = self.cached_view() {
            return v;
        }
        let v = Arc::new(PeersView::sorted(self.revision, self.epoch, self.members()));
        self.install_view(v.clone());
        v
    }

    /// The view of the current revision, if one was built.
    pub fn cached_view(&self) -> Option<Arc<PeersView>> {
        self.view.clone()
    }

    /// Every peer's record, unsorted (cheap: one reference count each), to build a view
    /// outside the lock with [`PeersView::sorted`].
    pub fn members(&self) -> Vec<Arc<PeerRecord>> {
        self.peers.values().map(|e| e.record.clone()).collect()
    }

    /// The membership at the current revision, unsorted, to build a view outside the lock.
    pub fn membership(&self) -> Membership {
        Membership::new(self.revision, self.epoch, self.members())
    }

    /// Caches `view` if it still reflects the current revision.
    pub fn install_view(&mut self, view: Arc<PeersView>) {
        if view.revision == self.revision {
            self.view = Some(view);
        }
    }
}
