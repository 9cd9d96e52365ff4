//! When evictions may happen: the start-up grace window (nothing is evicted for one TTL after
//! start, while cells re-register) and the mass-eviction guard (when too many peers would expire
//! within one TTL window, the cause is more likely discovery's own network or a process pause
//! than the cells, so evictions are held for a bounded time).

use tokio::time::Instant;

use super::{PeerRegistry, ReapOutcome};

impl PeerRegistry {
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
                out.held = expired;
                return None;
            }
            // The hold ran out: whoever is still silent is really gone.
            self.hold_until = None;
            self.recent_expiries.clear();
            out.hold_released = true;
            if expired == 0 {
                return None;
            }
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
        }
        self.drain_through = Some(now);
        Some(now)
    }

    /// Whether evicting `expired` more peers would make more than the configured share of the
    /// population (live peers plus those expired within the last TTL) expire within one TTL.
    fn mass_expiry(&mut self, now: Instant, expired: usize) -> bool {
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
        population >= self.settings.mass_eviction_min_peers
            && (would as f64) > self.settings.mass_eviction_share * population as f64
    }
}
