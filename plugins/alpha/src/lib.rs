//! The original *alpha* cell as a cellmesh plugin.
//!
//! Alpha is the analytic cell: five capabilities that do real work, syncs
//! that it remembers, and a level that evolves (the original's was frozen).
//! See `README.md` beside this crate for every capability's input and output.
//!
//! Modules: [`cell`] (level, primitives, syncs, evolution), [`analysis`]
//! (`code-analysis`), [`geometry`] (`geometric-engine`), [`archive`]
//! (`tachyonic-archival`); [`component`] binds them to the WIT
//! world (compiled for wasm32 only, so the logic also tests natively).

pub mod analysis;
pub mod archive;
pub mod cell;
pub mod geometry;

#[cfg(target_arch = "wasm32")]
mod component;
