//! CM06: every export but `shutdown` answers an ordinary call.

use crate::conformance::catalogue::{CheckId, UNKNOWN_CAPABILITY};
use crate::conformance::result::CheckResult;
use crate::plugin::bindings::{Manifest, SyncRequest};

use super::capabilities::first_capability;
use super::failures::Failures;
use super::messages::message;
use super::prober::Prober;

/// CM06: each export but `shutdown` (kept for CM15) with ordinary input.
pub(crate) async fn callable(p: &Prober, manifest: &Manifest) -> CheckResult {
    let id = CheckId::Callable;
    let s = &p.sandbox;
    let mut failures = Failures::default();
    if let Err(e) = p.call(id, "manifest", s.call_manifest()).await {
        failures.push("manifest", e.to_string());
    }
    if let Err(e) = p.call(id, "state", s.state()).await {
        failures.push("state", e.to_string());
    }
    let msg = message("hello from the conformance suite", "{}");
    if let Err(e) = p.call(id, "handle-message", s.handle_message(&msg)).await {
        failures.push("handle-message", e.to_string());
    }
    let req = SyncRequest {
        peer_id: "conformance".into(),
        peer_level: manifest.consciousness_level.clamp(0.0, 1000.0) / 2.0,
        context: Vec::new(),
    };
    if let Err(e) = p.call(id, "sync", s.sync(&req)).await {
        failures.push("sync", e.to_string());
    }
    if let Err(e) = p.call(id, "evolve", s.evolve(5_000)).await {
        failures.push("evolve", e.to_string());
    }
    let (name, input) =
        first_capability(manifest).unwrap_or_else(|| (UNKNOWN_CAPABILITY.into(), "{}".into()));
    if let Err(e) = p.call(id, "invoke", s.invoke(&name, &input)).await {
        failures.push("invoke", e.to_string());
    }
    if failures.is_empty() {
        CheckResult::pass(
            id,
            "manifest, state, handle-message, sync, evolve and invoke answered ordinary calls \
             (shutdown is called last, by CM15-shutdown)",
        )
    } else {
        CheckResult::fail(id, failures.render(6, "exports"))
    }
}
