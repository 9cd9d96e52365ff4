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
//! Callers hold the registry in a `std::sync::Mutex` for the few microseconds each call takes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::clock::push_iso8601;
use crate::validate::CellInfo;

/// Length of a per-cell secret in bytes (sent as 32 hex digits).
pub const SECRET_LEN: usize = 16;

/// What peers of one kind share (branch, type, services), interned by the registry so that
/// 100,000 similar peers do not hold 100,000 copies.
#[derive(Debug)]
pub struct Shape {
    branch: Box<str>,
    cell_type: Box<str>,
    services: Box<[Box<str>]>,
    /// `,"services":[..],"branch":"..","type":".."`
    json: Box<str>,
}

fn json_str(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

impl Shape {
    fn json_of(info: &CellInfo) -> String {
        let services: Vec<String> = info.services.iter().map(|x| json_str(x)).collect();
        format!(
            ",\"services\":[{}],\"branch\":{},\"type\":{}",
            services.join(","),
            json_str(&info.branch),
            json_str(&info.cell_type)
        )
    }
}

/// One registration of a peer: parsed fields for filtering, pre-serialised JSON, and the parts
/// that change with every heartbeat (`last_seen`, last beat) in atomics shared with readers.
/// A level change makes a new record (and a new revision).
#[derive(Debug)]
pub struct PeerRecord {
    /// Cell id.
    pub cell_id: Arc<str>,
    /// Lease id of this registration.
    pub incarnation: u64,
    /// Current level.
    pub level: f64,
    shape: Arc<Shape>,
    /// `{"cell_id":..,"ip":..,"port":N,"consciousness_level":L` + `,"hostname":..,"incarnation":N`
    json: Box<str>,
    level_start: u32,
    level_end: u32,
    last_seen_micros: AtomicI64,
    last_beat_nanos: AtomicU64,
}

impl PeerRecord {
    fn new(info: &CellInfo, cell_id: Arc<str>, incarnation: u64, shape: Arc<Shape>) -> Self {
        let pre = format!(
            "{{\"cell_id\":{},\"ip\":{},\"port\":{},\"consciousness_level\":",
            json_str(&cell_id),
            json_str(&info.ip),
            info.port
        );
        let tail = format!(
            ",\"hostname\":{},\"incarnation\":{}",
            json_str(&info.hostname),
            incarnation
        );
        Self::assemble(
            cell_id,
            incarnation,
            info.consciousness_level,
            shape,
            &pre,
            &tail,
            0,
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cell_id: Arc<str>,
        incarnation: u64,
        level: f64,
        shape: Arc<Shape>,
        pre: &str,
        tail: &str,
        seen: i64,
        beat: u64,
    ) -> Self {
        let level_text = serde_json::to_string(&level).unwrap_or_else(|_| "0.0".into());
        let mut json = String::with_capacity(pre.len() + level_text.len() + tail.len());
        json.push_str(pre);
        json.push_str(&level_text);
        let level_end = json.len();
        json.push_str(tail);
        Self {
            cell_id,
            incarnation,
            level,
            shape,
            json: json.into_boxed_str(),
            level_start: u32::try_from(pre.len()).unwrap_or(u32::MAX),
            level_end: u32::try_from(level_end).unwrap_or(u32::MAX),
            last_seen_micros: AtomicI64::new(seen),
            last_beat_nanos: AtomicU64::new(beat),
        }
    }

    fn with_level(&self, level: f64) -> Self {
        let pre = &self.json[..self.level_start as usize];
        let tail = &self.json[self.level_end as usize..];
        Self::assemble(
            self.cell_id.clone(),
            self.incarnation,
            level,
            self.shape.clone(),
            pre,
            tail,
            self.last_seen_micros(),
            self.last_beat_nanos.load(Ordering::Relaxed),
        )
    }

    fn touch(&self, wall_micros: i64, beat_nanos: u64) {
        self.last_seen_micros.store(wall_micros, Ordering::Relaxed);
        self.last_beat_nanos.store(beat_nanos, Ordering::Relaxed);
    }

    /// Wall-clock time of the last heartbeat, microseconds since the epoch.
    pub fn last_seen_micros(&self) -> i64 {
        self.last_seen_micros.load(Ordering::Relaxed)
    }

    /// Branch.
    pub fn branch(&self) -> &str {
        &self.shape.branch
    }

    /// Cell type (`type` on the wire).
    pub fn cell_type(&self) -> &str {
        &self.shape.cell_type
    }

    /// Services offered.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.shape.services.iter().map(|s| &**s)
    }
}

/// Filters of `/peers` and `/peers/watch`, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerFilter {
    /// Peer offers this service.
    pub service: Option<String>,
    /// Peer has this type.
    pub cell_type: Option<String>,
    /// Peer is on this branch.
    pub branch: Option<String>,
    /// Peer's level is at least this.
    pub min_level: Option<f64>,
}

