//! The lease lifecycle: register (a new incarnation, replacing any earlier one), heartbeat
//! (extends the deadline) and deregister, each checked against the caller's incarnation and
//! authority so an old process can never touch its restarted replacement.

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

impl PeerRegistry {
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

    /// Removes `id` from the map and the deadline index, counts and publishes its leaving.
    pub(super) fn remove(
        &mut self,
        id: &str,
        reason: LeaveReason,
        now: Instant,
    ) -> Option<PeerEntry> {
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
}
