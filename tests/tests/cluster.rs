//! The compose cluster test: the original system's manual verification
//! (`../shared/seeds/`), automated against real containers, and more.
//!
//! It builds the images with `examples/compose/build-images --tag <unique>`
//! (quick when CI has already run the script: cargo is then up to date and
//! Docker reuses its layers), starts `examples/compose/docker-compose.yml`
//! under a unique project name with ports published on 127.0.0.1 only, on
//! ephemeral host ports, and with shorter intervals (heartbeat 2 s, TTL 6 s,
//! no start-up grace, healthchecks every 2 s), then checks, in order:
//!
//! 1. every container becomes healthy, and `/peers` lists pure and alpha with
//!    the fields of the original registration;
//! 2. alpha's `POST /send` reaches pure's `/messages` through discovery;
//! 3. `docker stop` pure: removed at once, by deregistration (the eviction
//!    counters say so), the host exiting 0;
//! 4. `docker kill` pure: removed by expiry within TTL + 1 s;
//! 5. `docker start` pure: listed again within one heartbeat interval;
//! 6. `docker restart` discovery: every cell listed again within one
//!    heartbeat interval plus jitter;
//! 7. pure disconnected from the network: reaped; reconnected: back, and
//!    reachable through `/send` again;
//! 8. `--scale pure=10` with unique ids: ten distinct ids listed, one of them
//!    reached through alpha's `/send`, every replica healthy.
//!
//! The measured times, the skip reason and the progress go straight to the
//! process's stderr (`say!`, not `eprintln!`, so libtest's capture does not
//! hide them when the test passes) and the times to
//! `target/cluster-timings.txt`.
//! Containers, networks, volumes and image tags are removed by a drop guard,
//! also when the test fails (after printing the compose logs); leftovers of
//! earlier runs that were killed before they could clean up are removed at
//! the start.
//!
//! Where no Docker Engine (or no Compose) is reachable the test passes as
//! skipped and says why; under `CI=true` it fails instead. Outside CI,
//! `CELLMESH_SKIP_CLUSTER=1` skips it. `CELLMESH_COMPOSE` chooses the Compose
//! command (`docker compose` or `docker-compose`; found automatically).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};

/// `eprintln!` that libtest does not capture: the line goes to the real
/// stderr at once, so CI logs show timings and skip reasons of passing runs.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Heartbeat interval the cells get in this test (`CELLMESH_HEARTBEAT_MS`).
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Discovery's TTL in this test (`DISCOVERY_TTL`): three missed heartbeats,
/// the original's ratio (5 s and 15 s).
const TTL: Duration = Duration::from_secs(6);
/// Slack on "within one heartbeat interval" for the discovery restart: the
/// cells notice at their next heartbeat, then register at once; this covers
/// that request, the 404 before it and the poll period.
const JITTER: Duration = Duration::from_secs(1);
/// Slack on "within TTL" for expiry: the reaper's wake-up and the poll.
const EXPIRY_SLACK: Duration = Duration::from_secs(1);
/// cell-host's HTTP timeout to discovery (`DEFAULT_HTTP_TIMEOUT_MS`): a
/// heartbeat in flight across a partition can hang this long.
const CELL_HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// How often `/peers` is polled while measuring.
const POLL: Duration = Duration::from_millis(50);
/// Replicas of pure in the scale step.
const REPLICAS: usize = 10;
/// Budget of the checks from `compose up` to teardown (the 10
/// minutes). The image build is timed apart: on a clean machine it is a
/// release build of wasmtime for musl, which CI runs before the tests.
const BUDGET: Duration = Duration::from_secs(600);

/// Compose project names of this test: the prefix, the test's process id,
/// `x`, a time stamp.
const PROJECT_PREFIX: &str = "cmcluster";
/// Image tags of this test, named like the project.
const TAG_PREFIX: &str = "cluster-";
/// Age after which a dead run's leftovers are removed (image build timeout
/// plus the budget, with room).
const STALE_AFTER: Duration = Duration::from_secs(40 * 60);

