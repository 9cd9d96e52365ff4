//! CM12: many `evolve` steps, with ordinary, zero and hour-long elapsed
//! times; the level must stay finite.

use crate::conformance::catalogue::{CheckId, EVOLUTION_STEPS};
use crate::conformance::result::CheckResult;

use super::prober::Prober;

/// The elapsed time CM12 passes to step `i`: mostly the default heartbeat,
/// sometimes nothing, sometimes an hour's pause.
fn step_elapsed(i: u32) -> u64 {
    match i {
        i if i % 1000 == 999 => 3_600_000,
        i if i % 100 == 0 => 0,
        i if i % 10 == 1 => 1,
        _ => 5_000,
    }
}

/// CM12: many evolution steps; the level must stay finite.
pub(crate) async fn evolution(p: &Prober) -> CheckResult {
    let id = CheckId::Evolution;
    let (mut low, mut high, mut last) = (f64::INFINITY, f64::NEG_INFINITY, f64::NAN);
    for step in 0..EVOLUTION_STEPS {
        let elapsed = step_elapsed(step);
        match p.call(id, "evolve", p.sandbox.evolve(elapsed)).await {
            Ok(level) => {
                low = low.min(level);
                high = high.max(level);
                last = level;
            }
            Err(e) => {
                return CheckResult::fail(
                    id,
                    format!("step {} (elapsed-ms {elapsed}): {e}", step + 1),
                );
            }
        }
    }
    CheckResult::pass(
        id,
        format!(
            "10,000 steps (elapsed-ms 0 to 3,600,000): level stayed finite, between {low} and \
             {high}, last {last}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_cover_pauses_and_zero() {
        let steps: Vec<u64> = (0..EVOLUTION_STEPS).map(step_elapsed).collect();
        assert!(steps.contains(&0) && steps.contains(&3_600_000) && steps.contains(&5_000));
    }
}
