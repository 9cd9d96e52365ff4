//! `kill -9` of a host of 1,000 cells: no deregistration, so discovery
//! must reap them all when their shared lease runs out (target TTL + 1 s;
//! this test's bound is TTL + 5 s). The cells are one failure domain, so the
//! mass-eviction guard does not hold them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cellmesh_artifacts::PURE_WASM;

use super::harness::{
    CellsFile, HostProcess, SHORT_TTL, cell_table, crowd_turn, host_flags, listed, peers_named,
};
use crate::support::Discovery;

/// Cells in the killed host.
const CELLS: usize = 1_000;
/// Bound on starting them all (a debug build on a busy 2-core machine).
const START_BOUND: Duration = Duration::from_secs(300);
/// Bound on their reaping after the kill: five times the 1 s target past
/// the TTL.
const REAP_BOUND: Duration = Duration::from_secs(SHORT_TTL.as_secs() + 5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_host_of_a_thousand_cells_is_reaped_within_the_ttl() -> Result<()> {
    let _turn = crowd_turn().await;
    let discovery = Discovery::start(SHORT_TTL).await?;
    // One table per cell with its own id (not `replicas`, whose hashed
    // suffixes collide now and then among a thousand).
    let toml: String = (0..CELLS)
        .map(|n| cell_table(PURE_WASM, &format!("doomed-{n:04}"), 1, &[]))
        .collect();
    let cells = CellsFile::write(&toml)?;
    let mut host = HostProcess::spawn(&host_flags(&cells.path(), &discovery.url()))?;
    listed(&discovery, &mut host, "doomed-", CELLS, START_BOUND).await?;
    eprintln!(
        "fleet: {CELLS} cells listed {:.1} s after the start",
        host.age().as_secs_f64()
    );
    // At least one batch heartbeat after the registration, so every lease
    // is a heartbeat's, not only the registration's.
    tokio::time::sleep(2 * super::harness::HEARTBEAT).await;

    host.kill_9()?;
    let killed = Instant::now();
    loop {
        let left = peers_named(&discovery, "doomed-").await?.len();
        if left == 0 {
            break;
        }
        if killed.elapsed() > REAP_BOUND {
            bail!(
                "{left} of {CELLS} cells still listed {:.1} s after kill -9 (TTL {SHORT_TTL:?})",
                killed.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reaped = killed.elapsed();
    eprintln!(
        "fleet: {CELLS} cells reaped {:.2} s after kill -9 (TTL {:.1} s; target TTL + 1 s, bound TTL + 5 s)",
        reaped.as_secs_f64(),
        SHORT_TTL.as_secs_f64()
    );
    assert!(reaped <= REAP_BOUND);
    let metrics = super::harness::discovery_metrics(&discovery).await?;
    assert_eq!(
        super::harness::series(&metrics, "discovery_evictions_total{reason=\"expired\"}"),
        Some(CELLS as f64),
        "every cell expired, none otherwise"
    );
    Ok(())
}