/// alpha's services in the original registration (seed-api.md).
const ALPHA_SERVICES: [&str; 5] = [
    "code-analysis",
    "consciousness-sync",
    "dendritic-communication",
    "tachyonic-archival",
    "geometric-engine",
];

#[test]
fn compose_cluster_passes_the_original_verification_and_more() -> Result<()> {
    let started = Instant::now();
    let compose = match preflight() {
        Ok(compose) => compose,
        Err(reason) if in_ci() => {
            panic!("CI=true, so the cluster test must run, but: {reason}")
        }
        Err(reason) => {
            say!("cluster test skipped: {reason}");
            let path = timings_path();
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(&path, format!("# cluster test skipped: {reason}\n"))?;
            return Ok(());
        }
    };
    sweep_dead_runs(&compose);
    let mut timings = Timings::new(timings_path())?;
    let mut cluster = Cluster::new(compose)?;
    say!(
        "cluster test: project {}, images tagged {}, compose `{}`",
        cluster.project,
        cluster.tag,
        cluster.compose.join(" ")
    );
    let outcome = verify(&mut cluster, &mut timings);
    if outcome.is_ok() {
        cluster.succeeded = true;
    }
    drop(cluster); // tear down before the final timing
    timings.record(
        "total run time, build and teardown included",
        started.elapsed(),
    )?;
    outcome
}

/// The checks, in order; `cluster` is torn down by its drop guard.
fn verify(c: &mut Cluster, t: &mut Timings) -> Result<()> {
    let step = Instant::now();
    c.build_images()?;
    t.record("image build (build-images)", step.elapsed())?;
    let started = Instant::now();

    let mesh = start_mesh(c, t)?;
    send_and_check(
        &mesh.alpha_addr,
        "pure",
        &mesh.pure_addr,
        "through the mesh",
    )?;
    stop_deregisters(c, t, &mesh.pure)?;
    kill_expires_and_start_returns(c, t, &mesh.pure)?;
    discovery_restart_is_survived(c, t, &mesh.discovery)?;
    partition_reaps_and_heals(c, t, &mesh)?;
    ten_replicas_get_ten_ids(c, t, &mesh)?;

    // Teardown is measured too (the drop guard repeats it harmlessly).
    let step = Instant::now();
    c.down()?;
    t.record("compose down -v (twelve containers)", step.elapsed())?;
    let took = started.elapsed();
    t.record("cluster checks, up to teardown", took)?;
    ensure!(
        took <= BUDGET,
        "the cluster checks took {took:.0?}, over their {BUDGET:?} budget"
    );
    Ok(())
}

/// The containers of the first `up` and the published cell APIs.
struct Mesh {
    discovery: String,
    pure: String,
    alpha: String,
    pure_addr: String,
    alpha_addr: String,
}

/// `up -d`; both cells listed with the original's fields; all healthy.
fn start_mesh(c: &mut Cluster, t: &mut Timings) -> Result<Mesh> {
    let issued = Instant::now();
    c.compose_ok(&["up", "-d"], &[], Duration::from_secs(180))?;
    c.refresh_discovery_addr()?;
    let listed = c.wait_listed(&["pure", "alpha"], issued, Duration::from_secs(90))?;
    t.record("compose up -> pure and alpha listed", listed)?;
    let mesh = Mesh {
        discovery: c.container("discovery")?,
        pure: c.container("pure")?,
        alpha: c.container("alpha")?,
        pure_addr: c.published("pure", 8002, 1)?,
        alpha_addr: c.published("alpha", 8000, 1)?,
    };
    check_original_fields(c, &mesh.pure, &mesh.alpha)?;
    let step = Instant::now();
    c.wait_healthy(
        &[&mesh.discovery, &mesh.pure, &mesh.alpha],
        Duration::from_secs(60),
    )?;
    t.record("all three containers healthy", step.elapsed())?;
    Ok(mesh)
}

