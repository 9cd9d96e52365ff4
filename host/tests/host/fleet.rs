//! Many cells in one host, end to end: the `cell-host` binary started with
//! `--cells FILE.toml` against a discovery in this process.
//!
//! - [`crowd`]: 200 pure cells and the hostile fixtures: registration,
//!   per-cell addresses, batched heartbeats, isolation, `/cells`, shutdown;
//! - [`failures`]: a cell that cannot load or that discovery refuses fails
//!   alone; a host whose every cell fails exits non-zero;
//! - [`reaping`]: `kill -9` of a host of 1,000 cells, reaped within the TTL;
//! - [`harness`]: the child process, `cells.toml`, discovery's metrics.
//!
//! These tests run one at a time ([`harness::crowd_turn`]) and print their
//! figures (`cargo test fleet -- --nocapture`).

mod crowd;
mod failures;
mod harness;
mod reaping;
