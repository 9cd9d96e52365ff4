//! The dense host: one container (`dense`) running [`DENSE_CELLS`] pure cells
//! in one cell-host, each on its own port of [`DENSE_PORTS`], advertised
//! under the service name, kept alive by one batch request per heartbeat.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::bounds::{
    DENSE_ADMIN_PORT, DENSE_CELLS, DENSE_PORTS, EXPIRY_SLACK, HEARTBEAT, TTL, expiry_bound,
};
use crate::compose::Cluster;
use crate::discovery::{Discovery, peer_list};
use crate::timings::Timings;
use crate::{docker, wait};

/// The service name: the host every dense cell advertises.
pub const SERVICE: &str = "dense";

/// Whether a listed peer is one of the dense host's cells (`dense-<hash>`).
pub fn is_dense(peer: &Value) -> bool {
    peer["cell_id"]
        .as_str()
        .is_some_and(|id| id.starts_with("dense-"))
}

/// How many of the dense host's cells `/peers` lists, or `None` while
/// discovery does not answer.
pub fn listed_count(discovery: &Discovery) -> Option<usize> {
    let peers = discovery.peers().ok()?;
    Some(peer_list(&peers).iter().filter(|p| is_dense(p)).count())
}

/// Every dense cell listed with its own id and port, advertised as the
/// service name; the admin API counting them all; one of them answering
/// `/health` at its listed address from inside the network (the probe in
/// alpha's container) and receiving alpha's `/send` through discovery.
pub fn listed_and_reached(c: &Cluster, alpha: &str, alpha_addr: &str) -> Result<()> {
    let peers = c.discovery.peers()?;
    let cells: Vec<&Value> = peer_list(&peers).iter().filter(|p| is_dense(p)).collect();
    let ids: BTreeSet<&str> = cells.iter().filter_map(|p| p["cell_id"].as_str()).collect();
    let ports: BTreeSet<u16> = cells
        .iter()
        .filter_map(|p| p["port"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    ensure!(
        cells.len() == DENSE_CELLS && ids.len() == DENSE_CELLS && ports.len() == DENSE_CELLS,
        "the dense host's {DENSE_CELLS} cells are not listed with distinct ids and ports: \
         {} listed, {} ids, ports {ports:?}",
        cells.len(),
        ids.len()
    );
    ensure!(
        ports.iter().all(|p| DENSE_PORTS.contains(p)),
        "dense ports outside {DENSE_PORTS:?}: {ports:?}"
    );
    for cell in &cells {
        ensure!(
            cell["ip"] == SERVICE && cell["type"] == "pure_cell" && cell["branch"] == "main",
            "a dense cell is not advertised as {SERVICE} with pure's fields: {cell}"
        );
    }

    let admin = c.published(SERVICE, DENSE_ADMIN_PORT, 1)?;
    let health = c.http.get(&admin, "/health")?.json()?;
    ensure!(
        health["status"] == "ok"
            && health["cells"] == json!(DENSE_CELLS)
            && health["running"] == json!(DENSE_CELLS),
        "the dense host's admin /health does not count {DENSE_CELLS} running cells: {health}"
    );
    let listing = c.http.get(&admin, "/cells")?.json()?;
    ensure!(
        listing["counts"]["registered"] == json!(DENSE_CELLS),
        "the dense host's admin /cells does not count {DENSE_CELLS} registered cells: {}",
        listing["counts"]
    );

    // One cell in the middle of the range, at the address discovery lists.
    let cell = cells[cells.len() / 2];
    let id = cell["cell_id"].as_str().context("cell_id")?;
    let url = format!(
        "http://{}:{}/health",
        cell["ip"].as_str().context("ip")?,
        cell["port"]
    );
    docker::run(&["exec", alpha, "/usr/local/bin/healthcheck", &url])
        .with_context(|| format!("{id}'s /health at {url}, from alpha's container"))?;
    send_from_alpha(c, alpha_addr, id)
}

/// alpha's `POST /send` to `id` answers `sent`: the cell was reached at the
/// address discovery lists (retried while alpha's view of the mesh catches up).
fn send_from_alpha(c: &Cluster, alpha_addr: &str, id: &str) -> Result<()> {
    let body =
        json!({"to_cell": id, "content": "to one cell of the dense host", "message_type": "text"});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = c.http.post_json(alpha_addr, "/send", &body)?;
        let sent = answer.status == 200 && answer.json()?["status"] == "sent";
        if sent {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "alpha's /send to {id} answered {}: {}",
            answer.status,
            answer.body
        );
        say!(
            "  /send to {id} answered {}: {}; retrying",
            answer.status,
            answer.body
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `docker stop` the dense host: every one of its cells removed at once, by
/// deregistration, the host exiting 0; `docker start`: all listed again.
pub fn stop_deregisters_every_cell(c: &Cluster, t: &mut Timings, dense: &str) -> Result<()> {
    let deregistered = c.discovery.evictions("deregistered")?;
    let expired = c.discovery.evictions("expired")?;
    let issued = Instant::now();
    let stopper = docker::run_in_background(&["stop", "-t", "10", dense]);
    let (removed, _) = wait::until(
        &c.discovery,
        "every dense cell removed",
        TTL + Duration::from_secs(5),
        |d| (listed_count(d)? == 0).then(|| issued.elapsed()),
    )?;
    let stop_took = stopper.join().expect("docker stop thread")?;
    t.record("docker stop dense -> its cells deregistered", removed)?;
    t.record("  docker stop dense returned after", stop_took)?;
    ensure!(
        removed < TTL - HEARTBEAT,
        "the dense cells were removed {removed:.2?} after `docker stop`: that is expiry, not \
         deregistration (expiry cannot come before TTL - heartbeat = {:?})",
        TTL - HEARTBEAT
    );
    let (now_deregistered, now_expired) = (
        c.discovery.evictions("deregistered")?,
        c.discovery.evictions("expired")?,
    );
    ensure!(
        now_deregistered == deregistered + DENSE_CELLS as u64 && now_expired == expired,
        "discovery counts {} deregistrations and {} expiries for the {DENSE_CELLS} stopped \
         dense cells",
        now_deregistered - deregistered,
        now_expired - expired
    );
    let exit = docker::inspect("{{.State.ExitCode}}", &[dense])?;
    ensure!(
        exit == "0",
        "the dense host exited {exit} on SIGTERM, not 0"
    );
    ensure!(
        stop_took < Duration::from_secs(10),
        "docker stop dense took {stop_took:.2?}: the grace period ran out and Docker sent SIGKILL"
    );

    let issued = Instant::now();
    docker::run(&["start", dense])?;
    let (back, _) = wait::until(
        &c.discovery,
        "every dense cell listed again",
        Duration::from_secs(60),
        |d| (listed_count(d)? == DENSE_CELLS).then(|| issued.elapsed()),
    )?;
    t.record("docker start dense -> its cells listed", back)?;
    Ok(())
}

/// `docker kill` the dense host: every one of its cells expires at the TTL
/// (renewed by the same batch, they go together), counted as expiries, and
/// the restart policy leaves the container down.
pub fn kill_expires_every_cell(c: &Cluster, t: &mut Timings, dense: &str) -> Result<()> {
    let expired = c.discovery.evictions("expired")?;
    let issued = Instant::now();
    docker::run(&["kill", dense])?;
    // Times from the kill: the first cell gone, and the last.
    let mut first = None;
    let (all, _) = wait::until(
        &c.discovery,
        "every dense cell removed",
        TTL + Duration::from_secs(30),
        |d| {
            let left = listed_count(d)?;
            if left < DENSE_CELLS && first.is_none() {
                first = Some(issued.elapsed());
            }
            (left == 0).then(|| issued.elapsed())
        },
    )?;
    let first = first.unwrap_or(all);
    t.record("docker kill dense -> the first of its cells removed", first)?;
    t.record("docker kill dense -> the last of its cells removed", all)?;
    ensure!(
        first >= TTL - HEARTBEAT && all <= expiry_bound(),
        "the dense cells were removed from {first:.2?} to {all:.2?} after `docker kill`; the \
         target is TTL + 1 s = {:?}, the test's bound {:?}, none before TTL - heartbeat = {:?}",
        TTL + EXPIRY_SLACK,
        expiry_bound(),
        TTL - HEARTBEAT
    );
    let now_expired = c.discovery.evictions("expired")?;
    ensure!(
        now_expired == expired + DENSE_CELLS as u64,
        "discovery's expiry counter moved by {} for the {DENSE_CELLS} dense cells",
        now_expired - expired
    );
    let state = docker::inspect("{{.State.Status}}", &[dense])?;
    ensure!(
        state == "exited",
        "after docker kill the dense host is {state}: the restart policy must leave it down"
    );
    Ok(())
}
