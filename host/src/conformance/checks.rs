//! The catalogue of checks ([`CheckId`]) and the static ones: what the
//! file is, which world and version it targets, what it exports and
//! imports, its manifest, its size and how long it takes to start.

use std::path::Path;
use std::time::Duration;

use wasmtime::component::Component;

use crate::plugin::bindings::Manifest;
use crate::plugin::error::{GUEST_FUNCTIONS, GUEST_INTERFACE};
use crate::plugin::validate::{self, SUPPORTED_VERSIONS};
use crate::plugin::{CacheOutcome, LoadError, PluginEngine};

use super::report::CheckResult;

/// Components larger than this get a warning (they compile slowly).
pub const LARGE_BINARY_BYTES: u64 = 10 * 1024 * 1024;
/// A first compile slower than this gets a warning.
pub const SLOW_COMPILE: Duration = Duration::from_secs(2);
/// Instantiation (link, instantiate, first `manifest`) slower than this
/// gets a warning.
pub const SLOW_INSTANTIATE: Duration = Duration::from_millis(100);

/// Every check of the suite, with its stable id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckId {
    /// `CM01-component`
    Component,
    /// `CM02-world`
    World,
    /// `CM03-exports`
    Exports,
    /// `CM04-imports`
    Imports,
    /// `CM05-manifest`
    Manifest,
    /// `CM06-callable`
    Callable,
    /// `CM07-manifest-stable`
    ManifestStable,
    /// `CM08-messages`
    Messages,
    /// `CM09-sync-extremes`
    SyncExtremes,
    /// `CM10-unknown-capability`
    UnknownCapability,
    /// `CM11-capability-probes`
    CapabilityProbes,
    /// `CM12-evolution`
    Evolution,
    /// `CM13-cpu-deadline`
    CpuDeadline,
    /// `CM14-memory-cap`
    MemoryCap,
    /// `CM15-shutdown`
    Shutdown,
    /// `CM16-binary-size`
    BinarySize,
    /// `CM17-startup-time`
    StartupTime,
}

impl CheckId {
    /// Every check, in id order.
    pub const ALL: [CheckId; 17] = [
        CheckId::Component,
        CheckId::World,
        CheckId::Exports,
        CheckId::Imports,
        CheckId::Manifest,
        CheckId::Callable,
        CheckId::ManifestStable,
        CheckId::Messages,
        CheckId::SyncExtremes,
        CheckId::UnknownCapability,
        CheckId::CapabilityProbes,
        CheckId::Evolution,
        CheckId::CpuDeadline,
        CheckId::MemoryCap,
        CheckId::Shutdown,
        CheckId::BinarySize,
        CheckId::StartupTime,
    ];

