//! Test support for cellmesh: the guest components, built from source by
//! this crate's build script, and their paths.
//!
//! Every path is absolute and points into `target/wasm/components/`. The
//! build script rebuilds the components when `wit/`, `plugins/` or
//! `tests/fixtures/` change. The cross-crate integration tests live in
//! `tests/tests/`.

/// The pure cell (`plugins/pure`).
pub const PURE_WASM: &str = env!("CELLMESH_PURE_WASM");
/// The alpha cell (`plugins/alpha`).
pub const ALPHA_WASM: &str = env!("CELLMESH_ALPHA_WASM");
/// A cell whose `handle-message`, `sync` and `invoke` loop forever.
pub const FIXTURE_LOOP_WASM: &str = env!("CELLMESH_FIXTURE_LOOP_WASM");
/// A cell whose `handle-message`, `sync` and `invoke` trap.
pub const FIXTURE_TRAP_WASM: &str = env!("CELLMESH_FIXTURE_TRAP_WASM");
/// A cell whose `handle-message`, `sync` and `invoke` allocate without bound.
pub const FIXTURE_ALLOC_WASM: &str = env!("CELLMESH_FIXTURE_ALLOC_WASM");
/// A cell whose manifest is invalid: bad id, duplicate and empty services,
/// NaN level.
pub const FIXTURE_BAD_MANIFEST_WASM: &str = env!("CELLMESH_FIXTURE_BAD_MANIFEST_WASM");
/// A component exporting `cellmesh:cell/guest@9.0.0`.
pub const FIXTURE_OTHER_VERSION_WASM: &str = env!("CELLMESH_FIXTURE_OTHER_VERSION_WASM");
/// A component exporting `cellmesh:cell/guest@0.1.0` with only `manifest`.
pub const FIXTURE_MISSING_EXPORT_WASM: &str = env!("CELLMESH_FIXTURE_MISSING_EXPORT_WASM");
/// A WASI command component (`wasi:cli/run`), not a cell at all.
pub const FIXTURE_OTHER_WORLD_WASM: &str = env!("CELLMESH_FIXTURE_OTHER_WORLD_WASM");
/// A text file named `.wasm`.
pub const FIXTURE_NOT_WASM: &str = env!("CELLMESH_FIXTURE_NOT_WASM");

/// Every hostile or malformed fixture, with a short name.
pub const FIXTURES: &[(&str, &str)] = &[
    ("loop", FIXTURE_LOOP_WASM),
    ("trap", FIXTURE_TRAP_WASM),
    ("alloc", FIXTURE_ALLOC_WASM),
    ("bad-manifest", FIXTURE_BAD_MANIFEST_WASM),
    ("other-version", FIXTURE_OTHER_VERSION_WASM),
    ("missing-export", FIXTURE_MISSING_EXPORT_WASM),
    ("other-world", FIXTURE_OTHER_WORLD_WASM),
    ("not-wasm", FIXTURE_NOT_WASM),
];
