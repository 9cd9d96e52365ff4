//! Checks made before a plugin runs: is the file a component, does it
//! target our world and version with every export, is its manifest sound.
//!
//! The manifest is held to the one set of limits in
//! [`cellmesh_wire::limits`], the ones discovery applies to what the host
//! registers from it (cell id, `type`, `branch`, `services`), so a plugin
//! that loads is one discovery accepts; fields that stay in the host are
//! held to the limits of [`super::output`].

use std::collections::HashSet;
use std::path::Path;

use cellmesh_wire::limits::{CELL_ID_MAX_LEN, LEVEL_MAX, SERVICES_MAX, is_valid_cell_id};

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::Manifest;
use super::error::{GUEST_FUNCTIONS, LoadError};
use super::output::{
    DESCRIPTION_MAX_BYTES, EXAMPLE_INPUT_MAX_BYTES, label_problems, primitive_problems,
    too_long_bytes, too_long_chars,
};

/// Longest cell id the contract allows: discovery's
/// ([`cellmesh_wire::limits::CELL_ID_MAX_LEN`]).
pub const MAX_CELL_ID_LEN: usize = CELL_ID_MAX_LEN;
/// The characters a cell id may have, for messages.
pub const CELL_ID_CHARS: &str = "[A-Za-z0-9._:-]";
/// Largest starting level the contract allows.
pub const MAX_LEVEL: f64 = LEVEL_MAX;
/// The `cellmesh:cell` package versions this host runs.
pub const SUPPORTED_VERSIONS: &str = "0.1.x";

/// What the first eight bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A component-model binary.
    Component,
    /// A core module.
    CoreModule,
    /// Not WebAssembly at all.
    NotWasm,
}

/// Classifies a file by its header (magic number, version and layer).
pub fn wasm_kind(bytes: &[u8]) -> WasmKind {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return WasmKind::NotWasm;
    }
    // Bytes 6..8 are the layer: 0 for core modules, 1 for components.
    match bytes[6..8] {
        [0, 0] => WasmKind::CoreModule,
        _ => WasmKind::Component,
    }
}

/// Refuses a file that is not a component before compiling it.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    match wasm_kind(bytes) {
        WasmKind::Component => Ok(()),
        WasmKind::CoreModule => Err(LoadError::CoreModule { path: path.into() }),
        WasmKind::NotWasm => Err(LoadError::NotWasm { path: path.into() }),
    }
}

/// Whether an export name is a version of the guest interface this host
/// supports (`cellmesh:cell/guest@0.1.x`).
pub fn is_supported_guest(name: &str) -> bool {
    name.strip_prefix("cellmesh:cell/guest@0.1.")
        .is_some_and(|patch| !patch.is_empty() && patch.chars().all(|c| c.is_ascii_digit()))
}

/// Checks that the component exports the guest interface, at a supported
/// version, with every function of the contract.
pub fn check_exports(path: &Path, engine: &Engine, component: &Component) -> Result<(), LoadError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    for (name, export) in ty.exports(engine) {
        if !is_supported_guest(name) {
            found.push(name.to_owned());
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = export.ty else {
            return Err(LoadError::Link {
                path: path.into(),
                detail: format!("export `{name}` is not an interface instance"),
            });
        };
        let present: HashSet<&str> = instance.exports(engine).map(|(n, _)| n).collect();
        let missing: Vec<String> = GUEST_FUNCTIONS
            .iter()
            .filter(|f| !present.contains(*f))
            .map(|f| (*f).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(LoadError::MissingExport {
                path: path.into(),
                interface: name.to_owned(),
                missing,
            });
        }
        return Ok(());
    }
    Err(LoadError::WrongWorld {
        path: path.into(),
        found,
    })
}

/// Whether `id` is a valid cell id: 1 to [`MAX_CELL_ID_LEN`] characters of
/// [`CELL_ID_CHARS`], exactly what discovery accepts.
pub fn valid_cell_id(id: &str) -> bool {
    is_valid_cell_id(id)
}

