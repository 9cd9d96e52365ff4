//! Expiry: the ordered deadline index (`BTreeMap<(deadline, incarnation), id>`) is walked from
//! its front, so a pass touches only expired peers and never scans the whole registry. Large
//! expiries (and reprieves after a hold, see [`super::guard`]) proceed in batches so heartbeats
//! never wait long behind the lock.

use std::sync::Arc;

use tokio::time::Instant;

use super::{LeaveReason, PeerRegistry};

/// What one reaper pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Ids evicted in this pass.
    pub evicted: Vec<Arc<str>>,
    /// Peers past their deadline but held (grace window or mass-eviction guard).
    pub held: usize,
    /// This pass started a mass-eviction hold.
    pub hold_started: bool,
    /// This pass ended a hold (its time ran out, or the mesh recovered).
    pub hold_released: bool,
    /// The hold ended early because the share of silent peers fell back under the threshold.
    pub hold_recovered: bool,
    /// Silent peers given one more TTL in this pass after a hold ended early.
    pub reprieved: usize,
    /// More expired peers remain; call again soon.
    pub more: bool,
}

impl PeerRegistry {
    /// When the reaper must look again (None: nothing to expire until a registration).
    pub fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if self.drain_through.is_some() || self.reprieve.is_some() {
            return Some(now);
        }
        let earliest = self.deadlines.keys().next()?.0;
        let mut at = earliest;
        if now < self.grace_until {
            at = at.max(self.grace_until);
        }
        if let Some(h) = self.hold_until {
            // Check again soon whether the mesh has recovered.
            at = at.max(h.min(now + self.hold_check_interval()));
        }
        Some(at)
    }

    /// Evicts (at most `batch`) peers whose deadline is at or before `now`, subject to the
    /// start-up grace window and the mass-eviction guard.
    pub fn reap(&mut self, now: Instant, batch: usize) -> ReapOutcome {
        let mut out = ReapOutcome::default();
        if self.reprieve.is_some() {
            self.reprieve_batch(now, batch, &mut out);
            return out;
        }
        let Some(through) = self.admit_eviction(now, &mut out) else {
            return out;
        };
        // Evictions that end a hold are not counted towards the next guard decision.
        let count_recent = self.drain_counts;
        while out.evicted.len() < batch {
            let Some((&(deadline, _), id)) = self.deadlines.iter().next() else {
                break;
            };
            if deadline > through {
                break;
            }
            let id = id.clone();
            let left = self.remove(&id, LeaveReason::Expired, now);
            if count_recent && let Some(entry) = left {
                self.domains.expired(now, entry.domain);
            }
            out.evicted.push(id);
        }
        out.more = self.deadlines.keys().next().is_some_and(|k| k.0 <= through);
        if !out.more {
            self.drain_through = None;
        }
        out
    }
}
