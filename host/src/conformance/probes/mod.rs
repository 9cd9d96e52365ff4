//! The behavioural checks: calls into a loaded plugin with ordinary, odd
//! and hostile input, each call timed and recorded so that the CPU and
//! memory checks can judge every call the suite made.
//!
//! - [`prober`](mod@prober): [`Prober`], the plugin plus the log of
//!   every call.
//! - [`failures`](mod@failures): how a probe gathers and words failures,
//!   and when it stops calling an export.
//! - [`manifest`](mod@manifest): CM05 (the manifest's rules) and CM07 (its
//!   stability).
//! - [`callable`](mod@callable): CM06, an ordinary call to every export.
//! - [`messages`](mod@messages): CM08, `handle-message` with many shapes
//!   of message.
//! - [`sync`](mod@sync): CM09, `sync` with extreme peer levels.
//! - [`capabilities`](mod@capabilities): CM10 (an unknown capability) and
//!   CM11 (each declared capability with its example input).
//! - [`evolution`](mod@evolution): CM12, many `evolve` steps.
//! - [`shutdown`](mod@shutdown): CM15, the shutdown hook.
//! - [`limits`](mod@limits): CM13, CM14 and CM18, the call log against the
//!   CPU deadline, the memory cap and the wall-clock bound.

mod callable;
mod capabilities;
mod evolution;
mod failures;
mod limits;
mod manifest;
mod messages;
mod prober;
mod shutdown;
mod sync;

pub(crate) use callable::callable;
pub(crate) use capabilities::{capability_probes, unknown_capability};
pub(crate) use evolution::evolution;
pub(crate) use limits::{cpu_deadline, memory_cap, wall_clock};
pub(crate) use manifest::{manifest, manifest_stable};
pub(crate) use messages::messages;
pub(crate) use prober::{CallRecord, Prober};
pub(crate) use shutdown::shutdown;
pub(crate) use sync::sync_extremes;
