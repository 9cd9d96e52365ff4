//! CM09: `sync` with extreme and non-finite peer levels; the outcomes and
//! the state afterwards must stay finite.

use crate::conformance::catalogue::CheckId;
use crate::conformance::result::CheckResult;
use crate::plugin::bindings::{Manifest, Primitive, SyncRequest};

use super::failures::{Failures, stops_probing};
use super::prober::Prober;

/// CM09: `sync` with extreme and non-finite peer levels.
pub(crate) async fn sync_extremes(p: &Prober, manifest: &Manifest) -> CheckResult {
    let id = CheckId::SyncExtremes;
    let levels = [
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        1e308,
        -1e308,
        f64::MAX,
        f64::MIN_POSITIVE,
        0.0,
        -0.0,
        -1.0,
        -5_000.0,
        1e6,
    ];
    // The cell's own primitive names, shared back at odd but finite values.
    let context: Vec<Primitive> = manifest
        .primitives
        .iter()
        .map(|p| Primitive {
            name: p.name.clone(),
            value: 1e300,
        })
        .collect();
    let mut failures = Failures::default();
    for (i, level) in levels.iter().enumerate() {
        let req = SyncRequest {
            peer_id: if i % 2 == 0 {
                String::new()
            } else {
                "conformance".into()
            },
            peer_level: *level,
            context: if i == 3 { context.clone() } else { Vec::new() },
        };
        match p.call(id, "sync", p.sandbox.sync(&req)).await {
            Ok(outcome) => {
                let bad: Vec<String> = [
                    ("old-level", outcome.old_level),
                    ("new-level", outcome.new_level),
                    ("delta", outcome.delta),
                ]
                .iter()
                .filter(|(_, v)| !v.is_finite())
                .map(|(n, v)| format!("{n} {v}"))
                .collect();
                if !bad.is_empty() {
                    failures.push(
                        format!("peer level {level:?}"),
                        format!("answered a non-finite {}", bad.join(", ")),
                    );
                }
            }
            Err(e) => {
                let stop = stops_probing(&e);
                failures.push(format!("peer level {level:?}"), e.to_string());
                if stop {
                    break;
                }
            }
        }
    }
    if failures.is_empty() {
        match p.call(id, "state", p.sandbox.state()).await {
            Ok(state) => {
                let mut bad = Vec::new();
                if !state.consciousness_level.is_finite() {
                    bad.push(format!("level {}", state.consciousness_level));
                }
                for prim in state.primitives.iter().filter(|p| !p.value.is_finite()) {
                    bad.push(format!("primitive {:?} {}", prim.name, prim.value));
                }
                if !bad.is_empty() {
                    failures.push(
                        "the state after the syncs",
                        format!("holds non-finite values: {}", bad.join(", ")),
                    );
                }
            }
            Err(e) => failures.push("the state after the syncs", e.to_string()),
        }
    }
    if failures.is_empty() {
        CheckResult::pass(
            id,
            format!(
                "{} syncs (peer levels inf, -inf, NaN, 1e308, -1e308, max, 0, -0, negative) \
                 answered finite outcomes; the state stayed finite",
                levels.len()
            ),
        )
    } else {
        CheckResult::fail(id, failures.render(levels.len(), "syncs"))
    }
}
