//! The plugin conformance suite behind `cell-host conformance PLUGIN.wasm`:
//! tells a plugin author, without network or Rust knowledge, whether a
//! `.wasm` is a good citizen of the mesh.
//!
//! - [`catalogue`]: [`CheckId`] and the table of every check's constant
//!   data (id, title, required or advisory, fix), plus the thresholds.
//! - `format`: sizes, durations, counted nouns, one-line text.
//! - [`result`]: [`CheckResult`] and [`Status`], one check's outcome.
//! - [`report`]: [`Report`], the whole run, and its text, JSON and JUnit
//!   XML forms.
//! - `component`: CM01 to CM04, read from the component without running
//!   it.
//! - `probes`: the behavioural checks, calls into the loaded plugin (CM05
//!   to CM12, CM15), and CM13, CM14 and CM18 over the log of those calls.
//! - `advisory`: CM16 and CM17, size and start-up time.
//! - `options`: [`ConformanceOptions`]; `error`: [`ConformanceError`].
//! - `suite`: [`run`], every check in order, and the suite's one sandbox
//!   construction.
//! - `command`: [`run_command`], the `cell-host conformance` command.
//!
//! Each module uses only modules listed above it.
//!
//! [`run`] loads the plugin the way the host does (same engine, linker,
//! CPU deadline, wall-clock bound, send budget and memory cap; no cache
//! unless asked) and runs every check: a plugin that sleeps or hangs in an
//! export costs the suite one wall-clock bound per export and check, never
//! more. A plugin whose manifest breaks the rules still gets the
//! behavioural checks (the load does not validate the manifest); a file
//! that cannot be loaded at all gets the check that names what is wrong, and
//! every check that depends on it is reported as skipped.
//!
//! # The checks
//!
//! Ids are stable (a new check gets the next number). Every check is
//! required except the two advisory ones, which can only warn. A warning never fails the suite.
//!
//! | id | checks | fails (or warns) when |
//! |---|---|---|
//! | `CM01-component` | the file is a WebAssembly component the host can compile | not readable, not wasm, a core module, or invalid |
//! | `CM02-world` | it exports the cell world's `guest` interface at a supported version (`cellmesh:cell` 0.1.x) | another world, or another version (both versions named) |
//! | `CM03-exports` | the `guest` interface has all seven functions with the contract's types | a function is missing (named) or has another type |
//! | `CM04-imports` | imports only `cellmesh:cell` 0.1.x and WASI 0.2 | anything else (fail); WASI filesystem or sockets: **warn**, the host links them but grants nothing |
//! | `CM05-manifest` | id of 1 to 128 `[A-Za-z0-9._:-]`, non-empty type, at most 64 unique non-empty services, text fields within discovery's limits, finite level in [0, 1000], finite primitives | any rule broken (all listed); no capabilities: **warn** |
//! | `CM06-callable` | `manifest`, `state`, `handle-message`, `sync`, `evolve`, `invoke` answer ordinary calls | a call traps, times out or runs out of memory |
//! | `CM07-manifest-stable` | the manifest is identical on repeated calls, after other calls, and in a fresh instance | a field changes (named) |
//! | `CM08-messages` | `handle-message` with empty, 1 MiB, unicode, control-character, not-JSON-metadata and other messages | any of them traps, times out or runs out of memory |
//! | `CM09-sync-extremes` | `sync` with peer levels inf, -inf, NaN, ±1e308, max, 0, -0, negative | a call fails, an outcome's old-level, new-level or delta is not finite, or the state is not finite afterwards |
//! | `CM10-unknown-capability` | `invoke` of an undeclared name | anything but `unknown-capability` (a trap, success, another error) |
//! | `CM11-capability-probes` | each declared capability with its own `example-input` | the input is not JSON, the call fails or returns an error, or the output is not JSON |
//! | `CM12-evolution` | 10,000 `evolve` steps (elapsed-ms 0 to 3,600,000) | a step fails or returns a non-finite level |
//! | `CM13-cpu-deadline` | every call the suite made, against the CPU deadline | a call was interrupted (export and check named); slowest call over half the deadline: **warn** |
//! | `CM14-memory-cap` | every call the suite made, against the memory cap | an instance hit the cap (export and check named) |
//! | `CM15-shutdown` | the `shutdown` hook, called last | it fails or does not return within the host's bound (1 s) |
//! | `CM16-binary-size` | advisory: the file's size | over 10 MiB: **warn** |
//! | `CM17-startup-time` | advisory: compile and instantiation times | compile over 2 s or link + instantiate + first manifest over 100 ms: **warn** |
//! | `CM18-wall-clock` | every call the suite made, against the wall-clock bound (1.75 s by default) | a call slept, waited or hung past it (export and check named), or found the instance busy |
//!
//! A check whose prerequisite failed is `SKIP` and names it; the suite
//! fails then too. Exit status of the command: 0 when every required check
//! passed, 1 otherwise, 2 for a usage error or when the report cannot be
//! written.

pub mod catalogue;
pub mod report;
pub mod result;

mod advisory;
mod command;
mod component;
mod error;
mod format;
mod options;
mod probes;
mod suite;

pub use catalogue::CheckId;
pub use command::run_command;
pub use error::ConformanceError;
pub use options::ConformanceOptions;
pub use report::{Counts, Report};
pub use result::{CheckResult, Status};
pub use suite::run;
