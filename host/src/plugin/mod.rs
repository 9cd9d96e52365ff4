//! Loading and running cell plugins, usable on its own (the host and the
//! conformance suite both build on it).
//!
//! - [`engine`]: the one [`PluginEngine`] (engine + linker + epoch ticker).
//! - [`cache`]: compiled components on disk, keyed by content and engine.
//! - [`validate`]: header, world/version/export and manifest checks.
//! - [`sandbox`]: [`PluginSandbox`], one plugin under a CPU deadline and a
//!   memory cap, its instance replaced after any failure.
//! - [`state`]: each store's data and the `host` imports it serves.
//! - [`error`]: [`LoadError`] (file refused) and [`PluginError`] (call failed).
//! - [`bindings`]: generated from `wit/cell.wit`.

pub mod bindings;
pub mod cache;
pub mod engine;
pub mod error;
pub mod sandbox;
pub mod state;
pub mod validate;

pub use cache::{CacheOutcome, ComponentCache};
pub use engine::PluginEngine;
pub use error::{GUEST_FUNCTIONS, GUEST_INTERFACE, LoadError, PluginError};
pub use sandbox::{
    LoadOptions, LoadReport, PluginSandbox, SandboxLimits, SandboxStats, load_component,
};
pub use state::{HostServices, IsolatedServices, SendFuture};