/// `docker stop`: removed at once, by deregistration, cell-host exiting 0.
fn stop_deregisters(c: &Cluster, t: &mut Timings, pure: &str) -> Result<()> {
    let deregistered = c.evictions("deregistered")?;
    let expired = c.evictions("expired")?;
    let issued = Instant::now();
    let stopper = c.docker_in_background(&["stop", "-t", "10", pure]);
    let removed = c.wait_absent("pure", issued, TTL + Duration::from_secs(5))?;
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
        c.evictions("deregistered")? == deregistered + 1 && c.evictions("expired")? == expired,
        "discovery's eviction counters do not show one deregistration and no expiry"
    );
    let exit = c.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", pure])?;
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
fn kill_expires_and_start_returns(c: &Cluster, t: &mut Timings, pure: &str) -> Result<()> {
    c.docker_ok(&["start", pure])?;
    c.wait_listed(&["pure"], Instant::now(), Duration::from_secs(30))?;

    let expired = c.evictions("expired")?;
    let issued = Instant::now();
    c.docker_ok(&["kill", pure])?;
    let removed = c.wait_absent("pure", issued, TTL + Duration::from_secs(10))?;
    t.record("docker kill pure -> removed (expiry)", removed)?;
    ensure!(
        removed <= TTL + EXPIRY_SLACK,
        "pure was removed {removed:.2?} after `docker kill`; the bound is TTL + 1 s = {:?}",
        TTL + EXPIRY_SLACK
    );
    ensure!(
        c.evictions("expired")? == expired + 1,
        "discovery's expiry counter did not count the killed cell"
    );
    let state = c.docker_ok(&["inspect", "-f", "{{.State.Status}}", pure])?;
    ensure!(
        state == "exited",
        "after docker kill pure is {state}: the restart policy must leave a killed container alone"
    );

    let issued = Instant::now();
    c.docker_ok(&["start", pure])?;
    let back = c.wait_listed(&["pure"], issued, Duration::from_secs(30))?;
    t.record("docker start pure -> listed", back)?;
    ensure!(
        back <= HEARTBEAT,
        "pure was listed {back:.2?} after `docker start`; the bound is one heartbeat ({HEARTBEAT:?})"
    );
    Ok(())
}

/// `docker restart` discovery: every cell listed again within one heartbeat
/// plus jitter of discovery being back.
fn discovery_restart_is_survived(c: &mut Cluster, t: &mut Timings, discovery: &str) -> Result<()> {
    let issued = Instant::now();
    c.docker_ok(&["restart", "-t", "10", discovery])?;
    let restarted = issued.elapsed();
    // Its ephemeral host port may have changed.
    c.refresh_discovery_addr()?;
    let back = c.wait_listed(&["pure", "alpha"], Instant::now(), Duration::from_secs(30))?;
    t.record("docker restart discovery -> every cell listed", back)?;
    t.record("  docker restart discovery returned after", restarted)?;
    ensure!(
        back <= HEARTBEAT + JITTER,
        "the cells were listed {back:.2?} after discovery restarted; the bound is one \
         heartbeat plus jitter ({:?})",
        HEARTBEAT + JITTER
    );
    Ok(())
}

/// pure cut off the network: reaped by expiry; reconnected (with its DNS
/// aliases): listed again and reachable through alpha's `/send`.
fn partition_reaps_and_heals(c: &Cluster, t: &mut Timings, mesh: &Mesh) -> Result<()> {
    let pure = mesh.pure.as_str();
    let network = c.network_of(pure)?;
    let aliases = c.aliases(pure, &network)?;
    let expired = c.evictions("expired")?;
    let issued = Instant::now();
    c.docker_ok(&["network", "disconnect", &network, pure])?;
    let reaped = c.wait_absent("pure", issued, TTL + Duration::from_secs(10))?;
    t.record("network disconnect pure -> reaped", reaped)?;
    ensure!(
        reaped <= TTL + EXPIRY_SLACK,
        "the partitioned cell was reaped {reaped:.2?} after the disconnect; the bound is {:?}",
        TTL + EXPIRY_SLACK
    );
    ensure!(
        c.evictions("expired")? == expired + 1,
        "discovery's expiry counter did not count the partitioned cell"
    );

    let mut connect = vec!["network", "connect"];
    for alias in &aliases {
        connect.extend(["--alias", alias]);
    }
    connect.extend([network.as_str(), pure]);
    let issued = Instant::now();
    c.docker_ok(&connect)?;
    let back = c.wait_listed(&["pure"], issued, Duration::from_secs(30))?;
    t.record("network reconnect pure -> listed", back)?;
    let bound = HEARTBEAT + CELL_HTTP_TIMEOUT + JITTER;
    ensure!(
        back <= bound,
        "the reconnected cell was listed {back:.2?} after the reconnect; the bound is {bound:?}"
    );
    // Reconnecting publishes the port again, maybe on another host port.
    let pure_addr = c.published("pure", 8002, 1)?;
    send_and_check(
        &mesh.alpha_addr,
        "pure",
        &pure_addr,
        "after the partition healed",
    )
}

