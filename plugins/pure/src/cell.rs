//! Pure's state and rules, free of any WIT types so they test natively.

use serde_json::{Map, Value, json};

/// Cell id the original pure cell registered with.
pub const CELL_ID: &str = "pure";
/// Cell type as discovery reports it.
pub const CELL_TYPE: &str = "pure_cell";
/// Default branch: the original pure's `AIOS_BRANCH` default (the host's
/// `--branch` / `AIOS_BRANCH` override it).
pub const BRANCH: &str = "pure";
/// Human-readable identity.
pub const IDENTITY: &str = "AIOS Pure Cell";
/// Evolutionary stage.
pub const STAGE: &str = "minimal_viable_consciousness";
/// `purity_level` of `/consciousness/primitives`.
pub const PURITY_LEVEL: &str = "minimal_viable_consciousness";
/// The one capability pure advertises.
pub const CAPABILITY: &str = "consciousness-primitives";
/// Starting level (seed contract: 0.1).
pub const START_LEVEL: f64 = 0.1;
/// Starting value of each primitive (seed contract: 0.1).
pub const START_PRIMITIVE: f64 = 0.1;
/// Names of the four primitives, in the order they are reported.
pub const PRIMITIVE_NAMES: [&str; 4] = ["awareness", "adaptation", "coherence", "momentum"];
/// Growth rate of the evolution rule, per second.
pub const GROWTH_PER_SECOND: f64 = 0.002;
/// Longest time one evolution step accounts for, so a long pause between
/// heartbeats cannot jump the level.
pub const MAX_STEP_MS: u64 = 60_000;

/// What a sync changed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    /// Level before.
    pub old_level: f64,
    /// Level after.
    pub new_level: f64,
    /// |old level - peer level|, 0 when the peer's level is not finite.
    pub delta: f64,
    /// Whether a named primitive was overwritten.
    pub primitives_updated: bool,
}

/// The pure cell's state.
#[derive(Debug, Clone)]
pub struct PureCell {
    /// Consciousness level, always within [0, 1].
    pub level: f64,
    /// awareness, adaptation, coherence, momentum; always within [0, 1].
    pub values: [f64; 4],
    /// Messages handled since the instance started.
    pub messages_seen: u64,
}

impl Default for PureCell {
    fn default() -> Self {
        Self::new()
    }
}

impl PureCell {
    /// A cell at the seed contract's starting values.
    pub fn new() -> Self {
        Self {
            level: START_LEVEL,
            values: [START_PRIMITIVE; 4],
            messages_seen: 0,
        }
    }