/// Every rule of the contract the manifest breaks (empty when sound).
pub fn manifest_problems(manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    if !valid_cell_id(&manifest.cell_id) {
        problems.push(format!(
            "cell-id {:?} must be 1 to {MAX_CELL_ID_LEN} characters from {CELL_ID_CHARS}",
            manifest.cell_id
        ));
    }
    if manifest.cell_type.trim().is_empty() {
        problems.push("cell-type must not be empty (discovery reports it as `type`)".to_owned());
    }
    // Text fields: discovery's limit for those it receives, the same for
    // those the host serves.
    for (field, value) in [
        ("cell-type", &manifest.cell_type),
        ("branch", &manifest.branch),
        ("identity", &manifest.identity),
        ("evolutionary-stage", &manifest.evolutionary_stage),
        ("health-status", &manifest.health_status),
    ] {
        problems.extend(too_long_chars(field, value));
    }
    let count = manifest.capabilities.len();
    if count > SERVICES_MAX {
        problems.push(format!(
            "{count} capabilities (services): discovery accepts at most {SERVICES_MAX}"
        ));
    }
    let mut seen = HashSet::new();
    for capability in &manifest.capabilities {
        let name = &capability.name;
        if name.trim().is_empty() {
            problems.push("a capability (service) has an empty name".to_owned());
        } else if !seen.insert(name.as_str()) {
            problems.push(format!(
                "capability (service) {name:?} is listed more than once"
            ));
        }
        problems.extend(too_long_chars("a capability (service) name", name));
        problems.extend(too_long_bytes(
            &format!("the description of capability {:?}", short(name)),
            &capability.description,
            DESCRIPTION_MAX_BYTES,
        ));
        problems.extend(too_long_bytes(
            &format!("the example-input of capability {:?}", short(name)),
            &capability.example_input,
            EXAMPLE_INPUT_MAX_BYTES,
        ));
    }
    let level = manifest.consciousness_level;
    if !level.is_finite() {
        problems.push(format!(
            "consciousness-level {level} is not a finite number"
        ));
    } else if !(0.0..=MAX_LEVEL).contains(&level) {
        problems.push(format!(
            "consciousness-level {level} is outside [0, {MAX_LEVEL}]"
        ));
    }
    for primitive in &manifest.primitives {
        if primitive.name.is_empty() {
            problems.push("a primitive has an empty name".to_owned());
        }
        if !primitive.value.is_finite() {
            problems.push(format!(
                "primitive {:?} has the non-finite value {}",
                primitive.name, primitive.value
            ));
        }
    }
    problems.extend(primitive_problems("primitives", &manifest.primitives));
    problems.extend(label_problems("labels", &manifest.labels));
    problems
}

/// The first 32 characters of `text`, for messages.
fn short(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_distinguishes_components_modules_and_text() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0"), WasmKind::CoreModule);
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0"), WasmKind::Component);
        assert_eq!(wasm_kind(b"hello world"), WasmKind::NotWasm);
        assert_eq!(wasm_kind(b""), WasmKind::NotWasm);
    }

    #[test]
    fn cell_ids_follow_the_contract() {
        assert!(valid_cell_id("alpha"));
        assert!(valid_cell_id("alpha-1.b_2"));
        assert!(valid_cell_id("zone:alpha"));
        assert!(valid_cell_id(&"x".repeat(128)));
        assert!(!valid_cell_id(""));
        assert!(!valid_cell_id("has space"));
        assert!(!valid_cell_id(&"x".repeat(129)));
    }

    #[test]
    fn only_0_1_x_guest_versions_are_supported() {
        assert!(is_supported_guest("cellmesh:cell/guest@0.1.0"));
        assert!(is_supported_guest("cellmesh:cell/guest@0.1.7"));
        assert!(!is_supported_guest("cellmesh:cell/guest@9.0.0"));
        assert!(!is_supported_guest("cellmesh:cell/guest@0.2.0"));
        assert!(!is_supported_guest("cellmesh:cell/guest"));
    }
}
