//! CM05 and CM07: the manifest read at load against the contract's rules,
//! and the manifest read again, after other calls and in a fresh instance.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::conformance::catalogue::CheckId;
use crate::conformance::format::count;
use crate::conformance::result::CheckResult;
use crate::plugin::LoadError;
use crate::plugin::bindings::Manifest;
use crate::plugin::validate;

use super::failures::Failures;
use super::prober::Prober;

/// CM05: the contract's rules, with the loader's wording.
pub(crate) fn manifest(path: &Path, manifest: &Manifest) -> CheckResult {
    let problems = validate::manifest_problems(manifest);
    if !problems.is_empty() {
        let error = LoadError::Manifest {
            path: path.into(),
            problems,
        };
        return CheckResult::fail(CheckId::Manifest, error.to_string());
    }
    let summary = format!(
        "cell `{}` of type `{}`, {}, level {}, {}",
        manifest.cell_id,
        manifest.cell_type,
        count(manifest.capabilities.len(), "capability", "capabilities"),
        manifest.consciousness_level,
        count(manifest.primitives.len(), "primitive", "primitives")
    );
    if manifest.capabilities.is_empty() {
        return CheckResult::warn(
            CheckId::Manifest,
            format!("{summary}: it declares no capabilities, so discovery lists no services"),
            "declare the capabilities the cell offers (each with an example-input)",
        );
    }
    CheckResult::pass(CheckId::Manifest, summary)
}

/// The manifest fields that differ between two manifests (compared by
/// their debug form, so NaN equals NaN).
fn manifest_diff(a: &Manifest, b: &Manifest) -> Vec<&'static str> {
    macro_rules! differing {
        ($($field:ident => $name:literal),* $(,)?) => {{
            let mut fields = Vec::new();
            $(
                if format!("{:?}", a.$field) != format!("{:?}", b.$field) {
                    fields.push($name);
                }
            )*
            fields
        }};
    }
    differing!(
        cell_id => "cell-id",
        cell_type => "cell-type",
        branch => "branch",
        identity => "identity",
        evolutionary_stage => "evolutionary-stage",
        health_status => "health-status",
        capabilities => "capabilities",
        consciousness_level => "consciousness-level",
        primitives => "primitives",
        labels => "labels",
    )
}

/// CM07: the manifest again in the same instance (after other calls), and
/// in a fresh instance. Returns the result and the time a fresh instance
/// took to answer its first `manifest`.
pub(crate) async fn manifest_stable(
    p: &Prober,
    loaded: &Manifest,
) -> (CheckResult, Option<Duration>) {
    let id = CheckId::ManifestStable;
    let mut failures = Failures::default();
    for attempt in ["a second call", "a third call"] {
        match p.call(id, "manifest", p.sandbox.call_manifest()).await {
            Ok(m) => {
                let diff = manifest_diff(loaded, &m);
                if !diff.is_empty() {
                    failures.push(attempt, format!("{} changed", diff.join(", ")));
                }
            }
            Err(e) => failures.push(attempt, e.to_string()),
        }
    }
    p.sandbox.discard_instance().await;
    let started = Instant::now();
    let mut fresh = None;
    match p.call(id, "manifest", p.sandbox.call_manifest()).await {
        Ok(m) => {
            fresh = Some(started.elapsed());
            let diff = manifest_diff(loaded, &m);
            if !diff.is_empty() {
                failures.push(
                    "a fresh instance",
                    format!("{} differ from the first instance's", diff.join(", ")),
                );
            }
        }
        Err(e) => failures.push("a fresh instance", e.to_string()),
    }
    let result = if failures.is_empty() {
        CheckResult::pass(
            id,
            "identical on three calls in one instance (after other calls) and in a fresh instance",
        )
    } else {
        CheckResult::fail(id, failures.render(3, "manifest reads"))
    };
    (result, fresh)
}
