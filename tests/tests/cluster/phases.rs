//! The steps of the cluster test, one function each, in the order the test
//! runs them (see the crate docs); each records its times and checks its
//! bounds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::bounds::{
    CELL_HTTP_TIMEOUT, DENSE_CELLS, EXPIRY_SLACK, HEARTBEAT, JITTER, REPLICAS, TTL, ci_bound,
    expiry_bound,
};
use crate::compose::Cluster;
use crate::discovery::peer_list;
use crate::timings::Timings;
use crate::{checks, dense, docker, wait};

/// The containers of the first `up` and the published cell APIs.
pub struct Mesh {
    /// The discovery container.
    pub discovery: String,
    /// The pure container.
    pub pure: String,
    /// The alpha container.
    pub alpha: String,
    /// The dense host's container.
    pub dense: String,
    /// pure's published API, `127.0.0.1:PORT`.
    pub pure_addr: String,
    /// alpha's published API, `127.0.0.1:PORT`.
    pub alpha_addr: String,
}

/// `up -d`; both cells listed with the original's fields, and every cell of
/// the dense host listed and one of them reached; all healthy.
pub fn start_mesh(c: &mut Cluster, t: &mut Timings) -> Result<Mesh> {
    let issued = Instant::now();
    c.compose_ok(&["up", "-d"], &[], Duration::from_secs(180))?;
    c.refresh_discovery_addr()?;
    let listed = wait::listed(
        &c.discovery,
        &["pure", "alpha"],
        issued,
        Duration::from_secs(90),
    )?;
    t.record("compose up -> pure and alpha listed", listed)?;
    wait::until(
        &c.discovery,
        &format!("the dense host's {DENSE_CELLS} cells listed"),
        Duration::from_secs(90),
        |d| (dense::listed_count(d)? == DENSE_CELLS).then_some(()),
    )?;
    t.record(
        &format!("compose up -> the dense host's {DENSE_CELLS} cells listed"),
        issued.elapsed(),
    )?;
    let mesh = Mesh {
        discovery: c.container("discovery")?,
        pure: c.container("pure")?,
        alpha: c.container("alpha")?,
        dense: c.container(dense::SERVICE)?,
        pure_addr: c.published("pure", 8002, 1)?,
        alpha_addr: c.published("alpha", 8000, 1)?,
    };
    checks::original_fields(&c.discovery, &mesh.pure, &mesh.alpha)?;
    let step = Instant::now();
    wait::healthy(
        &[&mesh.discovery, &mesh.pure, &mesh.alpha, &mesh.dense],
        Duration::from_secs(60),
    )?;
    t.record("all four containers healthy", step.elapsed())?;
    dense::listed_and_reached(c, &mesh.alpha, &mesh.alpha_addr)?;
    Ok(mesh)
}

/// `docker stop`: removed at once, by deregistration, cell-host exiting 0.
pub fn stop_deregisters(c: &Cluster, t: &mut Timings, pure: &str) -> Result<()> {
    let deregistered = c.discovery.evictions("deregistered")?;
    let expired = c.discovery.evictions("expired")?;
    let issued = Instant::now();
    let stopper = docker::run_in_background(&["stop", "-t", "10", pure]);
    let removed = wait::absent(&c.discovery, "pure", issued, TTL + Duration::from_secs(5))?;
    let stop_took = stopper.join().expect("docker stop thread")?;
    t.record("docker stop pure -> removed (deregistration)", removed)?;
    t.record("  docker stop pure returned after", stop_took)?;
    ensure!(
        removed < TTL - HEARTBEAT,
        "pure was removed {removed:.2?} after `docker stop`: that is expiry, not \
         deregistration (expiry cannot come before TTL - heartbeat = {:?})",
        TTL - HEARTBEAT
    );
    ensure!(
        c.discovery.evictions("deregistered")? == deregistered + 1
            && c.discovery.evictions("expired")? == expired,
        "discovery's eviction counters do not show one deregistration and no expiry"
    );
    let exit = docker::inspect("{{.State.ExitCode}}", &[pure])?;
    ensure!(exit == "0", "cell-host exited {exit} on SIGTERM, not 0");
    ensure!(
        stop_took < Duration::from_secs(10),
        "docker stop took {stop_took:.2?}: the grace period ran out and Docker sent SIGKILL"
    );
    Ok(())
}

