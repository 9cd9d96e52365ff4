//! The behavioural checks: calls into a loaded plugin with ordinary, odd
//! and hostile input, each call timed and recorded so that the CPU and
//! memory checks can judge every call the suite made.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::plugin::bindings::{CapabilityError, Manifest, Message, Primitive, SyncRequest};
use crate::plugin::{PluginError, PluginSandbox};

use super::checks::{CheckId, count, human_ms};
use super::report::CheckResult;

/// Evolution steps run by CM12.
pub const EVOLUTION_STEPS: u32 = 10_000;
/// Capability name CM10 invokes; no real cell declares it.
pub const UNKNOWN_CAPABILITY: &str = "cellmesh-conformance.no-such-capability";

/// One call the suite made.
#[derive(Debug, Clone)]
pub(crate) struct CallRecord {
    /// The check that made it.
    pub check: CheckId,
    /// The export called.
    pub export: &'static str,
    /// Wall time of the call (instantiation included when it made one).
    pub elapsed: Duration,
    /// How it failed, if it did.
    pub failure: Option<PluginError>,
}

/// A loaded plugin plus the log of every call made to it.
pub(crate) struct Prober {
    /// The plugin.
    pub sandbox: PluginSandbox,
    calls: Mutex<Vec<CallRecord>>,
}

impl Prober {
    /// Wraps a loaded plugin.
    pub fn new(sandbox: PluginSandbox) -> Self {
        Self {
            sandbox,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a call made outside the prober (the load's `manifest`).
    pub fn record(&self, record: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Runs and records one call.
    async fn call<T>(
        &self,
        check: CheckId,
        export: &'static str,
        call: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let started = Instant::now();
        let result = call.await;
        self.record(CallRecord {
            check,
            export,
            elapsed: started.elapsed(),
            failure: result.as_ref().err().cloned(),
        });
        result
    }
}

/// Failures gathered by a check, rendered as one line: the first in full,
/// the rest by the input that caused them.
#[derive(Default)]
struct Failures(Vec<(String, String)>);

impl Failures {
    fn push(&mut self, input: impl Into<String>, what: impl Into<String>) {
        self.0.push((input.into(), what.into()));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn render(&self, total: usize, noun: &str) -> String {
        let (first_input, first_what) = &self.0[0];
        let mut text = format!(
            "{} of {total} {noun} failed; {first_input}: {first_what}",
            self.0.len()
        );
        if self.0.len() > 1 {
            let rest: Vec<&str> = self.0[1..].iter().map(|(i, _)| i.as_str()).collect();
            text.push_str(&format!("; also: {}", rest.join(", ")));
        }
        text
    }
}

/// Whether the suite should stop calling an export after this failure: a
/// timed-out export costs a whole deadline per call.
fn stops_probing(error: &PluginError) -> bool {
    matches!(error, PluginError::Timeout { .. })
}

/// A typical message.
fn message(content: &str, metadata: &str) -> Message {
    Message {
        from_cell: "conformance".into(),
        content: content.into(),
        message_type: "text".into(),
        priority: "normal".into(),
        metadata: metadata.into(),
    }
}

/// The first capability with a usable name, and its example input.
fn first_capability(manifest: &Manifest) -> Option<(String, String)> {
    manifest
        .capabilities
        .iter()
        .find(|c| !c.name.trim().is_empty())
        .map(|c| (c.name.clone(), c.example_input.clone()))
}

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

/// The messages CM08 sends, by name.
fn message_shapes() -> Vec<(&'static str, Message)> {
    let mib: String = "cellmesh conformance 0123456789 "
        .chars()
        .cycle()
        .take(1 << 20)
        .collect();
    let control: String = (0u8..0x20)
        .chain([0x7f])
        .map(char::from)
        .collect::<String>();
    vec![
        (
            "an empty message (every field empty)",
            Message {
                from_cell: String::new(),
                content: String::new(),
                message_type: String::new(),
                priority: String::new(),
                metadata: String::new(),
            },
        ),
        ("a plain text message", message("hello", "{}")),
        ("a 1 MiB message", message(&mib, "{}")),
        (
            "a unicode message",
            message(
                "h\u{e9}llo \u{4e16}\u{754c} \u{1f30d} \u{202e}rtl\u{202c} e\u{301} \u{200d}\u{fe0f}",
                r#"{"lang":"\u00e9\u4e16"}"#,
            ),
        ),
        (
            "control characters in every field",
            Message {
                from_cell: control.clone(),
                content: format!("{control}\u{1b}[31mred\u{1b}[0m"),
                message_type: control.clone(),
                priority: control.clone(),
                metadata: control.clone(),
            },
        ),
        ("metadata that is not JSON", message("hi", "{not json")),
        ("truncated JSON metadata", message("hi", r#"{"a": [1, 2"#)),
        (
            "JSON content",
            message(r#"{"command":"status","n":1}"#, "null"),
        ),
        (
            "an unusual type and priority",
            Message {
                message_type: "\u{1f4a5}".repeat(256),
                priority: "urgent".into(),
                ..message("hi", "{}")
            },
        ),
    ]
}

/// CM08: `handle-message` with many shapes of message.
pub(crate) async fn messages(p: &Prober) -> CheckResult {
    let id = CheckId::Messages;
    let shapes = message_shapes();
    let total = shapes.len();
    let mut failures = Failures::default();
    for (name, msg) in &shapes {
        if let Err(e) = p
            .call(id, "handle-message", p.sandbox.handle_message(msg))
            .await
        {
            let stop = stops_probing(&e);
            failures.push(*name, e.to_string());
            if stop {
                break;
            }
        }
    }
    if failures.is_empty() {
        CheckResult::pass(
            id,
            format!(
                "{total} messages handled: empty, 1 MiB, unicode, control characters, metadata \
                 that is not JSON, ..."
            ),
        )
    } else {
        CheckResult::fail(id, failures.render(total, "messages"))
    }
}

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

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
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

/// CM15: the shutdown hook, bounded by `bound` (the host's bound).
pub(crate) async fn shutdown(p: &Prober, bound: Duration) -> CheckResult {
    let id = CheckId::Shutdown;
    let started = Instant::now();
    match tokio::time::timeout(bound, p.call(id, "shutdown", p.sandbox.shutdown())).await {
        Ok(Ok(())) => CheckResult::pass(
            id,
            format!(
                "returned in {} (the host allows {})",
                human_ms(started.elapsed()),
                human_ms(bound)
            ),
        ),
        Ok(Err(e)) => CheckResult::fail(id, e.to_string()),
        Err(_) => CheckResult::fail(
            id,
            format!(
                "did not return within the host's bound of {}",
                human_ms(bound)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_include_the_documented_ones() {
        let shapes = message_shapes();
        assert!(shapes.iter().any(|(_, m)| m.content.len() == 1 << 20));
        assert!(shapes.iter().any(|(_, m)| m.content.is_empty()));
        assert!(
            shapes
                .iter()
                .any(|(_, m)| serde_json::from_str::<Value>(&m.metadata).is_err())
        );
    }

    #[test]
    fn steps_cover_pauses_and_zero() {
        let steps: Vec<u64> = (0..EVOLUTION_STEPS).map(step_elapsed).collect();
        assert!(steps.contains(&0) && steps.contains(&3_600_000) && steps.contains(&5_000));
    }
}