    /// The stable id, e.g. `CM08-messages`.
    pub fn id(self) -> &'static str {
        match self {
            CheckId::Component => "CM01-component",
            CheckId::World => "CM02-world",
            CheckId::Exports => "CM03-exports",
            CheckId::Imports => "CM04-imports",
            CheckId::Manifest => "CM05-manifest",
            CheckId::Callable => "CM06-callable",
            CheckId::ManifestStable => "CM07-manifest-stable",
            CheckId::Messages => "CM08-messages",
            CheckId::SyncExtremes => "CM09-sync-extremes",
            CheckId::UnknownCapability => "CM10-unknown-capability",
            CheckId::CapabilityProbes => "CM11-capability-probes",
            CheckId::Evolution => "CM12-evolution",
            CheckId::CpuDeadline => "CM13-cpu-deadline",
            CheckId::MemoryCap => "CM14-memory-cap",
            CheckId::Shutdown => "CM15-shutdown",
            CheckId::BinarySize => "CM16-binary-size",
            CheckId::StartupTime => "CM17-startup-time",
        }
    }

    /// What the check verifies, in a few words.
    pub fn title(self) -> &'static str {
        match self {
            CheckId::Component => "the file is a WebAssembly component",
            CheckId::World => "targets the cell world at a supported version",
            CheckId::Exports => "exports every guest function with the contract's types",
            CheckId::Imports => "imports only the cell world's host interface and WASI 0.2",
            CheckId::Manifest => "the manifest follows the contract's rules",
            CheckId::Callable => "every export answers an ordinary call",
            CheckId::ManifestStable => "the manifest is the same across calls and instances",
            CheckId::Messages => "messages of many shapes are handled without trapping",
            CheckId::SyncExtremes => "sync with extreme and non-finite peer levels stays finite",
            CheckId::UnknownCapability => "an unknown capability gives the typed error",
            CheckId::CapabilityProbes => "every capability answers its example-input with JSON",
            CheckId::Evolution => "10,000 evolution steps keep the level finite",
            CheckId::CpuDeadline => "every call returns within the CPU deadline",
            CheckId::MemoryCap => "every instance stays within the memory cap",
            CheckId::Shutdown => "the shutdown hook returns in time",
            CheckId::BinarySize => "the component is not unduly large (advisory)",
            CheckId::StartupTime => "compilation and instantiation are quick (advisory)",
        }
    }

    /// Whether a failure fails the suite; advisory checks only warn.
    pub fn required(self) -> bool {
        !matches!(self, CheckId::BinarySize | CheckId::StartupTime)
    }

    /// How to fix a failure of this check.
    pub fn fix(self) -> &'static str {
        match self {
            CheckId::Component => {
                "build a component: Rust `cargo build --release --target wasm32-wasip2`, Python \
                 `componentize-py -d wit -w cell componentize app -o cell.wasm`; check that the \
                 path names the built .wasm"
            }
            CheckId::World => {
                "generate the bindings from the wit/ of a cellmesh 0.1 release for the world \
                 `cell` (wit_bindgen::generate!({ path: \"wit\", world: \"cell\" }) or \
                 componentize-py -d wit -w cell)"
            }
            CheckId::Exports => {
                "implement every function of the `guest` interface of wit/cell.wit (manifest, \
                 state, handle-message, sync, evolve, invoke, shutdown) with the signatures of \
                 the same WIT version"
            }
            CheckId::Imports => {
                "import only the `host` interface of the cell world and WASI 0.2: drop other \
                 WIT dependencies; this host provides nothing else, so it cannot link the plugin"
            }
            CheckId::Manifest => {
                "fix `manifest`: cell-id 1 to 64 characters of [A-Za-z0-9._-], a non-empty \
                 cell-type, unique non-empty capability names, a finite consciousness-level in \
                 [0, 1000], finite primitive values"
            }
            CheckId::Callable => {
                "make every export return normally for ordinary input: a Rust panic or a Python \
                 exception escaping an export is a trap; return a default or a typed error"
            }
            CheckId::ManifestStable => {
                "build the manifest from constants only: not from state, time, randomness or a \
                 call counter"
            }
            CheckId::Messages => {
                "handle-message must accept any message: empty, 1 MiB, any unicode or control \
                 characters, metadata that is not JSON; never panic or raise, answer none or a \
                 reply"
            }
            CheckId::SyncExtremes => {
                "test peer-level with is_finite() / math.isfinite() before using it, clamp \
                 extreme values, never store a non-finite level; old-level, new-level and delta \
                 must be finite"
            }
            CheckId::UnknownCapability => {
                "for a name the manifest does not declare, invoke must return \
                 `unknown-capability(name)` (Rust: Err(CapabilityError::UnknownCapability(name)); \
                 Python: raise Err(CapabilityError_UnknownCapability(name)))"
            }
            CheckId::CapabilityProbes => {
                "give every capability an example-input that is a JSON document it accepts, and \
                 answer with JSON text; report bad input as `invalid-input`, never trap"
            }
            CheckId::Evolution => {
                "keep the level finite in evolve: clamp it, cap elapsed-ms (a host may pass a \
                 long pause), avoid divisions by zero"
            }
            CheckId::CpuDeadline => {
                "every call must return well within the deadline: bound loops and the work done \
                 per call, spread long work over evolve steps"
            }
            CheckId::MemoryCap => {
                "keep the instance's memory under the cap: bound buffers, caches and the number \
                 of messages kept"
            }
            CheckId::Shutdown => {
                "shutdown must return promptly: no waiting, loops or heavy work (the host \
                 bounds it)"
            }
            CheckId::BinarySize => {
                "large components compile slowly on a host's first start: Rust opt-level = \"s\", \
                 lto, strip; a Python component carries its interpreter (about 18 MB), which is \
                 expected"
            }
            CheckId::StartupTime => {
                "the first start compiles the component and the host caches the result, so later \
                 starts are fast; a smaller component compiles faster; slow instantiation means \
                 heavy start-up work in the component"
            }
        }
    }
}

