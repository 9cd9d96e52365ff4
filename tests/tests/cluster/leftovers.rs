//! How runs name their compose projects and image tags, and the removal of
//! what earlier runs left behind when they were killed before their drop
//! guard could clean up (a timeout, Ctrl-C).
//!
//! A run's names end in its process id, `x`, and its start time (Unix
//! seconds, hexadecimal): unique on one machine, and enough to tell later
//! whether the run is over.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{docker, paths, process};

/// Compose project names of this test: the prefix, then [`unique_suffix`].
pub const PROJECT_PREFIX: &str = "cmcluster";
/// Image tags of this test, named like the project.
pub const TAG_PREFIX: &str = "cluster-";
/// Age after which a dead run's leftovers are removed (image build timeout
/// plus the budget, with room).
const STALE_AFTER: Duration = Duration::from_secs(40 * 60);

/// A lowercase alphanumeric suffix unique to this run: its process id and
/// start time (Unix seconds, hexadecimal).
pub fn unique_suffix() -> String {
    format!("{}x{:x}", std::process::id(), unix_now())
}

/// Removes compose projects and image tags whose name carries the id of a
/// run that is over ([`run_is_dead`]). Best effort: failures are reported,
/// not fatal.
pub fn sweep_dead_runs(compose: &[String]) {
    let label = "{{.Label \"com.docker.compose.project\"}}";
    let mut projects = BTreeSet::new();
    for kind in [&["ps", "-a"][..], &["network", "ls"], &["volume", "ls"]] {
        let mut args = kind.to_vec();
        args.extend([
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            label,
        ]);
        if let Ok(out) = docker::run(&args) {
            projects.extend(out.lines().map(str::trim).map(str::to_owned));
        }
    }
    for project in projects {
        let Some(suffix) = project.strip_prefix(PROJECT_PREFIX) else {
            continue;
        };
        if !run_is_dead(suffix) {
            continue;
        }
        say!("cluster test: removing {project}, left behind by a run that died");
        let mut down = Command::new(&compose[0]);
        down.args(&compose[1..])
            .args(["-p", &project, "-f"])
            .arg(paths::compose_file())
            .args(["down", "-v", "--remove-orphans", "-t", "1"]);
        if let Err(e) = process::checked(&mut down, Duration::from_secs(120)) {
            say!("cluster test: cannot remove {project}: {e:#}");
        }
    }
    let images =
        docker::run(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]).unwrap_or_default();
    for image in images.lines() {
        let Some((repo, tag)) = image.split_once(':') else {
            continue;
        };
        let ours = matches!(repo, "cellmesh/discovery" | "cellmesh/cell-host");
        if ours && tag.strip_prefix(TAG_PREFIX).is_some_and(run_is_dead) {
            let _ = docker::run(&["image", "rm", image]);
        }
    }
}

/// Whether the run with this [`unique_suffix`] is over: its process is gone
/// and it started long enough ago ([`STALE_AFTER`]) that it cannot be a run
/// in another PID namespace sharing this Docker Engine.
fn run_is_dead(suffix: &str) -> bool {
    let Some((pid, started)) = suffix.split_once('x') else {
        return false;
    };
    let (Ok(pid), Ok(started)) = (pid.parse::<u32>(), u64::from_str_radix(started, 16)) else {
        return false;
    };
    let age = unix_now().saturating_sub(started);
    cfg!(target_os = "linux")
        && pid != std::process::id()
        && !Path::new(&format!("/proc/{pid}")).exists()
        && age > STALE_AFTER.as_secs()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
