//! Typed errors of the plugin API: why a file was refused, why a call failed.

use std::path::PathBuf;
use std::time::Duration;

/// The interface every plugin must export.
pub const GUEST_INTERFACE: &str = "cellmesh:cell/guest@0.1.0";

/// The functions [`GUEST_INTERFACE`] must contain.
pub const GUEST_FUNCTIONS: &[&str] = &[
    "manifest",
    "state",
    "handle-message",
    "sync",
    "evolve",
    "invoke",
    "shutdown",
];

/// Why a plugin file was refused at load time. Each message says exactly
/// what is wrong with the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {error}")]
    Read {
        /// The plugin path.
        path: PathBuf,
        /// The I/O failure.
        error: std::io::Error,
    },
    /// The file does not start with the WebAssembly magic number.
    #[error("{path} is not a WebAssembly file (it does not start with the `\\0asm` header)")]
    NotWasm {
        /// The plugin path.
        path: PathBuf,
    },
    /// The file is a core module, not a component.
    #[error(
        "{path} is a core WebAssembly module, not a component: build it for wasm32-wasip2 \
         (or wrap it with `wasm-tools component new`) so that it targets the world \
         `cellmesh:cell/cell` and exports `{GUEST_INTERFACE}`"
    )]
    CoreModule {
        /// The plugin path.
        path: PathBuf,
    },
    /// The component did not validate or compile.
    #[error("{path} is not a valid WebAssembly component: {detail}")]
    Invalid {
        /// The plugin path.
        path: PathBuf,
        /// What the validator said.
        detail: String,
    },
    /// The component does not export the guest interface at a supported version.
    #[error(
        "{path} does not target the cell world this host runs: expected an export of \
         `{GUEST_INTERFACE}`, found {}",
        describe_found(found)
    )]
    WrongWorld {
        /// The plugin path.
        path: PathBuf,
        /// What the component exports instead.
        found: Vec<String>,
    },
    /// The guest interface lacks functions.
    #[error(
        "{path} exports `{interface}` but lacks {}: {}",
        if missing.len() == 1 { "the function" } else { "the functions" },
        missing.join(", ")
    )]
    MissingExport {
        /// The plugin path.
        path: PathBuf,
        /// The interface as exported.
        interface: String,
        /// Functions that are missing.
        missing: Vec<String>,
    },
    /// The component imports something the host does not provide, or an
    /// export has the wrong type.
    #[error("{path} cannot be linked by this host: {detail}")]
    Link {
        /// The plugin path.
        path: PathBuf,
        /// What did not match.
        detail: String,
    },
    /// The manifest breaks the contract's rules.
    #[error("{path} has an invalid manifest: {}", problems.join("; "))]
    Manifest {
        /// The plugin path.
        path: PathBuf,
        /// Every rule broken.
        problems: Vec<String>,
    },
    /// A call made while loading (`manifest`) failed.
    #[error("{path}: {failure}")]
    Call {
        /// The plugin path.
        path: PathBuf,
        /// The failure.
        failure: PluginError,
    },
    /// The engine could not be built.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
}

fn describe_found(found: &[String]) -> String {
    if found.is_empty() {
        "no interface exports at all".to_owned()
    } else {
        found
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a call into a plugin failed. After a trap, a deadline, a
/// wall-clock timeout or the memory cap the instance is discarded and the
/// next call gets a fresh one; after [`PluginError::InvalidOutput`] it is
/// kept; [`PluginError::Busy`] never reached it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The call ran past its wall-clock bound (it slept, waited on
    /// `send-message` or was starved) and was dropped; the instance is
    /// replaced.
    #[error(
        "plugin call exceeded its wall-clock bound of {} ms (in `{export}`); it was stopped \
         and the plugin's instance replaced",
        limit.as_millis()
    )]
    WallTimeout {
        /// The export called.
        export: &'static str,
        /// The bound.
        limit: Duration,
    },
    /// The instance stayed busy with other calls past the wall-clock
    /// bound; the call was not made.
    #[error(
        "plugin is busy: its instance stayed taken for {} ms (calling `{export}`); try again later",
        waited.as_millis()
    )]
    Busy {
        /// The export that was to be called.
        export: &'static str,
        /// How long the call waited.
        waited: Duration,
    },
    /// The call ran past its CPU deadline and was interrupted.
    #[error("plugin exceeded its CPU deadline of {} ms (in `{export}`)", limit.as_millis())]
    Timeout {
        /// The export called.
        export: &'static str,
        /// The deadline.
        limit: Duration,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("plugin exceeded its memory cap of {limit_mib} MiB (in `{export}`)")]
    MemoryExceeded {
        /// The export called.
        export: &'static str,
        /// The cap in MiB.
        limit_mib: u64,
    },
    /// The call trapped (a panic, an `unreachable`, an out-of-bounds access...).
    #[error("plugin trapped: {detail} (in `{export}`)")]
    Trapped {
        /// The export called.
        export: &'static str,
        /// The trap and, when the plugin wrote one, its last stderr words.
        detail: String,
    },
    /// A fresh instance could not be created.
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
    /// The call returned a value the contract forbids.
    #[error("plugin returned an invalid value from `{export}`: {detail}")]
    InvalidOutput {
        /// The export called.
        export: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl PluginError {
    /// A short machine-readable kind: `timeout` (CPU deadline),
    /// `wall_timeout`, `busy`, `memory`, `trap`, `instantiate`,
    /// `invalid_output`.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::WallTimeout { .. } => "wall_timeout",
            PluginError::Busy { .. } => "busy",
            PluginError::Timeout { .. } => "timeout",
            PluginError::MemoryExceeded { .. } => "memory",
            PluginError::Trapped { .. } => "trap",
            PluginError::Instantiate(_) => "instantiate",
            PluginError::InvalidOutput { .. } => "invalid_output",
        }
    }

    /// How long a client should wait before trying again (the `Retry-After`
    /// of a busy answer): the wait, in whole seconds, at least one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PluginError::Busy { waited, .. } => Some(Duration::from_secs(
                waited.as_secs_f64().ceil().max(1.0) as u64,
            )),
            _ => None,
        }
    }
}
