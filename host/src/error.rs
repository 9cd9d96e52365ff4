//! Errors at the crate's boundaries: [`Error`] for starting and running a
//! host; [`ApiError`], the HTTP answers, lives with the API
//! ([`crate::api`]) and is re-exported here under its former path.
//! Plugin-level errors live in [`crate::plugin::error`], a library API of
//! its own.

use crate::config::ConfigError;
use crate::plugin::LoadError;

pub use crate::api::ApiError;

/// Why a host could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin file was refused.
    #[error("plugin refused: {0}")]
    Load(LoadError),
    /// The command line or environment is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// The HTTP server failed.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// Discovery refused the cell's registration at start (400, 413 or
    /// 422: a field too long, say); no retry can cure it.
    #[error(
        "discovery refused the registration of cell `{cell_id}`: {detail}; fix the plugin's \
         manifest or the flags it comes from (--cell-id, --branch, --advertise)"
    )]
    Refused {
        /// The refused id.
        cell_id: String,
        /// Discovery's reason.
        detail: String,
    },
}

// Written by hand rather than with `#[from]`: the message already contains
// the cause, and a `source` would make `{:#}` print it twice.
impl From<LoadError> for Error {
    fn from(error: LoadError) -> Self {
        Error::Load(error)
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Error::Config(error)
    }
}
