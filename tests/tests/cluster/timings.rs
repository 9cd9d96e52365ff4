//! The measured times: each printed as it comes (`cluster timing: ...`) and
//! the whole table kept in `target/cluster-timings.txt`, rewritten after
//! every line so a run that dies still leaves what it measured.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::bounds::{HEARTBEAT, TTL};
use crate::paths;

/// Measured times: printed as they come and kept in a file.
pub struct Timings {
    path: PathBuf,
    text: String,
}

impl Timings {
    /// Starts the table at `path` with a header naming the intervals.
    pub fn new(path: PathBuf) -> Result<Self> {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# cellmesh compose cluster test, heartbeat {HEARTBEAT:?}, TTL {TTL:?}, unix time {}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        );
        let timings = Self { path, text };
        timings.save()?;
        Ok(timings)
    }

    /// Prints one line of the table and adds it to the file.
    pub fn record(&mut self, what: &str, took: Duration) -> Result<()> {
        let line = format!("{what:<52} {:>8.3} s", took.as_secs_f64());
        say!("cluster timing: {line}");
        self.text.push_str(&line);
        self.text.push('\n');
        self.save()
    }

    fn save(&self) -> Result<()> {
        write_file(&self.path, &self.text)
    }
}

/// Replaces the timings file by the reason the test was skipped, so no
/// earlier run's table passes for this one's.
pub fn write_skipped(reason: &str) -> Result<()> {
    write_file(
        &paths::timings_file(),
        &format!("# cluster test skipped: {reason}\n"),
    )
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