/// `docker kill` (of a stopped cell started again): removed by expiry within
/// TTL + 1 s and left down by the restart policy; `docker start`: listed
/// again within one heartbeat interval.
pub fn kill_expires_and_start_returns(c: &Cluster, t: &mut Timings, pure: &str) -> Result<()> {
    docker::run(&["start", pure])?;
    wait::listed(
        &c.discovery,
        &["pure"],
        Instant::now(),
        Duration::from_secs(30),
    )?;

    let expired = c.discovery.evictions("expired")?;
    let issued = Instant::now();
    docker::run(&["kill", pure])?;
    let removed = wait::absent(&c.discovery, "pure", issued, TTL + Duration::from_secs(10))?;
    t.record("docker kill pure -> removed (expiry)", removed)?;
    ensure!(
        removed >= TTL - HEARTBEAT && removed <= expiry_bound(),
        "pure was removed {removed:.2?} after `docker kill`; the target is TTL + 1 s = {:?}, \
         the test's bound {:?}",
        TTL + EXPIRY_SLACK,
        expiry_bound()
    );
    ensure!(
        c.discovery.evictions("expired")? == expired + 1,
        "discovery's expiry counter did not count the killed cell"
    );
    let state = docker::inspect("{{.State.Status}}", &[pure])?;
    ensure!(
        state == "exited",
        "after docker kill pure is {state}: the restart policy must leave a killed container alone"
    );

    let issued = Instant::now();
    docker::run(&["start", pure])?;
    let back = wait::listed(&c.discovery, &["pure"], issued, Duration::from_secs(30))?;
    t.record("docker start pure -> listed", back)?;
    ensure!(
        back <= ci_bound(HEARTBEAT),
        "pure was listed {back:.2?} after `docker start`; the target is one heartbeat \
         ({HEARTBEAT:?}), the test's bound {:?}",
        ci_bound(HEARTBEAT)
    );
    Ok(())
}

/// `docker restart` discovery: every cell (the dense host's too, registered
/// again by one batch) listed again within one heartbeat plus jitter of
/// discovery being back.
pub fn discovery_restart_is_survived(
    c: &mut Cluster,
    t: &mut Timings,
    discovery: &str,
) -> Result<()> {
    let issued = Instant::now();
    docker::run(&["restart", "-t", "10", discovery])?;
    let restarted = issued.elapsed();
    // Its ephemeral host port may have changed.
    c.refresh_discovery_addr()?;
    let since = Instant::now();
    wait::until(
        &c.discovery,
        "pure, alpha and every dense cell listed",
        Duration::from_secs(30),
        |d| {
            let ids = d.peer_ids()?;
            let back = ids.contains("pure")
                && ids.contains("alpha")
                && dense::listed_count(d)? == DENSE_CELLS;
            back.then_some(())
        },
    )?;
    let back = since.elapsed();
    t.record("docker restart discovery -> every cell listed", back)?;
    t.record("  docker restart discovery returned after", restarted)?;
    ensure!(
        back <= ci_bound(HEARTBEAT + JITTER),
        "the cells were listed {back:.2?} after discovery restarted; the target is one \
         heartbeat plus jitter ({:?}), the test's bound {:?}",
        HEARTBEAT + JITTER,
        ci_bound(HEARTBEAT + JITTER)
    );
    Ok(())
}

