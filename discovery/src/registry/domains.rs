//! Failure domains: what the mass-eviction guard counts instead of peers.
//!
//! A peer registered by a batch call (`POST /batch/register`) belongs to the batch's `host_id`:
//! every cell of one host process dies with it, so the guard must see a dead host as *one*
//! failure, not as a thousand. A peer registered by the single call has no domain and is its
//! own (so a registry without batch calls counts exactly as it counted peers).
//!
//! [`FailureDomains`] keeps the counts incrementally, so nothing scans the registry:
//!
//! - live: peers per named domain (`HashMap`), plus the number of peers without one;
//! - recent expiries: a queue of `(time, domain)` over one TTL, with the number of queued
//!   expiries per named domain, plus the number without one.
//!
//! From these, in time proportional to the number of named domains that lost a peer recently
//! (never to the number of peers):
//!
//! - [`FailureDomains::live`]: distinct domains among live peers;
//! - [`FailureDomains::recent`]: distinct domains that lost a peer to expiry within one TTL;
//! - [`FailureDomains::population`]: the union of both (the guard's population, as "live peers
//!   plus peers expired within the last TTL" was before).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

/// Live and recently expired failure domains (see the module docs).
#[derive(Debug, Default)]
pub struct FailureDomains {
    /// Live peers per named domain (entries removed at zero).
    live_named: HashMap<Arc<str>, usize>,
    /// Live peers without a domain (each its own).
    live_alone: usize,
    /// Expiries within the window, oldest first.
    recent: VecDeque<(Instant, Option<Arc<str>>)>,
    /// Queued expiries per named domain (entries removed at zero).
    recent_named: HashMap<Arc<str>, usize>,
    /// Queued expiries without a domain.
    recent_alone: usize,
}

impl FailureDomains {
    /// The shared name of domain `host` (one allocation per domain, not per peer).
    pub fn intern(&self, host: &str) -> Arc<str> {
        self.live_named
            .get_key_value(host)
            .or_else(|| self.recent_named.get_key_value(host))
            .map_or_else(|| Arc::from(host), |(k, _)| k.clone())
    }

    /// A peer of `domain` became live.
    pub fn join(&mut self, domain: Option<&Arc<str>>) {
        match domain {
            Some(d) => *self.live_named.entry(d.clone()).or_insert(0) += 1,
            None => self.live_alone += 1,
        }
    }

    /// A peer of `domain` left (for any reason).
    pub fn leave(&mut self, domain: Option<&Arc<str>>) {
        match domain {
            Some(d) => decrement(&mut self.live_named, d),
            None => self.live_alone = self.live_alone.saturating_sub(1),
        }
    }

    /// A peer of `domain` expired at `now` (counted towards the guard's next decision).
    pub fn expired(&mut self, now: Instant, domain: Option<Arc<str>>) {
        match &domain {
            Some(d) => *self.recent_named.entry(d.clone()).or_insert(0) += 1,
            None => self.recent_alone += 1,
        }
        self.recent.push_back((now, domain));
    }

    /// Forgets expiries at or before `window_start` (older than one TTL).
    pub fn forget_before(&mut self, window_start: Instant) {
        while let Some((t, _)) = self.recent.front() {
            if *t > window_start {
                break;
            }
            if let Some((_, domain)) = self.recent.pop_front() {
                match domain {
                    Some(d) => decrement(&mut self.recent_named, &d),
                    None => self.recent_alone = self.recent_alone.saturating_sub(1),
                }
            }
        }
    }

    /// Forgets every recent expiry (a hold ended: its evictions never count again).
    pub fn forget_recent(&mut self) {
        self.recent.clear();
        self.recent_named.clear();
        self.recent_alone = 0;
    }

    /// Distinct domains among live peers.
    pub fn live(&self) -> usize {
        self.live_named.len() + self.live_alone
    }

    /// Whether any live peer belongs to a named domain (otherwise every count is a peer count).
    pub fn any_named(&self) -> bool {
        !self.live_named.is_empty() || !self.recent_named.is_empty()
    }

    /// Distinct domains that lost a peer to expiry within the window.
    pub fn recent(&self) -> usize {
        self.recent_named.len() + self.recent_alone
    }

    /// Whether `domain` lost a peer to expiry within the window.
    pub fn recently_expired(&self, domain: &str) -> bool {
        self.recent_named.contains_key(domain)
    }

    /// Distinct domains that are live or lost a peer within the window.
    pub fn population(&self) -> usize {
        let gone = self
            .recent_named
            .keys()
            .filter(|d| !self.live_named.contains_key(&***d))
            .count();
        self.live() + self.recent_alone + gone
    }

    /// Distinct domains among `expiring` (peers past their deadline, not evicted yet) that
    /// are not counted in [`Self::recent`] already.
    pub fn newly_failing<'a>(&self, expiring: impl Iterator<Item = Option<&'a Arc<str>>>) -> usize {
        let mut alone = 0;
        let mut named: HashSet<&str> = HashSet::new();
        for domain in expiring {
            match domain {
                Some(d) if !self.recently_expired(d) => {
                    named.insert(d);
                }
                Some(_) => {}
                None => alone += 1,
            }
        }
        alone + named.len()
    }
}