/// `--scale pure=10` with unique ids: ten distinct ids and host names, one
/// replica reached through alpha's `/send`, all twelve containers healthy.
fn ten_replicas_get_ten_ids(c: &Cluster, t: &mut Timings, mesh: &Mesh) -> Result<()> {
    let issued = Instant::now();
    let scale = format!("pure={REPLICAS}");
    c.compose_ok(
        &["up", "-d", "--no-deps", "--scale", &scale, "pure"],
        &[("PURE_UNIQUE_ID", "true")],
        Duration::from_secs(240),
    )?;
    let ((replicas, peers), _) = c.wait_for(
        "ten distinct pure-* ids and alpha",
        Duration::from_secs(120),
        |c| {
            let peers = c.peers().ok()?;
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
    let health = http(&third, "GET", "/health", None)?.json()?;
    let third_id = health["cell_id"]
        .as_str()
        .context("a replica's /health has no cell_id")?
        .to_owned();
    ensure!(
        replicas.contains(&third_id),
        "{third_id} is not among {replicas:?}"
    );
    send_and_check(&mesh.alpha_addr, &third_id, &third, "to one replica of ten")?;

    let mut all = c.containers("pure")?;
    ensure!(
        all.len() == REPLICAS,
        "compose runs {} pure containers",
        all.len()
    );
    all.extend([mesh.discovery.clone(), mesh.alpha.clone()]);
    let step = Instant::now();
    c.wait_healthy(
        &all.iter().map(String::as_str).collect::<Vec<_>>(),
        Duration::from_secs(90),
    )?;
    t.record("all twelve containers healthy", step.elapsed())?;
    Ok(())
}

/// Both cells carry the fields the original cells registered (seed-api.md).
fn check_original_fields(c: &Cluster, pure: &str, alpha: &str) -> Result<()> {
    let peers = c.peers()?;
    ensure!(
        peers["my_host"] == "primary",
        "my_host is {}",
        peers["my_host"]
    );
    let list = peer_list(&peers);
    ensure!(
        peers["count"] == json!(list.len()) && list.len() == 2,
        "expected two peers, got {peers}"
    );
    let by_id: BTreeMap<&str, &Value> = list
        .iter()
        .filter_map(|p| Some((p["cell_id"].as_str()?, p)))
        .collect();
    let expected = [
        (
            "pure",
            pure,
            8002,
            json!(["consciousness-primitives"]),
            "pure_cell",
            0.0..=1.0,
        ),
        (
            "alpha",
            alpha,
            8000,
            json!(ALPHA_SERVICES),
            "alpha_cell",
            0.0..=100.0,
        ),
    ];
    for (id, container, port, services, kind, levels) in expected {
        let peer = by_id
            .get(id)
            .with_context(|| format!("{id} is not listed"))?;
        let hostname = c.docker_ok(&["inspect", "-f", "{{.Config.Hostname}}", container])?;
        let level = peer["consciousness_level"].as_f64();
        let checks = [
            ("port", peer["port"] == json!(port)),
            ("services", peer["services"] == services),
            ("type", peer["type"] == kind),
            ("branch", peer["branch"] == "main"),
            (
                "ip (the container's HOSTNAME)",
                peer["ip"] == hostname.as_str(),
            ),
            ("hostname", peer["hostname"] == hostname.as_str()),
            (
                "consciousness_level",
                level.is_some_and(|l| levels.contains(&l)),
            ),
            (
                "last_seen (ISO-8601, Z)",
                peer["last_seen"]
                    .as_str()
                    .is_some_and(|s| s.ends_with('Z') && s.contains('T')),
            ),
        ];
        for (field, ok) in checks {
            ensure!(
                ok,
                "{id}'s {field} differs from the original registration: {peer}"
            );
        }
    }
    Ok(())
}

/// `POST /send` on the sender, then the message must be in the receiver's
/// `/messages` (the sender retries while its mesh view catches up).
fn send_and_check(sender: &str, to_cell: &str, receiver: &str, what: &str) -> Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let content = format!("cluster test {what} {nanos}");
    let body = json!({"to_cell": to_cell, "content": content, "message_type": "text"});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http(sender, "POST", "/send", Some(&body));
        match answer {
            Ok(a) if a.status == 200 => break,
            Ok(a) if Instant::now() < deadline => {
                say!(
                    "  /send to {to_cell} answered {}: {}; retrying",
                    a.status,
                    a.body
                );
            }
            Err(e) if Instant::now() < deadline => {
                say!("  /send to {to_cell}: {e:#}; retrying")
            }
            Ok(a) => bail!(
                "/send to {to_cell} ({what}) answered {}: {}",
                a.status,
                a.body
            ),
            Err(e) => return Err(e.context(format!("/send to {to_cell} ({what})"))),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let messages = http(receiver, "GET", "/messages?limit=100", None)?.json()?;
    let found = messages["messages"].as_array().is_some_and(|list| {
        list.iter()
            .any(|m| m["content"] == content.as_str() && m["from_cell"] == "alpha")
    });
    ensure!(
        found,
        "{to_cell}'s /messages lacks the message sent {what}: {messages}"
    );
    Ok(())
}

fn peer_list(peers: &Value) -> &[Value] {
    peers["peers"].as_array().map_or(&[], Vec::as_slice)
}

// ---------------------------------------------------------------------------
// The cluster and its drop guard.

/// A compose project of this test; dropping it removes every container,
/// network, volume and image tag the test made.
struct Cluster {
    compose: Vec<String>,
    project: String,
    file: PathBuf,
    tag: String,
    env: Vec<(&'static str, String)>,
    discovery_addr: String,
    images_built: bool,
    succeeded: bool,
}

impl Cluster {
    fn new(compose: Vec<String>) -> Result<Self> {
        let suffix = unique_suffix();
        let root = repo_root();
        let tag = format!("{TAG_PREFIX}{suffix}");
        let ms = |d: Duration| d.as_millis().to_string();
        // Every variable the compose file reads, so nothing from the
        // caller's environment leaks in. Host ports empty: ephemeral.
        let env = vec![
            ("CELLMESH_TAG", tag.clone()),
            ("CELLMESH_PUBLISH_ADDR", "127.0.0.1".to_owned()),
            ("DISCOVERY_HOST_PORT", String::new()),
            ("PURE_HOST_PORT", String::new()),
            ("ALPHA_HOST_PORT", String::new()),
            ("DISCOVERY_PORT", "8001".to_owned()),
            ("PURE_PORT", "8002".to_owned()),
            ("ALPHA_PORT", "8000".to_owned()),
            ("CELL_ID", "primary".to_owned()),
            ("DISCOVERY_TTL", format!("{}ms", ms(TTL))),
            ("DISCOVERY_STARTUP_GRACE", "0s".to_owned()),
            ("CELLMESH_HEARTBEAT_MS", ms(HEARTBEAT)),
            ("AIOS_BRANCH", "main".to_owned()),
            ("PURE_CELL_ID", "pure".to_owned()),
            ("ALPHA_CELL_ID", "alpha".to_owned()),
            ("PURE_UNIQUE_ID", "false".to_owned()),
            ("DISCOVERY_TOKEN", String::new()),
            ("HEALTHCHECK_INTERVAL", "2s".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        Ok(Self {
            compose,
            project: format!("{PROJECT_PREFIX}{suffix}"),
            file: root.join("examples/compose/docker-compose.yml"),
            tag,
            env,
            discovery_addr: String::new(),
            images_built: false,
            succeeded: false,
        })
    }

    /// `examples/compose/build-images --tag <ours>`, its output streamed.
    fn build_images(&mut self) -> Result<()> {
        let script = repo_root().join("examples/compose/build-images");
        let mut cmd = Command::new(&script);
        cmd.args(["--tag", &self.tag]).current_dir(repo_root());
        self.images_built = true; // from here on, the guard removes the tags
        let status = run_streamed(&mut cmd, Duration::from_secs(1200))?;
        ensure!(status.success(), "{} failed ({status})", script.display());
        Ok(())
    }

    fn compose_cmd(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .env_remove("COMPOSE_PROFILES");
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        for (key, value) in extra_env {
            cmd.env(key, value);
        }
        cmd
    }

    fn compose_ok(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String> {
        checked(&mut self.compose_cmd(args, extra_env), timeout)
    }

    fn docker_ok(&self, args: &[&str]) -> Result<String> {
        checked(Command::new("docker").args(args), Duration::from_secs(60))
    }

    /// Runs `docker args...` on a thread; the thread yields how long it took.
    fn docker_in_background(&self, args: &[&str]) -> std::thread::JoinHandle<Result<Duration>> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        std::thread::spawn(move || {
            let started = Instant::now();
            checked(Command::new("docker").args(&args), Duration::from_secs(60))?;
            Ok(started.elapsed())
        })
    }

    /// The ids of a service's containers, running or not.
    fn containers(&self, service: &str) -> Result<Vec<String>> {
        let out = self.compose_ok(&["ps", "-q", service], &[], Duration::from_secs(60))?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn container(&self, service: &str) -> Result<String> {
        let ids = self.containers(service)?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("expected one {service} container, found {ids:?}"),
        }
    }

    /// `127.0.0.1:PORT` published for a service's container port.
    fn published(&self, service: &str, port: u16, index: usize) -> Result<String> {
        let index = format!("--index={index}");
        let out = self.compose_ok(
            &["port", &index, service, &port.to_string()],
            &[],
            Duration::from_secs(60),
        )?;
        let addr: SocketAddr = out
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .with_context(|| format!("`compose port {service} {port}` printed {out:?}"))?;
        ensure!(addr.port() != 0, "{service}:{port} is not published");
        Ok(format!("127.0.0.1:{}", addr.port()))
    }

    /// Discovery's published address; its ephemeral port may change when it restarts.
    fn refresh_discovery_addr(&mut self) -> Result<()> {
        self.discovery_addr = self.published("discovery", 8001, 1)?;
        Ok(())
    }

    fn peers(&self) -> Result<Value> {
        let answer = http(&self.discovery_addr, "GET", "/peers", None)?;
        ensure!(
            answer.status == 200,
            "GET /peers answered {}: {}",
            answer.status,
            answer.body
        );
        answer.json()
    }

    fn peer_ids(&self) -> Option<BTreeSet<String>> {
        let peers = self.peers().ok()?;
        Some(
            peer_list(&peers)
                .iter()
                .filter_map(|p| p["cell_id"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// `discovery_evictions_total{reason="<reason>"}` from discovery's /metrics.
    fn evictions(&self, reason: &str) -> Result<u64> {
        let text = http(&self.discovery_addr, "GET", "/metrics", None)?.body;
        let prefix = format!("discovery_evictions_total{{reason=\"{reason}\"}}");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .with_context(|| format!("discovery's /metrics has no {prefix}"))?;
        let value: f64 = line[prefix.len()..]
            .trim()
            .parse()
            .with_context(|| line.to_owned())?;
        Ok(value as u64)
    }

    /// Polls `probe` every [`POLL`] until it yields; returns the value and
    /// how long it took.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Self) -> Option<T>,
    ) -> Result<(T, Duration)> {
        let started = Instant::now();
        loop {
            if let Some(value) = probe(self) {
                return Ok((value, started.elapsed()));
            }
            if started.elapsed() > timeout {
                let seen = self.peer_ids();
                bail!("timed out after {timeout:?} waiting for {what}; discovery lists {seen:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until discovery lists every one of `ids`; returns the time
    /// since `since` (when the action being measured was issued).
    fn wait_listed(&self, ids: &[&str], since: Instant, timeout: Duration) -> Result<Duration> {
        self.wait_for(&format!("{ids:?} listed"), timeout, |c| {
            let seen = c.peer_ids()?;
            ids.iter().all(|id| seen.contains(*id)).then_some(())
        })?;
        Ok(since.elapsed())
    }

    /// Waits until discovery answers and does not list `id`; returns the
    /// time since `since`.
    fn wait_absent(&self, id: &str, since: Instant, timeout: Duration) -> Result<Duration> {
        self.wait_for(&format!("{id} removed"), timeout, |c| {
            (!c.peer_ids()?.contains(id)).then_some(())
        })?;
        Ok(since.elapsed())
    }

    fn wait_healthy(&self, containers: &[&str], timeout: Duration) -> Result<()> {
        let format = "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}";
        let started = Instant::now();
        loop {
            let mut args = vec!["inspect", "-f", format];
            args.extend_from_slice(containers);
            let out = self.docker_ok(&args)?;
            if out.lines().all(|l| l.trim() == "healthy") {
                return Ok(());
            }
            ensure!(
                started.elapsed() < timeout,
                "containers not healthy after {timeout:?}: {:?}",
                out.lines().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The compose network a container is attached to.
    fn network_of(&self, container: &str) -> Result<String> {
        let out = self.docker_ok(&[
            "inspect",
            "-f",
            "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}\n{{end}}",
            container,
        ])?;
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
    fn aliases(&self, container: &str, network: &str) -> Result<Vec<String>> {
        let out = self.docker_ok(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            container,
        ])?;
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

    fn down(&self) -> Result<()> {
        self.compose_ok(
            &["down", "-v", "--remove-orphans", "-t", "10"],
            &[],
            Duration::from_secs(180),
        )
        .map(drop)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.succeeded {
            // Logs first, while the containers still exist.
            let mut logs = self.compose_cmd(&["logs", "--no-color", "--tail=60"], &[]);
            match run(&mut logs, Duration::from_secs(60)) {
                Ok(out) => say!(
                    "---- compose logs (last 60 lines per container) ----\n{}{}",
                    out.stdout,
                    out.stderr
                ),
                Err(e) => say!("cannot read the compose logs: {e:#}"),
            }
        }
        if let Err(e) = self.down() {
            say!("cleanup: compose down failed: {e:#}");
        }
        if self.images_built {
            for image in ["discovery", "cell-host"] {
                let name = format!("cellmesh/{image}:{}", self.tag);
                let mut rmi = Command::new("docker");
                rmi.args(["image", "rm", &name]);
                if let Err(e) = checked(&mut rmi, Duration::from_secs(60)) {
                    say!("cleanup: cannot remove the image tag {name}: {e:#}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Environment: is Docker there, which Compose, CI or not.

/// The Compose command, or why the test cannot run.
fn preflight() -> Result<Vec<String>, String> {
    if !in_ci() && std::env::var("CELLMESH_SKIP_CLUSTER").is_ok_and(|v| !v.is_empty() && v != "0") {
        return Err("CELLMESH_SKIP_CLUSTER is set".to_owned());
    }
    let info = run(
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
        if run(&mut cmd, Duration::from_secs(30)).is_ok_and(|o| o.status.success()) {
            return Ok(candidate.clone());
        }
    }
    Err(format!("no Compose command works (tried {candidates:?})"))
}

/// Removes what earlier runs of this test left behind when they could not
/// clean up (killed by a timeout or Ctrl-C): compose projects and image tags
/// whose name carries the id of a process that no longer exists.
fn sweep_dead_runs(compose: &[String]) {
    let label = "{{.Label \"com.docker.compose.project\"}}";
    let mut projects = BTreeSet::new();
    for kind in [&["ps", "-a"][..], &["network", "ls"], &["volume", "ls"]] {
        let mut cmd = Command::new("docker");
        cmd.args(kind).args([
            "--filter",
            "label=com.docker.compose.project",
            "--format",
            label,
        ]);
        if let Ok(out) = checked(&mut cmd, Duration::from_secs(60)) {
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
            .arg(repo_root().join("examples/compose/docker-compose.yml"))
            .args(["down", "-v", "--remove-orphans", "-t", "1"]);
        if let Err(e) = checked(&mut down, Duration::from_secs(120)) {
            say!("cluster test: cannot remove {project}: {e:#}");
        }
    }
    let mut images = Command::new("docker");
    images.args(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    for image in checked(&mut images, Duration::from_secs(60))
        .unwrap_or_default()
        .lines()
    {
        let Some((repo, tag)) = image.split_once(':') else {
            continue;
        };
        let ours = matches!(repo, "cellmesh/discovery" | "cellmesh/cell-host");
        if ours && tag.strip_prefix(TAG_PREFIX).is_some_and(run_is_dead) {
            let _ = checked(
                Command::new("docker").args(["image", "rm", image]),
                Duration::from_secs(60),
            );
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

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn timings_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                repo_root().join(t)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("cluster-timings.txt")
}

/// A lowercase alphanumeric suffix unique to this run: its process id and
/// start time (Unix seconds, hexadecimal).
fn unique_suffix() -> String {
    format!("{}x{:x}", std::process::id(), unix_now())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Measured times: printed as they come and kept in a file.
struct Timings {
    path: PathBuf,
    text: String,
}

impl Timings {
    fn new(path: PathBuf) -> Result<Self> {
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

    fn record(&mut self, what: &str, took: Duration) -> Result<()> {
        let line = format!("{what:<52} {:>8.3} s", took.as_secs_f64());
        say!("cluster timing: {line}");
        self.text.push_str(&line);
        self.text.push('\n');
        self.save()
    }

    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.path, &self.text)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

// ---------------------------------------------------------------------------
// Processes with deadlines.

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion, capturing its output; kills it at `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let status = wait_with_deadline(&mut child, timeout, &what)?;
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Runs `cmd` with its output going to ours; kills it at `timeout`.
fn run_streamed(cmd: &mut Command, timeout: Duration) -> Result<ExitStatus> {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start `{what}`"))?;
    wait_with_deadline(&mut child, timeout, &what)
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    timeout: Duration,
    what: &str,
) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{what}` did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd`; its trimmed stdout, or an error with its stderr.
fn checked(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let what = describe(cmd);
    let out = run(cmd, timeout)?;
    ensure!(
        out.status.success(),
        "`{what}` failed ({}): {}",
        out.status,
        out.stderr.trim()
    );
    Ok(out.stdout.trim().to_owned())
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection), enough for JSON
// on loopback without pulling an async runtime into this test.

struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        ensure!(
            (200..300).contains(&self.status),
            "answered {}: {}",
            self.status,
            self.body
        );
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
    let timeout = Duration::from_secs(5);
    let sock: SocketAddr = addr
        .parse()
        .with_context(|| format!("bad address {addr}"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("{method} http://{addr}{path}: connect"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n");
    if body.is_some() {
        let _ = write!(
            request,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        );
    }
    request.push_str("\r\n");
    request.push_str(&payload);
    stream
        .write_all(request.as_bytes())
        .with_context(|| format!("{method} http://{addr}{path}: send"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("{method} http://{addr}{path}: read"))?;
    parse_answer(&raw).with_context(|| format!("{method} http://{addr}{path}"))
}

fn parse_answer(raw: &[u8]) -> Result<Answer> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no complete header in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut rest = &raw[split + 4..];
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let end = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| anyhow!("truncated chunk size"))?;
            let size_text = String::from_utf8_lossy(&rest[..end]);
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            rest = &rest[end + 2..];
            if size == 0 {
                break body;
            }
            ensure!(rest.len() >= size + 2, "truncated chunk");
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    } else if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        ensure!(rest.len() >= length, "body shorter than its content-length");
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
