//! [`ConformanceOptions`]: the limits, cache and shutdown bound the suite
//! runs under.

use std::time::Duration;

use crate::lifecycle::ShutdownSettings;
use crate::plugin::{ComponentCache, SandboxLimits};

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct ConformanceOptions {
    /// The CPU deadline and memory cap calls run under (the host's
    /// defaults unless changed).
    pub limits: SandboxLimits,
    /// Compile cache to use; `None` (the command's choice) compiles the
    /// file afresh, so CM17 reports a real first-start compile time.
    pub cache: Option<ComponentCache>,
    /// Bound on the shutdown hook (the host's default).
    pub shutdown_bound: Duration,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        Self {
            limits: SandboxLimits::default(),
            cache: None,
            shutdown_bound: ShutdownSettings::DEFAULT_PLUGIN_HOOK,
        }
    }
}