impl PeerFilter {
    /// Whether `rec` passes every given filter.
    pub fn matches(&self, rec: &PeerRecord) -> bool {
        self.service
            .as_deref()
            .is_none_or(|s| rec.services().any(|x| x == s))
            && self
                .cell_type
                .as_deref()
                .is_none_or(|t| rec.cell_type() == t)
            && self.branch.as_deref().is_none_or(|b| rec.branch() == b)
            && self.min_level.is_none_or(|m| rec.level >= m)
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The registry's membership at one revision, sorted by id.
#[derive(Debug)]
pub struct PeersView {
    /// Revision this view reflects.
    pub revision: u64,
    /// Peers, sorted by id.
    pub peers: Vec<Arc<PeerRecord>>,
    epoch: Instant,
}

impl PeersView {
    /// A view of `peers` at `revision`, sorted by id.
    pub fn sorted(revision: u64, epoch: Instant, mut peers: Vec<Arc<PeerRecord>>) -> Self {
        peers.sort_unstable_by(|a, b| a.cell_id.cmp(&b.cell_id));
        Self {
            revision,
            peers,
            epoch,
        }
    }

    /// Appends the JSON array elements (comma separated, no brackets) for the peers passing
    /// `filter`, with `last_seen` and `age_ms` computed at `now`; returns how many.
    pub fn render(&self, out: &mut Vec<u8>, filter: &PeerFilter, now: Instant) -> usize {
        let mut n = 0;
        let unfiltered = filter.is_empty();
        for rec in &self.peers {
            if !unfiltered && !filter.matches(rec) {
                continue;
            }
            if n > 0 {
                out.push(b',');
            }
            render_peer(out, rec, self.epoch, now);
            n += 1;
        }
        n
    }
}

/// Appends one peer's JSON object with `last_seen` and `age_ms` as of `now`.
pub fn render_peer(out: &mut Vec<u8>, rec: &PeerRecord, epoch: Instant, now: Instant) {
    let (head, tail) = rec.json.split_at(rec.level_end as usize);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(rec.shape.json.as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out.extend_from_slice(b",\"last_seen\":\"");
    push_iso8601(out, rec.last_seen_micros());
    out.extend_from_slice(b"\",\"age_ms\":");
    let beat = epoch + Duration::from_nanos(rec.last_beat_nanos.load(Ordering::Relaxed));
    let age = now.saturating_duration_since(beat).as_millis();
    push_u64(out, u64::try_from(age).unwrap_or(u64::MAX));
    out.push(b'}');
}

/// Appends `n` in decimal without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Why a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// `DELETE /peer/{id}` or `/unregister/{id}`.
    Deregistered,
    /// Silent for longer than the TTL.
    Expired,
    /// The same id registered again (a new incarnation).
    Replaced,
}

impl LeaveReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deregistered => "deregistered",
            Self::Expired => "expired",
            Self::Replaced => "replaced",
        }
    }
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A peer registered.
    Join,
    /// A peer's level changed.
    Update,
    /// A peer left.
    Leave(LeaveReason),
}

