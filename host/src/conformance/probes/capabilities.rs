//! CM10 and CM11: `invoke` of a capability nobody declares, and of each
//! declared capability with its own `example-input`.

use std::collections::HashSet;

use serde_json::Value;

use crate::conformance::catalogue::{CheckId, UNKNOWN_CAPABILITY};
use crate::conformance::format::{count, truncate};
use crate::conformance::result::CheckResult;
use crate::plugin::bindings::{CapabilityError, Manifest};

use super::failures::{Failures, stops_probing};
use super::prober::Prober;

/// The first capability with a usable name, and its example input.
pub(super) fn first_capability(manifest: &Manifest) -> Option<(String, String)> {
    manifest
        .capabilities
        .iter()
        .find(|c| !c.name.trim().is_empty())
        .map(|c| (c.name.clone(), c.example_input.clone()))
}

/// CM10: `invoke` of a capability nobody declares.
pub(crate) async fn unknown_capability(p: &Prober) -> CheckResult {
    let id = CheckId::UnknownCapability;
    match p
        .call(id, "invoke", p.sandbox.invoke(UNKNOWN_CAPABILITY, "{}"))
        .await
    {
        Ok(Err(CapabilityError::UnknownCapability(_))) => CheckResult::pass(
            id,
            format!("`{UNKNOWN_CAPABILITY}` answered unknown-capability"),
        ),
        Ok(Err(other)) => CheckResult::fail(
            id,
            format!("`{UNKNOWN_CAPABILITY}` answered {other:?} instead of unknown-capability"),
        ),
        Ok(Ok(output)) => CheckResult::fail(
            id,
            format!(
                "`{UNKNOWN_CAPABILITY}` succeeded (output {:?}) instead of answering \
                 unknown-capability",
                truncate(&output, 80)
            ),
        ),
        Err(e) => CheckResult::fail(id, format!("`{UNKNOWN_CAPABILITY}`: {e}")),
    }
}

/// CM11: each declared capability with its own `example-input`.
pub(crate) async fn capability_probes(p: &Prober, manifest: &Manifest) -> CheckResult {
    let id = CheckId::CapabilityProbes;
    let mut seen = HashSet::new();
    let capabilities: Vec<_> = manifest
        .capabilities
        .iter()
        .filter(|c| !c.name.trim().is_empty() && seen.insert(c.name.clone()))
        .collect();
    if capabilities.is_empty() {
        return CheckResult::pass(id, "no capabilities declared: nothing to probe");
    }
    let mut failures = Failures::default();
    for capability in &capabilities {
        let name = format!("`{}`", capability.name);
        if serde_json::from_str::<Value>(&capability.example_input).is_err() {
            failures.push(
                name.clone(),
                format!(
                    "its example-input {:?} is not a JSON document",
                    truncate(&capability.example_input, 60)
                ),
            );
        }
        match p
            .call(
                id,
                "invoke",
                p.sandbox
                    .invoke(&capability.name, &capability.example_input),
            )
            .await
        {
            Ok(Ok(output)) => {
                if serde_json::from_str::<Value>(&output).is_err() {
                    failures.push(
                        name,
                        format!(
                            "answered output that is not JSON: {:?}",
                            truncate(&output, 60)
                        ),
                    );
                }
            }
            Ok(Err(error)) => failures.push(
                name,
                format!("refused its own example-input with {error:?}"),
            ),
            Err(e) => {
                let stop = stops_probing(&e);
                failures.push(name, e.to_string());
                if stop {
                    break;
                }
            }
        }
    }
    let total = capabilities.len();
    if failures.is_empty() {
        let names: Vec<&str> = capabilities.iter().map(|c| c.name.as_str()).collect();
        CheckResult::pass(
            id,
            format!(
                "{} answered {} example-input with JSON: {}",
                count(total, "capability", "capabilities"),
                if total == 1 { "its" } else { "their" },
                names.join(", ")
            ),
        )
    } else {
        CheckResult::fail(id, failures.render(total, "capabilities"))
    }
}
