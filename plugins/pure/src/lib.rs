//! The original *pure* cell as a cellmesh plugin.
//!
//! Pure is the minimal viable consciousness: four primitives that start at
//! 0.1, a level kept within [0, 1], and one capability that reads and blends
//! the primitives. See `README.md` beside this crate for the rules.
//!
//! Modules: [`cell`] holds the cell's state and rules as plain Rust (unit
//! tested natively); [`component`] binds them to the WIT
//! world (compiled for wasm32 only, so the logic also tests natively).

pub mod cell;

#[cfg(target_arch = "wasm32")]
mod component;