impl EventKind {
    /// SSE event name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Update => "update",
            Self::Leave(_) => "leave",
        }
    }
}

/// One change of the registry.
#[derive(Debug)]
pub struct WatchEvent {
    /// Registry revision after this change.
    pub revision: u64,
    /// What happened.
    pub kind: EventKind,
    /// The peer as it was (leave) or is (join/update).
    pub record: Arc<PeerRecord>,
    /// The SSE `data:` JSON.
    pub data: Arc<str>,
}

/// How a new watcher catches up.
#[derive(Debug)]
pub enum Resume {
    /// Replay these events (possibly none), then follow live events.
    Replay(Vec<Arc<WatchEvent>>),
    /// Too far behind (or a fresh start): send this snapshot, then follow live events.
    Snapshot(Arc<PeersView>),
}

/// Who is asking to change a cell.
#[derive(Debug, Clone, Copy)]
pub enum Authority<'a> {
    /// Security off: anyone (the original behaviour).
    Open,
    /// Holder of the admin token.
    Admin,
    /// A cell presenting (or not) its per-cell secret, hex encoded.
    Secret(Option<&'a str>),
}

/// Why a registry call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No such cell id.
    #[error("peer not found")]
    NotFound,
    /// The request named an incarnation that is not the current one.
    #[error("stale incarnation")]
    StaleIncarnation,
    /// Missing or wrong per-cell secret.
    #[error("bad cell secret")]
    BadSecret,
    /// The registry holds `max_peers` already.
    #[error("registry full")]
    Full,
}

/// Answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Lease id of the new registration.
    pub incarnation: u64,
    /// Whether an earlier incarnation was replaced.
    pub replaced: bool,
    /// Whether the reaper must recompute its next wake-up.
    pub wake_reaper: bool,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// Peers registered now.
    pub peers_count: usize,
    /// The cell's current lease id.
    pub incarnation: u64,
}

/// What one reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Ids evicted in this pass.
    pub evicted: Vec<Arc<str>>,
    /// Peers past their deadline but held (grace window or mass-eviction guard).
    pub held: usize,
    /// This pass started a mass-eviction hold.
    pub hold_started: bool,
    /// This pass ended a hold whose time ran out.
    pub hold_released: bool,
    /// More expired peers remain; call again soon.
    pub more: bool,
}

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
}

/// Liveness and guard settings of a registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Time to live after the last heartbeat.
    pub ttl: Duration,
    /// No evictions before `start + startup_grace`.
    pub startup_grace: Duration,
    /// Guard threshold (share of population).
    pub mass_eviction_share: f64,
    /// Guard minimum population.
    pub mass_eviction_min_peers: usize,
    /// Longest hold.
    pub mass_eviction_hold: Duration,
    /// Events kept for resumption.
    pub history: usize,
    /// Cap on peers.
    pub max_peers: usize,
}

struct PeerEntry {
    record: Arc<PeerRecord>,
    secret: [u8; SECRET_LEN],
    deadline: Instant,
}

/// The registry state machine. See the module docs.
pub struct PeerRegistry {
    settings: RegistrySettings,
    epoch: Instant,
    grace_until: Instant,
    hold_until: Option<Instant>,
    drain_through: Option<Instant>,
    recent_expiries: VecDeque<Instant>,
    peers: HashMap<Arc<str>, PeerEntry>,
    deadlines: BTreeMap<(Instant, u64), Arc<str>>,
    revision: u64,
    next_incarnation: u64,
    history: VecDeque<Arc<WatchEvent>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    view: Option<Arc<PeersView>>,
    stats: RegistryStats,
    shapes: HashMap<Box<str>, Arc<Shape>>,
    shapes_prune_at: usize,
}

