//! [`run_command`]: `cell-host conformance` after parsing; turns the
//! command's arguments into [`ConformanceOptions`], prints the summary and
//! writes the requested report files.

use std::io::Write;
use std::path::Path;

use crate::config::ConformanceArgs;

use super::error::ConformanceError;
use super::options::ConformanceOptions;
use super::suite::run;

/// What `cell-host conformance` does after parsing: runs the suite under
/// the given limits, prints the summary to `out`, writes the requested
/// report files. Returns whether every required check passed.
pub async fn run_command(
    args: &ConformanceArgs,
    out: &mut impl Write,
) -> Result<bool, ConformanceError> {
    let options = ConformanceOptions {
        limits: args.limits(),
        ..ConformanceOptions::default()
    };
    let report = run(&args.plugin, &options).await?;
    let _ = out.write_all(report.to_text().as_bytes());
    let _ = out.flush();
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|error| ConformanceError::Write {
            path: path.to_path_buf(),
            error,
        })
    };
    if let Some(path) = &args.json {
        write(path, &report.to_json())?;
    }
    if let Some(path) = &args.junit {
        let xml = report
            .to_junit()
            .map_err(|e| ConformanceError::Junit(e.to_string()))?;
        write(path, &xml)?;
    }
    Ok(report.passed)
}