/// `1 capability`, `2 capabilities`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Formats a size for messages.
pub(crate) fn human_bytes(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// Formats a duration in milliseconds for messages.
pub(crate) fn human_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// CM01 for a file that loaded.
pub(crate) fn component_passed(size: Option<u64>, cache: CacheOutcome) -> CheckResult {
    let how = match cache {
        CacheOutcome::Hit => "loaded from the compile cache",
        _ => "compiled",
    };
    CheckResult::pass(
        CheckId::Component,
        format!(
            "a WebAssembly component{}, {how}",
            size.map(|s| format!(" ({})", human_bytes(s)))
                .unwrap_or_default()
        ),
    )
}

/// CM01 for a file that did not load: the loader's own words.
pub(crate) fn component_failed(error: &LoadError) -> CheckResult {
    CheckResult::fail(CheckId::Component, error.to_string())
}

/// The package version of a `cellmesh:cell/guest@VERSION` export name.
fn cellmesh_version(name: &str) -> Option<&str> {
    name.strip_prefix("cellmesh:cell/")
        .and_then(|rest| rest.split_once('@'))
        .map(|(_, version)| version)
}

/// CM02 and CM03 from the component's exports. Returns the results and
/// whether the plugin can go on to be linked.
pub(crate) fn world_and_exports(
    path: &Path,
    engine: &PluginEngine,
    component: &Component,
) -> (CheckResult, Option<CheckResult>) {
    match validate::check_exports(path, engine.engine(), component) {
        Ok(()) => (
            CheckResult::pass(
                CheckId::World,
                format!("exports `{GUEST_INTERFACE}` (this host runs {SUPPORTED_VERSIONS})"),
            ),
            Some(CheckResult::pass(
                CheckId::Exports,
                format!(
                    "exports all {} guest functions: {}",
                    GUEST_FUNCTIONS.len(),
                    GUEST_FUNCTIONS.join(", ")
                ),
            )),
        ),
        Err(error @ LoadError::MissingExport { .. }) => (
            CheckResult::pass(CheckId::World, "exports the cell world's guest interface"),
            Some(CheckResult::fail(CheckId::Exports, error.to_string())),
        ),
        Err(LoadError::WrongWorld { path, found }) => {
            let versions: Vec<String> = found
                .iter()
                .filter_map(|f| cellmesh_version(f))
                .map(str::to_owned)
                .collect();
            let lead = if versions.is_empty() {
                "not a cell: it does not export the cell world's guest interface".to_owned()
            } else {
                format!(
                    "targets cellmesh:cell version {}, but this host supports \
                     cellmesh:cell {SUPPORTED_VERSIONS} (it is built against 0.1.0)",
                    versions.join(", ")
                )
            };
            let error = LoadError::WrongWorld { path, found };
            let mut result = CheckResult::fail(CheckId::World, format!("{lead}: {error}"));
            if !versions.is_empty() {
                result = result.with_fix(
                    "rebuild the plugin against the wit/ of a cellmesh 0.1 release (package \
                     cellmesh:cell@0.1.0), or run it on a host that supports its version",
                );
            }
            (result, None)
        }
        Err(error) => (CheckResult::fail(CheckId::World, error.to_string()), None),
    }
}

/// How the host treats one import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImportKind {
    /// The cell world's own interfaces.
    Cell,
    /// WASI 0.2, granted (clocks, random, stdio, ...).
    Wasi,
    /// WASI 0.2 filesystem or sockets: linked, but nothing is granted.
    WasiUngranted,
    /// Anything else: the host cannot provide it.
    Foreign,
}

fn import_kind(name: &str) -> ImportKind {
    let versioned = |prefix: &str, version: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('@'))
            .is_some_and(|(_, v)| v.starts_with(version))
    };
    if versioned("cellmesh:cell/", "0.1.") {
        ImportKind::Cell
    } else if versioned("wasi:", "0.2.") {
        if name.starts_with("wasi:filesystem/") || name.starts_with("wasi:sockets/") {
            ImportKind::WasiUngranted
        } else {
            ImportKind::Wasi
        }
    } else {
        ImportKind::Foreign
    }
}