/// pure cut off the network: reaped by expiry; reconnected (with its DNS
/// aliases): listed again and reachable through alpha's `/send`.
pub fn partition_reaps_and_heals(c: &Cluster, t: &mut Timings, mesh: &Mesh) -> Result<()> {
    let pure = mesh.pure.as_str();
    let network = docker::network_of(pure)?;
    let aliases = docker::aliases(pure, &network)?;
    let expired = c.discovery.evictions("expired")?;
    let issued = Instant::now();
    docker::run(&["network", "disconnect", &network, pure])?;
    let reaped = wait::absent(&c.discovery, "pure", issued, TTL + Duration::from_secs(10))?;
    t.record("network disconnect pure -> reaped", reaped)?;
    ensure!(
        reaped >= TTL - HEARTBEAT && reaped <= expiry_bound(),
        "the partitioned cell was reaped {reaped:.2?} after the disconnect; the target is {:?}, \
         the test's bound {:?}",
        TTL + EXPIRY_SLACK,
        expiry_bound()
    );
    ensure!(
        c.discovery.evictions("expired")? == expired + 1,
        "discovery's expiry counter did not count the partitioned cell"
    );

    let mut connect = vec!["network", "connect"];
    for alias in &aliases {
        connect.extend(["--alias", alias]);
    }
    connect.extend([network.as_str(), pure]);
    let issued = Instant::now();
    docker::run(&connect)?;
    let back = wait::listed(&c.discovery, &["pure"], issued, Duration::from_secs(30))?;
    t.record("network reconnect pure -> listed", back)?;
    let target = HEARTBEAT + CELL_HTTP_TIMEOUT + JITTER;
    let bound = ci_bound(target);
    ensure!(
        back <= bound,
        "the reconnected cell was listed {back:.2?} after the reconnect; the target is \
         {target:?}, the test's bound {bound:?}"
    );
    // Reconnecting publishes the port again, maybe on another host port.
    let pure_addr = c.published("pure", 8002, 1)?;
    checks::send_and_check(
        &c.http,
        &mesh.alpha_addr,
        "pure",
        &pure_addr,
        "after the partition healed",
    )
}

/// `--scale pure=10` with unique ids: ten distinct ids and host names, one
/// replica reached through alpha's `/send`, all twelve containers healthy.
pub fn ten_replicas_get_ten_ids(c: &Cluster, t: &mut Timings, mesh: &Mesh) -> Result<()> {
    let issued = Instant::now();
    let scale = format!("pure={REPLICAS}");
    c.compose_ok(
        &["up", "-d", "--no-deps", "--scale", &scale, "pure"],
        &[("PURE_UNIQUE_ID", "true")],
        Duration::from_secs(240),
    )?;
    let ((replicas, peers), _) = wait::until(
        &c.discovery,
        "ten distinct pure-* ids and alpha",
        Duration::from_secs(120),
        |d| {
            let peers = d.peers().ok()?;
            let ids: BTreeSet<String> = peer_list(&peers)
                .iter()
                .filter_map(|p| p["cell_id"].as_str().map(str::to_owned))
                .collect();
            let replicas: BTreeSet<String> = ids
                .iter()
                .filter(|id| id.starts_with("pure-"))
                .cloned()
                .collect();
            (replicas.len() == REPLICAS && ids.contains("alpha") && !ids.contains("pure"))
                .then_some((replicas, peers))
        },
    )?;
    t.record(
        "--scale pure=10 -> ten distinct ids listed",
        issued.elapsed(),
    )?;
    let hosts: BTreeSet<&str> = peer_list(&peers)
        .iter()
        .filter(|p| {
            p["cell_id"]
                .as_str()
                .is_some_and(|id| replicas.contains(id))
        })
        .filter_map(|p| p["hostname"].as_str())
        .collect();
    ensure!(
        hosts.len() == REPLICAS,
        "the ten replicas do not have ten distinct host names: {hosts:?}"
    );
    ensure!(
        peers["count"] == json!(REPLICAS + 1),
        "count is {} with ten replicas and alpha",
        peers["count"]
    );

    // One replica, found by its own /health, reached through alpha's /send.
    let third = c.published("pure", 8002, 3)?;
    let health = c.http.get(&third, "/health")?.json()?;
    let third_id = health["cell_id"]
        .as_str()
        .context("a replica's /health has no cell_id")?
        .to_owned();
    ensure!(
        replicas.contains(&third_id),
        "{third_id} is not among {replicas:?}"
    );
    checks::send_and_check(
        &c.http,
        &mesh.alpha_addr,
        &third_id,
        &third,
        "to one replica of ten",
    )?;

    let mut all = c.containers("pure")?;
    ensure!(
        all.len() == REPLICAS,
        "compose runs {} pure containers",
        all.len()
    );
    all.extend([mesh.discovery.clone(), mesh.alpha.clone()]);
    let step = Instant::now();
    wait::healthy(
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(90),
    )?;
    t.record("all twelve containers healthy", step.elapsed())?;
    Ok(())
}
