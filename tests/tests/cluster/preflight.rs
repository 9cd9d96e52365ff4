//! Whether the test can run here: a reachable Docker Engine, a working
//! Compose command, and whether CI requires the run.

use std::process::Command;
use std::time::Duration;

use crate::process;

/// The Compose command (`docker compose` or `docker-compose`, or what
/// `CELLMESH_COMPOSE` says), or why the test cannot run.
pub fn compose_command() -> Result<Vec<String>, String> {
    if !in_ci() && std::env::var("CELLMESH_SKIP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err("CELLMESH_SKIP_CLUSTER is set".to_owned());
    }
    let info = process::run(
        Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]),
        Duration::from_secs(30),
    )
    .map_err(|e| format!("cannot run docker: {e:#}"))?;
    if !info.status.success() || info.stdout.trim().is_empty() {
        return Err(format!(
            "no Docker Engine is reachable (`docker info`: {})",
            info.stderr.trim()
        ));
    }
    let candidates: Vec<Vec<String>> = match std::env::var("CELLMESH_COMPOSE") {
        Ok(given) if !given.trim().is_empty() => {
            vec![given.split_whitespace().map(str::to_owned).collect()]
        }
        _ => vec![
            vec!["docker".to_owned(), "compose".to_owned()],
            vec!["docker-compose".to_owned()],
        ],
    };
    for candidate in &candidates {
        let mut cmd = Command::new(&candidate[0]);
        cmd.args(&candidate[1..]).arg("version");
        if process::run(&mut cmd, Duration::from_secs(30)).is_ok_and(|o| o.status.success()) {
            return Ok(candidate.clone());
        }
    }
    Err(format!("no Compose command works (tried {candidates:?})"))
}

/// Whether `CI` is set to something true: the test must then run, not skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}
