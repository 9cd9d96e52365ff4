//! The compose cluster test: the original system's manual verification
//! (described in docs/contract.md), automated against real containers, and more.
//!
//! It builds the images with `examples/compose/build-images --tag <unique>`
//! (quick when CI has already run the script: cargo is then up to date and
//! Docker reuses its layers), starts `examples/compose/docker-compose.yml`
//! under a unique project name with ports published on 127.0.0.1 only, on
//! ephemeral host ports, and with shorter intervals (heartbeat 2 s, TTL 6 s,
//! no start-up grace, healthchecks every 2 s), then checks, in order:
//!
//! 1. every container becomes healthy, and `/peers` lists pure and alpha with
//!    the fields of the original registration, and the dense host's 50 cells
//!    (one container, one cell-host) with distinct ids and ports, advertised
//!    under its service name; its admin API counts them; one of them answers
//!    `/health` at its listed address from inside the network (the probe in
//!    alpha's container) and receives alpha's `/send`;
//! 2. alpha's `POST /send` reaches pure's `/messages` through discovery;
//! 3. `docker stop` pure: removed at once, by deregistration (the eviction
//!    counters say so), the host exiting 0;
//! 4. `docker kill` pure: removed by expiry within TTL + 1 s;
//! 5. `docker start` pure: listed again within one heartbeat interval;
//! 6. `docker restart` discovery: every cell (the dense host's 50 too)
//!    listed again within one heartbeat interval plus jitter;
//! 7. pure disconnected from the network: reaped; reconnected: back, and
//!    reachable through `/send` again;
//! 8. `docker stop` the dense host: its 50 cells removed at once, by
//!    deregistration, the host exiting 0; `docker start`: listed again;
//!    `docker kill`: every one of them removed by expiry within TTL + 1 s
//!    (none before TTL - heartbeat), 50 expiries counted;
//! 9. `--scale pure=10` with unique ids: ten distinct ids listed, one of them
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
//!
//! Modules:
//! - `phases`: the checks above, one function per step;
//! - `checks`: checks several steps share (the original registration's
//!   fields, a message delivered through the mesh);
//! - `dense`: the dense host (many cells in one container): its listing, its
//!   reachability and its expiry;
//! - `bounds`: the intervals the cluster runs with and the time bounds;
//! - `compose`: the compose project of one run and its teardown guard;
//! - `docker`: `docker` commands on single containers;
//! - `leftovers`: run naming, and removal of what dead runs left behind;
//! - `preflight`: whether Docker and Compose are there, CI or not;
//! - `process`: child processes with deadlines;
//! - `http`: the reqwest client for the published APIs;
//! - `discovery`: discovery's `/peers` and `/metrics`;
//! - `wait`: polling with deadlines;
//! - `timings`: the measured times, printed and kept in a file;
//! - `paths`: the repository and the target directory.

/// `eprintln!` that libtest does not capture: the line goes to the real
/// stderr at once, so CI logs show timings and skip reasons of passing runs.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod bounds;
mod checks;
mod compose;
mod dense;
mod discovery;
mod docker;
mod http;
mod leftovers;
mod paths;
mod phases;
mod preflight;
mod process;
mod timings;
mod wait;

use std::time::Instant;

use anyhow::{Result, ensure};

use bounds::BUDGET;
use compose::Cluster;
use timings::Timings;

#[test]
fn compose_cluster_passes_the_original_verification_and_more() -> Result<()> {
    let started = Instant::now();
    let compose = match preflight::compose_command() {
        Ok(compose) => compose,
        Err(reason) if preflight::in_ci() => {
            panic!("CI=true, so the cluster test must run, but: {reason}")
        }
        Err(reason) => {
            say!("cluster test skipped: {reason}");
            timings::write_skipped(&reason)?;
            return Ok(());
        }
    };
    leftovers::sweep_dead_runs(&compose);
    let mut timings = Timings::new(paths::timings_file())?;
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

    let mesh = phases::start_mesh(c, t)?;
    checks::send_and_check(
        &c.http,
        &mesh.alpha_addr,
        "pure",
        &mesh.pure_addr,
        "through the mesh",
    )?;
    phases::stop_deregisters(c, t, &mesh.pure)?;
    phases::kill_expires_and_start_returns(c, t, &mesh.pure)?;
    phases::discovery_restart_is_survived(c, t, &mesh.discovery)?;
    phases::partition_reaps_and_heals(c, t, &mesh)?;
    dense::stop_deregisters_every_cell(c, t, &mesh.dense)?;
    dense::kill_expires_every_cell(c, t, &mesh.dense)?;
    phases::ten_replicas_get_ten_ids(c, t, &mesh)?;

    // Teardown is measured too (the drop guard repeats it harmlessly).
    let step = Instant::now();
    c.down()?;
    t.record("compose down -v (thirteen containers)", step.elapsed())?;
    let took = started.elapsed();
    t.record("cluster checks, up to teardown", took)?;
    ensure!(
        took <= BUDGET,
        "the cluster checks took {took:.0?}, over their {BUDGET:?} budget"
    );
    Ok(())
}
