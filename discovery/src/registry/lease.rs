//! The lease lifecycle: register (a new incarnation, replacing any earlier one), heartbeat
//! (extends the deadline) and deregister, each checked against the caller's incarnation and
//! authority so an old process can never touch its restarted replacement.
//!
//! # Who may replace a live registration
//!
//! A registration is *live* until its deadline (last heartbeat + TTL) has passed. With security
//! on (a shared or admin token configured), only a registration presenting the live
//! registration's secret, or the admin token, may replace or move it; anything else is refused
//! ([`RegistryError::Held`], HTTP 409) until the lease has expired, after which the id is free.
//! In the open mode re-registering replaces, as in the original; a replacement that moves a
//! live id to another address without its secret is a [`Takeover`]: counted, published as a
//! `takeover` watch event and logged by the caller.
//!
//! # Incarnations
//!
//! Each new incarnation is `max(wall-clock µs at registration, previous + 1)` (and at least
//! the registry's start value), so incarnations strictly increase within a registry whatever
//! the wall clock does, and follow the wall clock rather than the start time. Residual
//! assumption for "never repeats across restarts": at a restart, the wall clock has passed the
//! previous run's last incarnation, i.e. it did not step back across the restart and the
//! previous run did not register faster than one cell per microsecond for long (a registration
//! takes several microseconds of work under one lock).

use std::sync::Arc;

use tokio::time::Instant;

use super::peer::secret_matches;
use super::{EventKind, LeaveReason, PeerEntry, PeerRecord, PeerRegistry, SECRET_LEN};
use crate::validate::CellInfo;

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

/// Who is asking to register a cell id (see the module docs for the rule).
#[derive(Debug, Clone, Copy, Default)]
pub struct Claim<'a> {
    /// Security is on: a live registration is only replaced by its own secret or the admin.
    pub enforce: bool,
    /// The caller presented the admin token.
    pub admin: bool,
    /// The `X-Cell-Secret` presented, hex encoded, if any.
    pub secret: Option<&'a str>,
}

impl Claim<'_> {
    /// The open mode with no secret presented: replaces whatever is registered.
    pub fn open() -> Self {
        Self::default()
    }
}

/// A live id moved to another address by a registration that did not present its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The address it was registered at (`ip:port`).
    pub from: Box<str>,
    /// The address it is registered at now.
    pub to: Box<str>,
    /// The incarnation that was replaced.
    pub replaced_incarnation: u64,
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
    /// Security on: the id is held by a live registration under another secret.
    #[error("cell id held by a live registration under another secret")]
    Held {
        /// Milliseconds until that lease expires unless renewed.
        expires_in_ms: u64,
    },
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
    /// Set when this registration took a live id over (see [`Takeover`]).
    pub takeover: Option<Takeover>,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAck {
    /// Peers registered now.
    pub peers_count: usize,
    /// The cell's current lease id.
    pub incarnation: u64,
}

impl PeerRegistry {
    /// Registers (or re-registers, replacing) a cell at `now` in the open mode, with
    /// `last_seen` = `wall_micros`: [`PeerRegistry::register_as`] with [`Claim::open`].
    pub fn register(
        &mut self,
        info: &CellInfo,
        secret: [u8; SECRET_LEN],
        now: Instant,
        wall_micros: i64,
    ) -> Result<Registered, RegistryError> {
        self.register_as(info, secret, Claim::open(), now, wall_micros)
    }

    /// Registers a cell at `now` for `claim`, with `last_seen` = `wall_micros`: a new id, an
    /// expired one, or a live one the claim may replace (see the module docs). The peer has no
    /// failure domain (the single call: [`PeerRegistry::register_in`] with `None`).
    pub fn register_as(
        &mut self,
        info: &CellInfo,
        secret: [u8; SECRET_LEN],
        claim: Claim<'_>,
        now: Instant,
        wall_micros: i64,
    ) -> Result<Registered, RegistryError> {
        self.register_in(info, secret, claim, None, now, wall_micros)
    }

    /// [`PeerRegistry::register_as`] with the failure domain the new registration belongs to:
    /// the batch's `host_id`, or `None` for the single call (which clears the domain an
    /// earlier batch registration of the id had). See [`super::domains`].
    pub fn register_in(
        &mut self,
        info: &CellInfo,
        secret: [u8; SECRET_LEN],
        claim: Claim<'_>,
        domain: Option<&str>,
        now: Instant,
        wall_micros: i64,
    ) -> Result<Registered, RegistryError> {
        let address = address_of(&info.ip, info.port);
        let mut takeover = None;
        let replaced = match self.peers.get(info.cell_id.as_str()) {
            Some(old) => {
                let live = old.deadline > now;
                let owner = claim
                    .secret
                    .is_some_and(|given| secret_matches(&old.secret, given));
                if live && claim.enforce && !claim.admin && !owner {
                    self.stats.takeovers_refused += 1;
                    let left = old.deadline.saturating_duration_since(now);
                    return Err(RegistryError::Held {
                        expires_in_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                if live && !owner && old.address != address {
                    takeover = Some(Takeover {
                        from: old.address.clone(),
                        to: address.clone(),
                        replaced_incarnation: old.record.incarnation,
                    });
                }
                true
            }
            None => false,
        };
        if !replaced && self.peers.len() >= self.settings.max_peers {
            return Err(RegistryError::Full);
        }
        self.check_budget(info)?;
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
        let incarnation = self
            .next_incarnation
            .max(u64::try_from(wall_micros).unwrap_or(0));
        self.next_incarnation = incarnation.saturating_add(1);
        let shape = self.shape(info);
        let record = Arc::new(PeerRecord::new(info, cell_id.clone(), incarnation, shape));
        record.touch(wall_micros, self.beat_nanos(now));
        self.account(&record);
        let deadline = now + self.settings.ttl;
        self.deadlines
            .insert((deadline, incarnation), cell_id.clone());
        self.emit(EventKind::Join, record.clone(), true, now);
        if let Some(t) = &takeover {
            self.stats.takeovers += 1;
            self.emit_takeover(record.clone(), t);
        }
        let domain = domain.map(|host| self.domains.intern(host));
        self.domains.join(domain.as_ref());
        self.peers.insert(
            cell_id,
            PeerEntry {
                record,
                secret,
                address,
                deadline,
                reprieved: false,
                domain,
            },
        );
        Ok(Registered {
            incarnation,
            replaced,
            wake_reaper: earliest_before.is_none_or(|e| deadline < e),
            takeover,
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
        entry.reprieved = false;
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

    /// Removes `id` from the map and the deadline index, counts and publishes its leaving.
    pub(super) fn remove(
        &mut self,
        id: &str,
        reason: LeaveReason,
        now: Instant,
    ) -> Option<PeerEntry> {
        let (_, entry) = self.peers.remove_entry(id)?;
        self.release(&entry.record);
        self.domains.leave(entry.domain.as_ref());
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
}

/// `ip:port`, with the IP in brackets when it contains a colon (IPv6), as in a URL.
fn address_of(ip: &str, port: u16) -> Box<str> {
    if ip.contains(':') {
        format!("[{ip}]:{port}").into()
    } else {
        format!("{ip}:{port}").into()
    }
}