fn decrement(counts: &mut HashMap<Arc<str>, usize>, key: &str) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn peers_without_a_domain_count_one_each() {
        let mut d = FailureDomains::default();
        let t = Instant::now();
        for _ in 0..5 {
            d.join(None);
        }
        d.leave(None);
        d.expired(t, None);
        d.expired(t, None);
        // As before domains: live peers + expired peers.
        assert_eq!((d.live(), d.recent(), d.population()), (4, 2, 6));
        assert_eq!(d.newly_failing([None, None, None].into_iter()), 3);
        assert!(!d.any_named());
        d.forget_before(t);
        assert_eq!((d.recent(), d.population()), (0, 4));
    }

    #[test]
    fn a_host_counts_once_live_expiring_and_expired() {
        let mut d = FailureDomains::default();
        let t = Instant::now();
        let host = d.intern("host-a");
        for _ in 0..1000 {
            d.join(Some(&host));
        }
        for _ in 0..20 {
            d.join(None);
        }
        assert_eq!((d.live(), d.population()), (21, 21));
        assert!(
            Arc::ptr_eq(&d.intern("host-a"), &host),
            "one name per domain"
        );
        assert_eq!(
            d.newly_failing(std::iter::repeat_n(Some(&host), 1000)),
            1,
            "a thousand expiring cells of one host are one failure"
        );
        for _ in 0..400 {
            d.leave(Some(&host));
            d.expired(t, Some(host.clone()));
        }
        // Still live (600 cells left): counted once in the population.
        assert_eq!((d.live(), d.recent(), d.population()), (21, 1, 21));
        assert_eq!(d.newly_failing(std::iter::repeat_n(Some(&host), 600)), 0);
        for _ in 0..600 {
            d.leave(Some(&host));
            d.expired(t, Some(host.clone()));
        }
        assert_eq!((d.live(), d.recent(), d.population()), (20, 1, 21));
        d.forget_before(t + Duration::from_millis(1));
        assert_eq!((d.live(), d.recent(), d.population()), (20, 0, 20));
        assert!(!d.any_named());
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A peer joins domain `.0` (None: its own).
        Join(Option<u8>),
        /// The live peer at this index (modulo) leaves.
        Leave(usize),
        /// The live peer at this index (modulo) expires.
        Expire(usize),
        /// Time passes (ms).
        Advance(u64),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => proptest::option::of(0u8..4).prop_map(Op::Join),
            1 => any::<usize>().prop_map(Op::Leave),
            2 => any::<usize>().prop_map(Op::Expire),
            1 => (0u64..2000).prop_map(Op::Advance),
        ]
    }

    proptest::proptest! {
        /// The incremental counts equal the definitions computed from scratch: distinct live
        /// domains, distinct domains that expired within the window, their union, and the
        /// domains newly failing among any set of live peers.
        #[test]
        fn counts_match_the_definitions(ops in proptest::collection::vec(op(), 1..200)) {
            let window = Duration::from_millis(1000);
            let start = Instant::now();
            let mut now = start;
            let mut d = FailureDomains::default();
            let mut live: Vec<(usize, Option<Arc<str>>)> = Vec::new();
            let mut expired: Vec<(Instant, usize, Option<Arc<str>>)> = Vec::new();
            let mut next = 0;
            for op in ops {
                match op {
                    Op::Join(h) => {
                        let dom = h.map(|h| d.intern(&format!("h{h}")));
                        d.join(dom.as_ref());
                        live.push((next, dom));
                        next += 1;
                    }
                    Op::Leave(i) if !live.is_empty() => {
                        let (_, dom) = live.remove(i % live.len());
                        d.leave(dom.as_ref());
                    }
                    Op::Expire(i) if !live.is_empty() => {
                        let (id, dom) = live.remove(i % live.len());
                        d.leave(dom.as_ref());
                        d.expired(now, dom.clone());
                        expired.push((now, id, dom));
                    }
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                    _ => {}
                }
                if let Some(w) = now.checked_sub(window) {
                    d.forget_before(w);
                    expired.retain(|(t, _, _)| *t > w);
                }
                // Each peer without a domain is a domain of its own (named by its id).
                let name = |id: usize, dom: &Option<Arc<str>>| {
                    dom.as_ref().map_or(format!("#{id}"), |d| d.to_string())
                };
                let live_set: HashSet<String> = live.iter().map(|(i, d)| name(*i, d)).collect();
                let recent_set: HashSet<String> =
                    expired.iter().map(|(_, i, d)| name(*i, d)).collect();
                proptest::prop_assert_eq!(d.live(), live_set.len());
                proptest::prop_assert_eq!(d.recent(), recent_set.len());
                proptest::prop_assert_eq!(d.population(), live_set.union(&recent_set).count());
                let failing: HashSet<String> = live
                    .iter()
                    .step_by(2)
                    .map(|(i, d)| name(*i, d))
                    .filter(|n| !recent_set.contains(n))
                    .collect();
                proptest::prop_assert_eq!(
                    d.newly_failing(live.iter().step_by(2).map(|(_, d)| d.as_ref())),
                    failing.len()
                );
            }
        }
    }

    #[test]
    fn forgetting_a_hold_clears_recent_only() {
        let mut d = FailureDomains::default();
        let t = Instant::now();
        let h = d.intern("h");
        d.join(Some(&h));
        d.expired(t, Some(h.clone()));
        d.expired(t, None);
        d.forget_recent();
        assert_eq!((d.live(), d.recent(), d.population()), (1, 0, 1));
    }
}