impl PeerRegistry {
    /// A registry started at `now`. Incarnations start at `first_incarnation` (the server uses
    /// the start's Unix time in microseconds, so lease ids also grow across restarts).
    pub fn new(settings: RegistrySettings, now: Instant, first_incarnation: u64) -> Self {
        let (events, _) = broadcast::channel(settings.history.max(16));
        Self {
            grace_until: now + settings.startup_grace,
            epoch: now,
            hold_until: None,
            drain_through: None,
            recent_expiries: VecDeque::new(),
            peers: HashMap::new(),
            deadlines: BTreeMap::new(),
            revision: 0,
            next_incarnation: first_incarnation.max(1),
            history: VecDeque::with_capacity(settings.history),
            events,
            view: None,
            stats: RegistryStats::default(),
            shapes: HashMap::new(),
            shapes_prune_at: 1024,
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

    /// Whether `now` is inside the start-up grace window.
    pub fn in_grace(&self, now: Instant) -> bool {
        now < self.grace_until
    }

    /// Whether a mass-eviction hold is in force at `now`.
    pub fn holding(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    /// Peers past their deadline that are being held at `now`.
    pub fn held(&self, now: Instant) -> usize {
        if self.in_grace(now) || self.holding(now) {
            self.deadlines.range(..=(now, u64::MAX)).count()
        } else {
            0
        }
    }

    /// Whether `id` is registered.
    pub fn contains(&self, id: &str) -> bool {
        self.peers.contains_key(id)
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

    fn emit(&mut self, kind: EventKind, record: Arc<PeerRecord>, with_peer: bool, now: Instant) {
        self.revision += 1;
        self.view = None;
        let mut data = Vec::with_capacity(320);
        data.extend_from_slice(b"{\"revision\":");
        data.extend_from_slice(self.revision.to_string().as_bytes());
        data.extend_from_slice(b",\"type\":\"");
        data.extend_from_slice(kind.name().as_bytes());
        data.extend_from_slice(b"\",\"cell_id\":");
        data.extend_from_slice(
            serde_json::to_string(&*record.cell_id)
                .unwrap_or_default()
                .as_bytes(),
        );
        match (kind, with_peer) {
            (EventKind::Leave(reason), _) => {
                data.extend_from_slice(b",\"reason\":\"");
                data.extend_from_slice(reason.as_str().as_bytes());
                data.extend_from_slice(b"\",\"incarnation\":");
                data.extend_from_slice(record.incarnation.to_string().as_bytes());
            }
            (_, true) => {
                data.extend_from_slice(b",\"peer\":");
                render_peer(&mut data, &record, self.epoch, now);
            }
            (_, false) => {}
        }
        data.push(b'}');
        let event = Arc::new(WatchEvent {
            revision: self.revision,
            kind,
            record,
            data: String::from_utf8(data).unwrap_or_default().into(),
        });
        if self.history.len() == self.settings.history {
            self.history.pop_front();
        }
        if self.settings.history > 0 {
            self.history.push_back(event.clone());
        }
        let _ = self.events.send(event);
    }

    fn remove(&mut self, id: &str, reason: LeaveReason, now: Instant) -> Option<PeerEntry> {
        let (_, entry) = self.peers.remove_entry(id)?;
        self.deadlines
            .remove(&(entry.deadline, entry.record.incarnation));
        match reason {
            LeaveReason::Deregistered => self.stats.evicted_deregistered += 1,
            LeaveReason::Expired => self.stats.evicted_expired += 1,
            LeaveReason::Replaced => self.stats.evicted_replaced += 1,
        }
        self.emit(EventKind::Leave(reason), entry.record.clone(), false, now);
        Some(entry)
    }

    /// The interned shape of `info` (shapes no peer uses any more are dropped now and then).
    fn shape(&mut self, info: &CellInfo) -> Arc<Shape> {
        let json = Shape::json_of(info);
        if let Some(s) = self.shapes.get(json.as_str()) {
            return s.clone();
        }
        if self.shapes.len() >= self.shapes_prune_at {
            self.shapes.retain(|_, s| Arc::strong_count(s) > 1);
            self.shapes_prune_at = (self.shapes.len() * 2).max(1024);
        }
        let shape = Arc::new(Shape {
            branch: info.branch.as_str().into(),
            cell_type: info.cell_type.as_str().into(),
            services: info.services.iter().map(|x| x.as_str().into()).collect(),
            json: json.clone().into_boxed_str(),
        });
        self.shapes.insert(json.into_boxed_str(), shape.clone());
        shape
    }

    /// Registers (or re-registers, replacing) a cell at `now`, with `last_seen` = `wall_micros`.
    pub fn register(
        &mut self,
        info: &CellInfo,
        secret: [u8; SECRET_LEN],
        now: Instant,
        wall_micros: i64,
    ) -> Result<Registered, RegistryError> {
        let replaced = self.peers.contains_key(info.cell_id.as_str());
        if !replaced && self.peers.len() >= self.settings.max_peers {
            return Err(RegistryError::Full);
        }
        let earliest_before = self.deadlines.keys().next().map(|k| k.0);
        let cell_id: Arc<str> = match self.remove(&info.cell_id, LeaveReason::Replaced, now) {
            Some(old) => {
                self.stats.reregistrations += 1;
                old.record.cell_id.clone()
            }
            None => {
                self.stats.registrations += 1;
                info.cell_id.as_str().into()
            }
        };
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let shape = self.shape(info);
        let record = Arc::new(PeerRecord::new(info, cell_id.clone(), incarnation, shape));
        record.touch(wall_micros, self.beat_nanos(now));
        let deadline = now + self.settings.ttl;
        self.deadlines
            .insert((deadline, incarnation), cell_id.clone());
        self.emit(EventKind::Join, record.clone(), true, now);
        self.peers.insert(
            cell_id,
            PeerEntry {
                record,
                secret,
                deadline,
            },
        );
        Ok(Registered {
            incarnation,
            replaced,
            wake_reaper: earliest_before.is_none_or(|e| deadline < e),
        })
    }

    fn authorize(
        entry: &PeerEntry,
        incarnation: Option<u64>,
        authority: Authority<'_>,
    ) -> Result<(), RegistryError> {
        if incarnation.is_some_and(|i| i != entry.record.incarnation) {
            return Err(RegistryError::StaleIncarnation);
        }
        match authority {
            Authority::Open | Authority::Admin => Ok(()),
            Authority::Secret(Some(given)) if secret_matches(&entry.secret, given) => Ok(()),
            Authority::Secret(_) => Err(RegistryError::BadSecret),
        }
    }

    /// Records a heartbeat of `id` at `now`: extends its deadline to `now + ttl`, sets
    /// `last_seen` and the level (a level change is an `update` event).
    pub fn heartbeat(
        &mut self,
        id: &str,
        level: f64,
        incarnation: Option<u64>,
        authority: Authority<'_>,
        now: Instant,
        wall_micros: i64,
    ) -> Result<HeartbeatAck, RegistryError> {
        let beat = self.beat_nanos(now);
        let ttl = self.settings.ttl;
        let entry = self.peers.get_mut(id).ok_or(RegistryError::NotFound)?;
        Self::authorize(entry, incarnation, authority)?;
        let inc = entry.record.incarnation;
        let old = entry.deadline;
        entry.deadline = now + ttl;
        entry.record.touch(wall_micros, beat);
        let changed = entry.record.level.to_bits() != level.to_bits();
        let update = if changed {
            entry.record = Arc::new(entry.record.with_level(level));
            Some(entry.record.clone())
        } else {
            None
        };
        let new_deadline = entry.deadline;
        if new_deadline != old
            && let Some(key_id) = self.deadlines.remove(&(old, inc))
        {
            self.deadlines.insert((new_deadline, inc), key_id);
        }
        self.stats.heartbeats += 1;
        if let Some(record) = update {
            self.emit(EventKind::Update, record, true, now);
        }
        Ok(HeartbeatAck {
            peers_count: self.peers.len(),
            incarnation: inc,
        })
    }

    /// Deregisters `id`.
    pub fn deregister(
        &mut self,
        id: &str,
        incarnation: Option<u64>,
        authority: Authority<'_>,
        now: Instant,
    ) -> Result<(), RegistryError> {
        let entry = self.peers.get(id).ok_or(RegistryError::NotFound)?;
        Self::authorize(entry, incarnation, authority)?;
        self.remove(id, LeaveReason::Deregistered, now);
        Ok(())
    }

    /// When the reaper must look again (None: nothing to expire until a registration).
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if self.drain_through.is_some() {
            return Some(now);
        }
        let earliest = self.deadlines.keys().next()?.0;
        let mut at = earliest;
        if now < self.grace_until {
            at = at.max(self.grace_until);
        }
        if let Some(h) = self.hold_until {
            at = at.max(h);
        }
        Some(at)
    }

    /// Evicts (at most `batch`) peers whose deadline is at or before `now`, subject to the
    /// start-up grace window and the mass-eviction guard.
    pub fn reap(&mut self, now: Instant, batch: usize) -> ReapOutcome {
        let mut out = ReapOutcome::default();
        if now < self.grace_until {
            out.held = self.held(now);
            return out;
        }
        let through = match self.drain_through {
            Some(t) => t,
            None => {
                let expired = self.deadlines.range(..=(now, u64::MAX)).count();
                if let Some(h) = self.hold_until {
                    if now < h {
                        out.held = expired;
                        return out;
                    }
                    self.hold_until = None;
                    self.recent_expiries.clear();
                    out.hold_released = true;
                    if expired == 0 {
                        return out;
                    }
                } else {
                    if expired == 0 {
                        return out;
                    }
                    let window_start = now.checked_sub(self.settings.ttl);
                    while self
                        .recent_expiries
                        .front()
                        .is_some_and(|t| window_start.is_some_and(|w| *t <= w))
                    {
                        self.recent_expiries.pop_front();
                    }
                    let population = self.peers.len() + self.recent_expiries.len();
                    let would = self.recent_expiries.len() + expired;
                    if population >= self.settings.mass_eviction_min_peers
                        && (would as f64) > self.settings.mass_eviction_share * population as f64
                    {
                        self.hold_until = Some(now + self.settings.mass_eviction_hold);
                        self.stats.holds += 1;
                        out.hold_started = true;
                        out.held = expired;
                        return out;
                    }
                }
                self.drain_through = Some(now);
                now
            }
        };
        let count_recent = !out.hold_released;
        while out.evicted.len() < batch {
            let Some((&(deadline, _), id)) = self.deadlines.iter().next() else {
                break;
            };
            if deadline > through {
                break;
            }
            let id = id.clone();
            self.remove(&id, LeaveReason::Expired, now);
            if count_recent {
                self.recent_expiries.push_back(now);
            }
            out.evicted.push(id);
        }
        out.more = self.deadlines.keys().next().is_some_and(|k| k.0 <= through);
        if !out.more {
            self.drain_through = None;
        }
        out
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

    /// Caches `view` if it still reflects the current revision.
    pub fn install_view(&mut self, view: Arc<PeersView>) {
        if view.revision == self.revision {
            self.view = Some(view);
        }
    }

    /// Subscribes to events after revision `since` (None: start with a snapshot).
    pub fn subscribe(
        &mut self,
        since: Option<u64>,
    ) -> (broadcast::Receiver<Arc<WatchEvent>>, Resume) {
        let rx = self.events.subscribe();
        let resume = match since {
            Some(n) if n == self.revision => Resume::Replay(Vec::new()),
            Some(n)
                if n < self.revision
                    && self.history.front().is_some_and(|e| e.revision <= n + 1) =>
            {
                Resume::Replay(
                    self.history
                        .iter()
                        .filter(|e| e.revision > n)
                        .cloned()
                        .collect(),
                )
            }
            _ => Resume::Snapshot(self.view()),
        };
        (rx, resume)
    }
}

fn secret_matches(expected: &[u8; SECRET_LEN], given: &str) -> bool {
    let mut got = [0u8; SECRET_LEN];
    if hex::decode_to_slice(given.trim(), &mut got).is_err() {
        return false;
    }
    expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}