/// CM04: the component's imports, then whether this host's linker can
/// satisfy them. `Ok` carries the result; `Err` means the plugin cannot be
/// linked (the result is a failure).
pub(crate) fn imports(
    path: &Path,
    engine: &PluginEngine,
    component: &Component,
) -> Result<CheckResult, CheckResult> {
    let names: Vec<String> = component
        .component_type()
        .imports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    let of = |kind: ImportKind| -> Vec<&str> {
        names
            .iter()
            .filter(|n| import_kind(n) == kind)
            .map(String::as_str)
            .collect()
    };
    let foreign = of(ImportKind::Foreign);
    let ungranted = of(ImportKind::WasiUngranted);
    let wasi_count = of(ImportKind::Wasi).len() + ungranted.len();
    let cell = of(ImportKind::Cell);
    let link = engine.linker().instantiate_pre(component).err().map(|e| {
        LoadError::Link {
            path: path.into(),
            detail: format!("{e:#}"),
        }
        .to_string()
    });
    if !foreign.is_empty() || link.is_some() {
        let mut message = String::new();
        if !foreign.is_empty() {
            message.push_str(&format!(
                "imports what this host does not provide (only cellmesh:cell {SUPPORTED_VERSIONS} \
                 and WASI 0.2): {}",
                foreign.join(", ")
            ));
        }
        if let Some(link) = link {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&link);
        }
        return Err(CheckResult::fail(CheckId::Imports, message));
    }
    let cell_text = if cell.is_empty() {
        "no cellmesh interface".to_owned()
    } else {
        cell.join(", ")
    };
    if ungranted.is_empty() {
        return Ok(CheckResult::pass(
            CheckId::Imports,
            format!("imports {cell_text} and {wasi_count} WASI 0.2 interfaces"),
        ));
    }
    Ok(CheckResult::warn(
        CheckId::Imports,
        format!(
            "imports {cell_text} and {wasi_count} WASI 0.2 interfaces, filesystem or sockets \
             among them ({}): the host links them but grants nothing (no preopened \
             directories, no network), so such calls fail at run time",
            ungranted.join(", ")
        ),
        "nothing to do if the language runtime imports them unused (componentize-py does); a \
         cell that needs files or the network must use the host interface instead \
         (config-get, mesh-peers, send-message)",
    ))
}

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

/// CM16: the file's size.
pub(crate) fn binary_size(size: u64) -> CheckResult {
    if size > LARGE_BINARY_BYTES {
        return CheckResult::warn(
            CheckId::BinarySize,
            format!(
                "{} ({size} bytes) is over {}: expect a slow first start while the host \
                 compiles it",
                human_bytes(size),
                human_bytes(LARGE_BINARY_BYTES)
            ),
            CheckId::BinarySize.fix(),
        );
    }
    CheckResult::pass(
        CheckId::BinarySize,
        format!(
            "{} (warning above {})",
            human_bytes(size),
            human_bytes(LARGE_BINARY_BYTES)
        ),
    )
}

/// CM17: compile (or cache load) and instantiation times.
pub(crate) fn startup_time(
    cache: CacheOutcome,
    compile: Duration,
    instantiate: Option<Duration>,
) -> CheckResult {
    let compiled = cache != CacheOutcome::Hit;
    let what = if compiled {
        "compile"
    } else {
        "load from the compile cache"
    };
    let mut text = format!("{what} {}", human_ms(compile));
    if let Some(instantiate) = instantiate {
        text.push_str(&format!(
            ", link + instantiate + first manifest {}",
            human_ms(instantiate)
        ));
    }
    let slow_compile = compiled && compile > SLOW_COMPILE;
    let slow_instantiate = instantiate.is_some_and(|i| i > SLOW_INSTANTIATE);
    if slow_compile || slow_instantiate {
        let mut limits = Vec::new();
        if slow_compile {
            limits.push(format!("compile over {}", human_ms(SLOW_COMPILE)));
        }
        if slow_instantiate {
            limits.push(format!("instantiation over {}", human_ms(SLOW_INSTANTIATE)));
        }
        return CheckResult::warn(
            CheckId::StartupTime,
            format!("{text}: {}", limits.join(", ")),
            CheckId::StartupTime.fix(),
        );
    }
    CheckResult::pass(CheckId::StartupTime, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<&str> = CheckId::ALL.iter().map(|c| c.id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn imports_are_classified() {
        assert_eq!(import_kind("cellmesh:cell/host@0.1.0"), ImportKind::Cell);
        assert_eq!(import_kind("cellmesh:cell/host@9.0.0"), ImportKind::Foreign);
        assert_eq!(import_kind("wasi:io/streams@0.2.3"), ImportKind::Wasi);
        assert_eq!(
            import_kind("wasi:filesystem/preopens@0.2.0"),
            ImportKind::WasiUngranted
        );
        assert_eq!(
            import_kind("wasi:sockets/tcp@0.2.0"),
            ImportKind::WasiUngranted
        );
        assert_eq!(import_kind("wasi:http/types@0.3.0"), ImportKind::Foreign);
        assert_eq!(import_kind("acme:db/query"), ImportKind::Foreign);
    }

    #[test]
    fn versions_are_read_from_export_names() {
        assert_eq!(cellmesh_version("cellmesh:cell/guest@9.0.0"), Some("9.0.0"));
        assert_eq!(cellmesh_version("wasi:cli/run@0.2.0"), None);
    }
}
