//! Polling with deadlines: the measured times are "from the action until
//! discovery shows its effect", read by polling discovery every [`POLL`].

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};

use crate::discovery::Discovery;
use crate::docker;

/// How often `/peers` is polled while measuring.
const POLL: Duration = Duration::from_millis(50);
/// How often `docker inspect` is asked about health.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// Polls `probe` every [`POLL`] until it yields; returns the value and how
/// long it took. On timeout the error says what discovery lists.
pub fn until<T>(
    discovery: &Discovery,
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut(&Discovery) -> Option<T>,
) -> Result<(T, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(value) = probe(discovery) {
            return Ok((value, started.elapsed()));
        }
        if started.elapsed() > timeout {
            let seen = discovery.peer_ids();
            bail!("timed out after {timeout:?} waiting for {what}; discovery lists {seen:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until discovery lists every one of `ids`; returns the time since
/// `since` (when the action being measured was issued).
pub fn listed(
    discovery: &Discovery,
    ids: &[&str],
    since: Instant,
    timeout: Duration,
) -> Result<Duration> {
    until(discovery, &format!("{ids:?} listed"), timeout, |d| {
        let seen = d.peer_ids()?;
        ids.iter().all(|id| seen.contains(*id)).then_some(())
    })?;
    Ok(since.elapsed())
}

/// Waits until discovery answers and does not list `id`; returns the time
/// since `since`.
pub fn absent(
    discovery: &Discovery,
    id: &str,
    since: Instant,
    timeout: Duration,
) -> Result<Duration> {
    until(discovery, &format!("{id} removed"), timeout, |d| {
        (!d.peer_ids()?.contains(id)).then_some(())
    })?;
    Ok(since.elapsed())
}

/// Waits until Docker reports every one of `containers` healthy.
pub fn healthy(containers: &[&str], timeout: Duration) -> Result<()> {
    let format = "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}";
    let started = Instant::now();
    loop {
        let out = docker::inspect(format, containers)?;
        if out.lines().all(|l| l.trim() == "healthy") {
            return Ok(());
        }
        ensure!(
            started.elapsed() < timeout,
            "containers not healthy after {timeout:?}: {:?}",
            out.lines().collect::<Vec<_>>()
        );
        std::thread::sleep(HEALTH_POLL);
    }
}
