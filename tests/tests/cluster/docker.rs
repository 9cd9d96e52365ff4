//! `docker` commands on single containers and images, each with a deadline.

use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::process;

/// Deadline of one `docker` command (`docker stop -t 10` included).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `docker args...`; its trimmed stdout, or an error with its stderr.
pub fn run(args: &[&str]) -> Result<String> {
    process::checked(Command::new("docker").args(args), TIMEOUT)
}

/// Runs `docker args...` on a thread; the thread yields how long it took.
pub fn run_in_background(args: &[&str]) -> JoinHandle<Result<Duration>> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    std::thread::spawn(move || {
        let started = Instant::now();
        process::checked(Command::new("docker").args(&args), TIMEOUT)?;
        Ok(started.elapsed())
    })
}

/// `docker inspect -f <format> <containers...>`.
pub fn inspect(format: &str, containers: &[&str]) -> Result<String> {
    let mut args = vec!["inspect", "-f", format];
    args.extend_from_slice(containers);
    run(&args)
}

/// The compose network a container is attached to.
pub fn network_of(container: &str) -> Result<String> {
    let out = inspect(
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}\n{{end}}",
        &[container],
    )?;
    let networks: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match networks.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => bail!("{container} is on {networks:?}, expected one network"),
    }
}

/// The container's DNS aliases on `network`, to restore on reconnect.
pub fn aliases(container: &str, network: &str) -> Result<Vec<String>> {
    let out = inspect("{{json .NetworkSettings.Networks}}", &[container])?;
    let networks: Value = serde_json::from_str(&out).context("docker inspect networks")?;
    Ok(networks[network]["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}
