//! [`ConformanceError`]: why the suite could not run or report.

use std::path::PathBuf;

use crate::plugin::LoadError;

/// Why the suite could not run or report (not a verdict on the plugin).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The WebAssembly engine could not start.
    #[error("{0}")]
    Engine(LoadError),
    /// A report file could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        error: std::io::Error,
    },
    /// The JUnit XML could not be produced.
    #[error("cannot produce the JUnit report: {0}")]
    Junit(String),
}
