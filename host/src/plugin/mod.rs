//! Loading and running cell plugins, usable on its own (the host and the
//! conformance suite both build on it; nothing here reads the host's
//! command line).
//!
//! - [`engine`]: the one [`PluginEngine`] (engine + linker + epoch ticker).
//! - [`cache`]: compiled components on disk, keyed by content and engine.
//! - [`validate`]: header, world/version/export and manifest checks.
//! - [`builder`]: [`SandboxBuilder`] ([`PluginSandbox::builder`]): file or
//!   compiled component to a checked, linked, instantiated sandbox.
//! - [`sandbox`]: [`PluginSandbox`], one plugin under the bounds of
//!   [`SandboxLimits`], its instance replaced after any failure, each call
//!   on a task of its own.
//! - `instance`: the live instance, one call at a time through a guard,
//!   under the CPU deadline, the wall-clock bound and the memory cap.
//! - [`limits`]: [`SandboxLimits`], every bound and its default.
//! - [`stats`]: [`SandboxStats`], and [`Resets`] by [`ResetCause`].
//! - [`output`]: size limits on every value a plugin returns.
//! - [`state`]: each store's data and the `host` imports it serves (the
//!   send budget among them).
//! - `limiter`: the resource limiter (memory cap on the sum of memories,
//!   counts of instances, tables and memories).
//! - [`log`]: `host.log` escaping and rate limit.
//! - [`error`]: [`LoadError`] (file refused) and [`PluginError`] (call failed).
//! - [`bindings`]: generated from `wit/cell.wit`.

pub mod bindings;
pub mod builder;
pub mod cache;
pub mod engine;
pub mod error;
mod instance;
mod limiter;
pub mod limits;
pub mod log;
pub mod output;
pub mod sandbox;
pub mod state;
pub mod stats;
pub mod validate;

pub use builder::{SandboxBuilder, load_component};
pub use cache::{CacheOutcome, ComponentCache};
pub use engine::PluginEngine;
pub use error::{GUEST_FUNCTIONS, GUEST_INTERFACE, LoadError, PluginError};
pub use limits::SandboxLimits;
pub use sandbox::{LoadReport, PluginSandbox};
pub use state::{HostServices, IsolatedServices, SendFuture};
pub use stats::{LastReset, ResetCause, Resets, SandboxStats};
