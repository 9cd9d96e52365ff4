//! Alpha's consciousness: level, primitives, sync records and evolution.

use std::collections::VecDeque;

/// Cell id the original alpha registered with.
pub const CELL_ID: &str = "alpha";
/// Cell type as discovery reports it.
pub const CELL_TYPE: &str = "alpha_cell";
/// Human-readable identity (seed contract).
pub const IDENTITY: &str = "AIOS Cell Alpha";
/// Evolutionary stage (seed contract).
pub const STAGE: &str = "hierarchical_intelligence";
/// The `server` of alpha's `/health` (seed contract), given to the host as
/// the manifest label `server`.
pub const SERVER: &str = "Cell Alpha Communication Server";
/// Starting level (seed contract).
pub const START_LEVEL: f64 = 5.2;
/// Primitives and their starting values (seed contract).
pub const START_PRIMITIVES: [(&str, f64); 4] = [
    ("awareness", 4.5),
    ("adaptation", 0.85),
    ("coherence", 0.92),
    ("momentum", 0.75),
];
/// Syncs remembered (the original kept the last 50).
pub const SYNC_HISTORY: usize = 50;
/// Upper bound of alpha's level.
pub const MAX_LEVEL: f64 = 10.0;
/// Intrinsic growth per second of evolution, scaled by momentum.
pub const GROWTH_PER_SECOND: f64 = 0.0005;
/// Share of the gap to the synced peers' mean level closed per second,
/// scaled by adaptation.
pub const PULL_PER_SECOND: f64 = 0.002;
/// Longest time one evolution step accounts for.
pub const MAX_STEP_MS: u64 = 60_000;

/// One remembered sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRecord {
    /// Peer that synced.
    pub peer_id: String,
    /// Its level then.
    pub peer_level: f64,
}

/// Alpha's state.
#[derive(Debug, Clone)]
pub struct AlphaCell {
    /// Consciousness level, within [0, 10].
    pub level: f64,
    /// awareness, adaptation, coherence, momentum.
    pub values: [f64; 4],
    /// The last [`SYNC_HISTORY`] syncs, oldest first.
    pub syncs: VecDeque<SyncRecord>,
    /// Messages handled since the instance started.
    pub messages_seen: u64,
}

impl Default for AlphaCell {
    fn default() -> Self {
        Self::new()
    }
}

impl AlphaCell {
    /// Alpha at the seed contract's starting values.
    pub fn new() -> Self {
        Self {
            level: START_LEVEL,
            values: START_PRIMITIVES.map(|p| p.1),
            syncs: VecDeque::new(),
            messages_seen: 0,
        }
    }

    /// The primitives as (name, value) pairs.
    pub fn primitives(&self) -> [(&'static str, f64); 4] {
        std::array::from_fn(|i| (START_PRIMITIVES[i].0, self.values[i]))
    }

    /// The original's sync: remember the peer, answer the absolute delta;
    /// alpha's own level changes only through evolution. A non-finite peer
    /// level is not recorded and answers a delta of 0.
    pub fn sync(&mut self, peer_id: &str, peer_level: f64) -> f64 {
        if !peer_level.is_finite() {
            return 0.0;
        }
        if self.syncs.len() == SYNC_HISTORY {
            self.syncs.pop_front();
        }
        self.syncs.push_back(SyncRecord {
            peer_id: peer_id.to_string(),
            peer_level,
        });
        (self.level - peer_level).abs()
    }

    /// Mean level of the remembered syncs, if any.
    pub fn peer_mean(&self) -> Option<f64> {
        (!self.syncs.is_empty())
            .then(|| self.syncs.iter().map(|s| s.peer_level).sum::<f64>() / self.syncs.len() as f64)
    }

    /// One evolution step, deterministic in its inputs:
    /// `level += dt * (0.0005 * momentum + 0.002 * adaptation * (peer_mean - level))`,
    /// with `dt` the elapsed seconds capped at 60 and the result clamped to
    /// [0, 10]. Alone, alpha grows slowly; synced peers pull it towards their
    /// mean level.
    pub fn evolve(&mut self, elapsed_ms: u64) -> f64 {
        let dt = elapsed_ms.min(MAX_STEP_MS) as f64 / 1000.0;
        let momentum = self.values[3];
        let adaptation = self.values[1];
        let pull = self.peer_mean().map_or(0.0, |mean| {
            PULL_PER_SECOND * adaptation * (mean - self.level)
        });
        let next = self.level + dt * (GROWTH_PER_SECOND * momentum + pull);
        self.level = next.clamp(0.0, MAX_LEVEL);
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_records_and_answers_delta() {
        let mut c = AlphaCell::new();
        assert!((c.sync("pure", 0.1) - 5.1).abs() < 1e-12);
        assert_eq!(c.level, 5.2);
        assert_eq!(c.sync("x", f64::INFINITY), 0.0);
        assert_eq!(c.syncs.len(), 1);
        for i in 0..100 {
            c.sync(&format!("p{i}"), 1.0);
        }
        assert_eq!(c.syncs.len(), SYNC_HISTORY);
    }

    #[test]
    fn level_evolves_and_stays_bounded() {
        let mut c = AlphaCell::new();
        let next = c.evolve(5_000);
        assert!(next > START_LEVEL, "alpha's level must not be frozen");
        let mut d = AlphaCell::new();
        d.sync("low", 0.0);
        assert!(d.evolve(5_000) < START_LEVEL, "a low peer pulls alpha down");
        for _ in 0..10_000 {
            c.evolve(u64::MAX);
        }
        assert!(c.level.is_finite() && c.level <= MAX_LEVEL);
    }
}
