//! CM01 to CM04, read from the component without running it: that it is
//! a component the host can compile, which world and version it targets,
//! what it exports and what it imports.

use std::path::Path;

use wasmtime::component::Component;

use crate::plugin::error::{GUEST_FUNCTIONS, GUEST_INTERFACE};
use crate::plugin::validate::{self, SUPPORTED_VERSIONS};
use crate::plugin::{CacheOutcome, LoadError, PluginEngine};

use super::catalogue::CheckId;
use super::format::human_bytes;
use super::result::CheckResult;

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

#[cfg(test)]
mod tests {
    use super::*;

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
