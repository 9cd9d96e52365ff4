//! When evictions may happen: the start-up grace window (nothing is evicted for one TTL after
//! start, while cells re-register) and the mass-eviction guard (when too many peers would expire
//! within one TTL window, the cause is more likely discovery's own network or a process pause
//! than the cells, so evictions are held for a bounded time).
//!
//! # The guard
//!
//! The guard counts *failure domains*, not peers (see [`super::domains`]): the cells a batch
//! registered for one host are one domain, a peer registered by the single call is a domain of
//! its own. So a registry without batch calls counts peers exactly as before, and one host of
//! a thousand cells dying among fifty domains is one failure in fifty, not a thousand in 1,050.
//!
//! A hold starts when more than `mass_eviction_share` of the population (the distinct domains
//! of live peers and of peers expired within the last TTL, when at least
//! `mass_eviction_min_peers` of them) would have lost a peer to expiry within one TTL. While it
//! is in force the same condition is checked again every
//! [`PeerRegistry::hold_check_interval`] (a tenth of the TTL, between 50 ms and 1 s), and the
//! hold ends:
//!
//! - *early*, as soon as the condition no longer holds (the mesh recovered): peers still silent
//!   then get one fresh deadline of one TTL (once: a peer already given one is evicted), so
//!   cells that are about to come back are not evicted; afterwards peers expire at their
//!   deadlines as usual, so a cell that dies after the recovery is reaped at its last
//!   heartbeat + TTL, plus at most one check;
//! - *when its time runs out* (`mass_eviction_hold`): peers still silent are evicted.
//!
//! Evictions that end a hold are never counted towards the next guard decision, however many
//! batches the drain takes.

use std::time::Duration;

use tokio::time::Instant;

use super::{LeaveReason, PeerRegistry, ReapOutcome};

/// Shortest interval between guard checks during a hold.
const MIN_HOLD_CHECK: Duration = Duration::from_millis(50);
/// Longest interval between guard checks during a hold ("one check" in the module docs).
pub const MAX_HOLD_CHECK: Duration = Duration::from_secs(1);

impl PeerRegistry {
    /// Whether `now` is inside the start-up grace window.
    pub fn in_grace(&self, now: Instant) -> bool {
        now < self.grace_until
    }

    /// Whether a mass-eviction hold is in force at `now`.
    pub fn holding(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    /// How often the guard's condition is checked again while a hold is in force: a tenth of
    /// the TTL, between 50 ms and [`MAX_HOLD_CHECK`].
    pub fn hold_check_interval(&self) -> Duration {
        (self.settings.ttl / 10).clamp(MIN_HOLD_CHECK, MAX_HOLD_CHECK)
    }

    /// Peers past their deadline that are being held at `now`.
    pub fn held(&self, now: Instant) -> usize {
        if self.in_grace(now) || self.holding(now) {
            self.deadlines.range(..=(now, u64::MAX)).count()
        } else {
            0
        }
    }

    /// Decides whether expired peers may be evicted at `now`, recording holds and releases in
    /// `out`. Answers the deadline through which the current drain evicts, or `None` when
    /// nothing may (or needs to) be evicted now.
    pub(super) fn admit_eviction(
        &mut self,
        now: Instant,
        out: &mut ReapOutcome,
    ) -> Option<Instant> {
        if now < self.grace_until {
            out.held = self.held(now);
            return None;
        }
        // A drain in progress continues through the deadline it started with.
        if let Some(t) = self.drain_through {
            return Some(t);
        }
        let expired = self.deadlines.range(..=(now, u64::MAX)).count();
        if let Some(h) = self.hold_until {
            if now < h {
                if self.mass_expiry(now, expired) {
                    out.held = expired;
                    return None;
                }
                // The mesh recovered: give the still silent one more TTL, in batches.
                self.end_hold(out);
                self.stats.holds_ended_early += 1;
                out.hold_recovered = true;
                if expired > 0 {
                    self.reprieve = Some((now, now + self.settings.ttl));
                    out.more = true;
                }
                return None;
            }
            // The hold ran out: whoever is still silent is really gone.
            self.end_hold(out);
            if expired == 0 {
                return None;
            }
            self.drain_counts = false;
        } else {
            if expired == 0 {
                return None;
            }
            if self.mass_expiry(now, expired) {
                self.hold_until = Some(now + self.settings.mass_eviction_hold);
                self.stats.holds += 1;
                out.hold_started = true;
                out.held = expired;
                return None;
            }
            self.drain_counts = true;
        }
        self.drain_through = Some(now);
        Some(now)
    }

    fn end_hold(&mut self, out: &mut ReapOutcome) {
        self.hold_until = None;
        self.domains.forget_recent();
        out.hold_released = true;
    }

    /// One batch of a reprieve after a hold ended early: each peer whose deadline is at or
    /// before `cut` gets `new_deadline`, unless it was given one before (then it is evicted,
    /// not counted towards the guard).
    pub(super) fn reprieve_batch(&mut self, now: Instant, batch: usize, out: &mut ReapOutcome) {
        let Some((cut, new_deadline)) = self.reprieve else {
            return;
        };
        let mut done = 0;
        while done < batch {
            let Some((&(deadline, inc), id)) = self.deadlines.iter().next() else {
                break;
            };
            if deadline > cut {
                break;
            }
            let id = id.clone();
            done += 1;
            let Some(entry) = self.peers.get_mut(&id) else {
                self.deadlines.remove(&(deadline, inc)); // unreachable: the index follows the map
                continue;
            };
            if entry.reprieved {
                self.remove(&id, LeaveReason::Expired, now);
                out.evicted.push(id);
                continue;
            }
            entry.reprieved = true;
            entry.deadline = new_deadline;
            self.deadlines.remove(&(deadline, inc));
            self.deadlines.insert((new_deadline, inc), id);
            out.reprieved += 1;
        }
        let more = self.deadlines.keys().next().is_some_and(|k| k.0 <= cut);
        if !more {
            self.reprieve = None;
        }
        out.more = more;
    }

    /// Whether evicting the `expired` peers past their deadline would make more than the
    /// configured share of the population lose a peer to expiry within one TTL, counted in
    /// failure domains (see the module docs): population = distinct domains of live peers and
    /// of peers expired within the last TTL; failing = distinct domains among those expired
    /// within the last TTL and those about to be.
    fn mass_expiry(&mut self, now: Instant, expired: usize) -> bool {
        if let Some(window_start) = now.checked_sub(self.settings.ttl) {
            self.domains.forget_before(window_start);
        }
        let population = self.domains.population();
        let failing_now = if self.domains.any_named() {
            let peers = &self.peers;
            self.domains.newly_failing(
                self.deadlines
                    .range(..=(now, u64::MAX))
                    .map(|(_, id)| peers.get(id).and_then(|e| e.domain.as_ref())),
            )
        } else {
            // Every peer is its own domain: no need to look at them.
            expired
        };
        let would = self.domains.recent() + failing_now;
        population >= self.settings.mass_eviction_min_peers
            && (would as f64) > self.settings.mass_eviction_share * population as f64
    }
}
