//! Loading and running cell plugins, usable on its own (the host and the
//! conformance suite both build on it; nothing here reads the host's
//! command line).
//!
//! - [`engine`]: the one [`PluginEngine`] (engine + linker + epoch ticker).
//! - [`cache`]: compiled components on disk, keyed by content and engine.
//! - [`validate`]: header, world/version/export and manifest checks.
//! - [`builder`]: [`SandboxBuilder`] ([`PluginSandbox::builder`]): file or
//!   compiled component to a checked, linked, instantiated sandbox.
//! - [`sandbox`]: [`PluginSandbox`], one plugin under a CPU deadline and a
//!   memory cap, its instance replaced after any failure.
//! - `instance`: the live instance, one call at a time through a guard;
//!   [`SandboxLimits`] and [`SandboxStats`].
//! - [`state`]: each store's data and the `host` imports it serves.
//! - [`error`]: [`LoadError`] (file refused) and [`PluginError`] (call failed).
//! - [`bindings`]: generated from `wit/cell.wit`.

pub mod bindings;
pub mod builder;
pub mod cache;
pub mod engine;
pub mod error;
mod instance;
pub mod sandbox;
pub mod state;
pub mod validate;

pub use builder::{SandboxBuilder, load_component};
pub use cache::{CacheOutcome, ComponentCache};
pub use engine::PluginEngine;
pub use error::{GUEST_FUNCTIONS, GUEST_INTERFACE, LoadError, PluginError};
pub use sandbox::{LoadReport, PluginSandbox, SandboxLimits, SandboxStats};
pub use state::{HostServices, IsolatedServices, SendFuture};
