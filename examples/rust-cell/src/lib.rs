//! `counter`: an example third-party cellmesh cell written in Rust.
//!
//! It counts: words, lines and characters of text it is given (capability
//! `word-count`), the messages it receives (each answered with the counts of
//! its content), and its own activity, which drives its consciousness level.
//! It also echoes JSON back (capability `echo`). See `README.md` beside this
//! crate for the rules.
//!
//! Modules: [`cell`] holds the state and rules as plain Rust (unit tested
//! natively with `cargo test`); [`json`] is the small JSON reader and writer
//! the capabilities use (the crate depends on nothing but wit-bindgen);
//! `component` binds the cell to the WIT world (compiled for wasm32 only).

pub mod cell;
pub mod json;

#[cfg(target_arch = "wasm32")]
mod component;
