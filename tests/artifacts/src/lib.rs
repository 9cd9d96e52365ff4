//! The guest components, built from source by this crate's build script,
//! and their paths.
//!
//! `build.rs` builds every guest (the guest workspace `plugins/`: the `pure`
//! and `alpha` cells and the fixtures under `tests/fixtures/`) for
//! `wasm32-wasip2` and generates one constant per component, plus the
//! `FIXTURES` list, from the one list `GUESTS` in `build.rs`: adding a
//! fixture is its crate under `tests/fixtures/` and one entry there.
//!
//! Every path is absolute and points into `<target>/wasm/components/`, where
//! `<target>` is `$CARGO_TARGET_DIR` when set (relative to the repository
//! root when relative), else the repository's `target/`. The components are
//! rebuilt when `wit/` or a guest crate changes.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
