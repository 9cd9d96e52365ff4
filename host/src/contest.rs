//! What a host does when another registration takes its id: the rules of
//! [`Contest`], a synchronous state machine that takes `now` explicitly
//! (the lifecycle drives it; tests drive it with made-up instants).
//!
//! Discovery answers a heartbeat naming our lease with 409 when the id was
//! registered again since (in the open mode anyone may re-register an id;
//! with a token, only the admin token, or anyone once our lease expired).
//! The host never exits because of it:
//!
//! - each such displacement is counted; the host re-claims its id (a new
//!   registration) at most once per TTL, counted from its previous claim,
//!   so two hosts configured with one id do not flap faster than peers
//!   notice;
//! - after [`ContestPolicy::max_in_a_row`] displacements in a row (default
//!   3) it stops re-claiming and stays up unregistered, reporting who holds
//!   the id, until an operator restarts it;
//! - the row ends when the host held its id undisturbed for
//!   [`ContestPolicy::quiet_ttls`] TTLs (default 3) since its last claim.
//!
//! A 409 to a *registration* (a token is configured and the id is held
//! under another secret) is not a displacement: the lifecycle keeps trying
//! with back-off until discovery accepts it.

use std::time::Duration;

use tokio::time::Instant;

/// TTL assumed when discovery's register answer carries no `ttl_ms` (the
/// original service's 15 s).
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// Limits of the contest rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContestPolicy {
    /// Displacements in a row after which the host stops re-claiming.
    pub max_in_a_row: u32,
    /// TTLs of undisturbed holding after which the row starts again.
    pub quiet_ttls: u32,
}

impl ContestPolicy {
    /// Default displacements in a row before giving up.
    pub const DEFAULT_MAX_IN_A_ROW: u32 = 3;
    /// Default TTLs of undisturbed holding that end a row.
    pub const DEFAULT_QUIET_TTLS: u32 = 3;
}

impl Default for ContestPolicy {
    /// Give up after 3 displacements in a row; 3 quiet TTLs end a row.
    fn default() -> Self {
        Self {
            max_in_a_row: Self::DEFAULT_MAX_IN_A_ROW,
            quiet_ttls: Self::DEFAULT_QUIET_TTLS,
        }
    }
}

/// What to do after a displacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Register again, not before this instant.
    Reclaim {
        /// Earliest time of the new claim.
        not_before: Instant,
    },
    /// Stop re-claiming; stay up unregistered.
    GiveUp,
}

/// The contest state of one cell id.
#[derive(Debug, Clone)]
pub struct Contest {
    policy: ContestPolicy,
    ttl: Duration,
    last_claim: Option<Instant>,
    in_a_row: u32,
    total: u64,
}

impl Contest {
    /// No claim yet, no displacement.
    pub fn new(policy: ContestPolicy) -> Self {
        Self {
            policy,
            ttl: DEFAULT_TTL,
            last_claim: None,
            in_a_row: 0,
            total: 0,
        }
    }

    /// Discovery accepted a registration at `now`, with the TTL it
    /// announced (`None`: [`DEFAULT_TTL`]; zero counts as 1 ms).
    pub fn claimed(&mut self, now: Instant, ttl: Option<Duration>) {
        self.ttl = ttl.unwrap_or(DEFAULT_TTL).max(Duration::from_millis(1));
        self.last_claim = Some(now);
    }

    /// Another registration took the id; answers whether and when to
    /// re-claim it.
    pub fn displaced(&mut self, now: Instant) -> Verdict {
        let quiet = self.ttl.saturating_mul(self.policy.quiet_ttls);
        if self
            .last_claim
            .is_some_and(|claim| now.saturating_duration_since(claim) >= quiet)
        {
            self.in_a_row = 0;
        }
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.total = self.total.saturating_add(1);
        if self.in_a_row >= self.policy.max_in_a_row.max(1) {
            return Verdict::GiveUp;
        }
        let not_before = self
            .last_claim
            .map_or(now, |claim| (claim + self.ttl).max(now));
        Verdict::Reclaim { not_before }
    }

    /// Displacements in the current row.
    pub fn in_a_row(&self) -> u32 {
        self.in_a_row
    }

    /// Displacements since the host started.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The TTL re-claims are spaced by.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Critical (host side): a displaced host re-claims at most once per
    /// TTL, counted from its previous claim.
    #[test]
    fn reclaims_at_most_once_per_ttl_from_the_previous_claim() {
        let t0 = Instant::now();
        let mut contest = Contest::new(ContestPolicy::default());
        contest.claimed(t0, Some(TTL));
        // Displaced 2 s after the claim: wait until one TTL after it.
        assert_eq!(
            contest.displaced(t0 + secs(2)),
            Verdict::Reclaim {
                not_before: t0 + TTL
            }
        );
        let reclaim = t0 + TTL;
        contest.claimed(reclaim, Some(TTL));
        // Displaced 20 s after that claim (more than a TTL): at once.
        let late = reclaim + secs(20);
        assert_eq!(
            contest.displaced(late),
            Verdict::Reclaim { not_before: late }
        );
        assert_eq!(contest.in_a_row(), 2);
    }

    /// Critical (host side): after 3 displacements in a row the host gives
    /// up; the count goes on for the metrics.
    #[test]
    fn gives_up_after_three_displacements_in_a_row() {
        let mut now = Instant::now();
        let mut contest = Contest::new(ContestPolicy::default());
        for round in 1..=2 {
            contest.claimed(now, Some(TTL));
            now += secs(1);
            assert!(
                matches!(contest.displaced(now), Verdict::Reclaim { .. }),
                "round {round}"
            );
            now += TTL;
        }
        contest.claimed(now, Some(TTL));
        assert_eq!(contest.displaced(now + secs(1)), Verdict::GiveUp);
        assert_eq!((contest.in_a_row(), contest.total()), (3, 3));
    }

    /// A row ends after three TTLs of undisturbed holding: a rare
    /// displacement never adds up to giving up.
    #[test]
    fn three_quiet_ttls_end_a_row() {
        let mut now = Instant::now();
        let mut contest = Contest::new(ContestPolicy::default());
        for _ in 0..10 {
            contest.claimed(now, Some(TTL));
            now += 3 * TTL;
            assert!(matches!(contest.displaced(now), Verdict::Reclaim { .. }));
            assert_eq!(contest.in_a_row(), 1);
        }
        assert_eq!(contest.total(), 10);
    }

    #[test]
    fn without_a_ttl_from_discovery_the_original_fifteen_seconds_apply() {
        let t0 = Instant::now();
        let mut contest = Contest::new(ContestPolicy::default());
        contest.claimed(t0, None);
        assert_eq!(contest.ttl(), DEFAULT_TTL);
        assert_eq!(
            contest.displaced(t0),
            Verdict::Reclaim {
                not_before: t0 + DEFAULT_TTL
            }
        );
    }
}