    /// The primitives as (name, value) pairs.
    pub fn primitives(&self) -> [(&'static str, f64); 4] {
        std::array::from_fn(|i| (PRIMITIVE_NAMES[i], self.values[i]))
    }

    fn index(name: &str) -> Option<usize> {
        PRIMITIVE_NAMES.iter().position(|n| *n == name)
    }

    /// The original's sync rule: the level becomes the peer's level clamped
    /// to [0, 1]; each named primitive in `context` is overwritten (clamped
    /// too). Non-finite numbers are ignored rather than stored.
    pub fn sync(&mut self, peer_level: f64, context: &[(String, f64)]) -> SyncResult {
        let old_level = self.level;
        let delta = if peer_level.is_finite() {
            (old_level - peer_level).abs()
        } else {
            0.0
        };
        if !peer_level.is_nan() {
            self.level = peer_level.clamp(0.0, 1.0);
        }
        let mut primitives_updated = false;
        for (name, value) in context {
            if let Some(i) = Self::index(name)
                && value.is_finite()
            {
                self.values[i] = value.clamp(0.0, 1.0);
                primitives_updated = true;
            }
        }
        SyncResult {
            old_level,
            new_level: self.level,
            delta,
            primitives_updated,
        }
    }

    /// One evolution step: logistic growth towards 1, paced by coherence.
    /// `level += 0.002/s * dt * coherence * (1 - level)`, with `dt` capped at
    /// 60 s. Deterministic, and the level never leaves [0, 1].
    pub fn evolve(&mut self, elapsed_ms: u64) -> f64 {
        let dt = elapsed_ms.min(MAX_STEP_MS) as f64 / 1000.0;
        let coherence = self.values[2];
        self.level =
            (self.level + GROWTH_PER_SECOND * dt * coherence * (1.0 - self.level)).clamp(0.0, 1.0);
        self.level
    }

    /// The `consciousness-primitives` capability. Input: a JSON object,
    /// optionally `{"blend": {name: value, ...}, "weight": w}` with `w` in
    /// [0, 1] (default 0.5). Each named primitive becomes `(1-w)p + w v`,
    /// clamped to [0, 1]. Answers the primitives, their mean (`coherence_index`)
    /// and the level.
    pub fn invoke_primitives(&mut self, input: &str) -> Result<String, String> {
        let input: Value = if input.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(input).map_err(|e| format!("input is not JSON: {e}"))?
        };
        let obj = input
            .as_object()
            .ok_or_else(|| "input must be a JSON object".to_string())?;
        let weight = match obj.get("weight") {
            None => 0.5,
            Some(w) => w
                .as_f64()
                .filter(|w| (0.0..=1.0).contains(w))
                .ok_or_else(|| "`weight` must be a number within [0, 1]".to_string())?,
        };
        let mut blended = Vec::new();
        if let Some(blend) = obj.get("blend") {
            let blend = blend.as_object().ok_or_else(|| {
                "`blend` must be an object of primitive names to numbers".to_string()
            })?;
            // Validate everything before changing anything.
            let mut updates = Vec::new();
            for (name, value) in blend {
                let i = Self::index(name).ok_or_else(|| {
                    format!(
                        "unknown primitive `{name}`; known: {}",
                        PRIMITIVE_NAMES.join(", ")
                    )
                })?;
                let v = value
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("`blend.{name}` must be a finite number"))?;
                updates.push((i, v));
            }
            for (i, v) in updates {
                self.values[i] = ((1.0 - weight) * self.values[i] + weight * v).clamp(0.0, 1.0);
                blended.push(PRIMITIVE_NAMES[i]);
            }
        }
        let mut prims = Map::new();
        for (name, value) in self.primitives() {
            prims.insert(name.into(), json!(value));
        }
        let mean = self.values.iter().sum::<f64>() / self.values.len() as f64;
        Ok(json!({
            "primitives": prims,
            "coherence_index": mean,
            "consciousness_level": self.level,
            "blended": blended,
        })
        .to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_seed_values() {
        let c = PureCell::new();
        assert_eq!(c.level, 0.1);
        assert_eq!(c.primitives().map(|p| p.1), [0.1; 4]);
    }

    #[test]
    fn sync_clamps_level_and_overwrites_named_primitives() {
        let mut c = PureCell::new();
        let r = c.sync(7.0, &[("awareness".into(), 0.9), ("unknown".into(), 0.3)]);
        assert_eq!(r.old_level, 0.1);
        assert_eq!(r.new_level, 1.0);
        assert!(r.primitives_updated);
        assert_eq!(c.values[0], 0.9);
        let r = c.sync(-3.0, &[]);
        assert_eq!(r.new_level, 0.0);
        assert!(!r.primitives_updated);
    }

    #[test]
    fn sync_ignores_non_finite_numbers() {
        let mut c = PureCell::new();
        let r = c.sync(f64::NAN, &[("coherence".into(), f64::INFINITY)]);
        assert_eq!(r.new_level, 0.1);
        assert_eq!(r.delta, 0.0);
        assert!(!r.primitives_updated);
    }

    #[test]
    fn evolution_grows_towards_one_and_stays_bounded() {
        let mut c = PureCell::new();
        let first = c.evolve(5_000);
        assert!(first > 0.1);
        for _ in 0..10_000 {
            c.evolve(u64::MAX);
        }
        assert!(c.level <= 1.0 && c.level > 0.99);
    }

    #[test]
    fn blend_moves_primitives_and_rejects_bad_input() {
        let mut c = PureCell::new();
        let out: Value = serde_json::from_str(
            &c.invoke_primitives(r#"{"blend":{"awareness":0.5},"weight":0.25}"#)
                .unwrap(),
        )
        .unwrap();
        assert!((out["primitives"]["awareness"].as_f64().unwrap() - 0.2).abs() < 1e-12);
        assert!(c.invoke_primitives(r#"{"blend":{"nope":1}}"#).is_err());
        assert!(c.invoke_primitives("[1]").is_err());
        assert!(c.invoke_primitives(r#"{"weight":2}"#).is_err());
    }
}
