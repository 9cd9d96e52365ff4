//! Failures stay per cell: a cell whose plugin cannot load, or that
//! discovery refuses, is marked failed on the admin API with the reason
//! while the others run; the host exits non-zero only when every cell
//! failed.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use cellmesh_artifacts::{FIXTURE_NOT_WASM, PURE_WASM};

use super::harness::{
    CellsFile, HostProcess, SHORT_TTL, admin_get, cell_table, crowd_turn, host_flags, listed,
    peers_named,
};
use crate::support::{Discovery, PATIENCE, eventually};

/// Well-behaved cells beside the failing one.
const GOOD: usize = 3;

/// The file name of `path`.
fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// Waits until the admin API reports `failed` failed cells, and answers
/// their entries.
async fn failed_cells(admin: std::net::SocketAddr, failed: usize) -> Vec<serde_json::Value> {
    eventually(
        &format!("{failed} failed cell(s) on /cells?state=failed"),
        PATIENCE,
        || async {
            let (status, listing) = admin_get(admin, "/cells?state=failed").await.ok()?;
            let cells = listing["cells"].as_array()?.clone();
            (status == 200 && cells.len() == failed).then_some(cells)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_cannot_load_fails_its_cell_alone() -> Result<()> {
    let _turn = crowd_turn().await;
    let discovery = Discovery::start(SHORT_TTL).await?;
    let toml =
        cell_table(FIXTURE_NOT_WASM, "broken", 1, &[]) + &cell_table(PURE_WASM, "ok", GOOD, &[]);
    let cells = CellsFile::write(&toml)?;
    let mut host = HostProcess::spawn(&host_flags(&cells.path(), &discovery.url()))?;
    let admin = host.admin_addr().await;

    listed(&discovery, &mut host, "ok-", GOOD, PATIENCE).await?;
    let failed = failed_cells(admin, 1).await;
    let entry = &failed[0];
    assert_eq!(entry["state"], "failed", "{entry}");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&file_name(FIXTURE_NOT_WASM)),
        "the reason names the file: {entry}"
    );
    eprintln!("fleet: failed cell on /cells: {entry}");
    let (status, listing) = admin_get(admin, "/cells").await?;
    assert_eq!(status, 200, "{listing}");
    assert_eq!(listing["counts"]["running"], GOOD, "{listing}");
    assert_eq!(listing["counts"]["failed"], 1, "{listing}");
    let (_, health) = admin_get(admin, "/health").await?;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        peers_named(&discovery, "broken").await?.is_empty(),
        "a failed cell is not registered"
    );
    assert!(host.is_running(), "the host stopped with cells running");

    // Running cells remain: a SIGTERM is a clean stop.
    host.stop_cleanly().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_discovery_refuses_fails_alone() -> Result<()> {
    let _turn = crowd_turn().await;
    let discovery = Discovery::start(SHORT_TTL).await?;
    // Discovery refuses a branch over 255 characters (422 naming `branch`);
    // the host passes it on as configured.
    let long_branch = "b".repeat(300);
    let toml = format!(
        "[[cell]]\nplugin = \"{}\"\nid = \"refused\"\nbranch = \"{long_branch}\"\n\n{}",
        PURE_WASM.replace('\\', "\\\\"),
        cell_table(PURE_WASM, "ok", GOOD, &[])
    );
    let cells = CellsFile::write(&toml)?;
    let mut host = HostProcess::spawn(&host_flags(&cells.path(), &discovery.url()))?;
    let admin = host.admin_addr().await;

    listed(&discovery, &mut host, "ok-", GOOD, PATIENCE).await?;
    let failed = failed_cells(admin, 1).await;
    let entry = &failed[0];
    assert_eq!(entry["cell_id"], "refused", "{entry}");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("discovery refused") && reason.contains("branch"),
        "{entry}"
    );
    eprintln!("fleet: refused cell on /cells: {entry}");
    assert!(peers_named(&discovery, "refused").await?.is_empty());
    assert!(host.is_running(), "the host stopped with cells running");

    host.stop_cleanly().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_every_cell_fails_exits_non_zero_saying_why() -> Result<()> {
    let _turn = crowd_turn().await;
    let discovery = Discovery::start(SHORT_TTL).await?;
    let toml = cell_table(FIXTURE_NOT_WASM, "broken", 1, &[])
        + &cell_table(FIXTURE_NOT_WASM, "also-broken", 1, &[]);
    let cells = CellsFile::write(&toml)?;
    let mut host = HostProcess::spawn(&host_flags(&cells.path(), &discovery.url()))?;
    // Target: at once (nothing to run); the bound is generous.
    let (status, took) = host.exited_within(Duration::from_secs(60)).await?;
    let output = host.output();
    assert!(!status.success(), "exit {status}; output:\n{output}");
    // The last word, after the logs: why, and which file.
    let error = output
        .lines()
        .rfind(|line| line.starts_with("cell-host:"))
        .unwrap_or_else(|| panic!("no error line in:\n{output}"));
    assert!(
        error.contains("every cell failed") && error.contains(&file_name(FIXTURE_NOT_WASM)),
        "{error}"
    );
    assert!(discovery.peers().await?.is_empty());
    eprintln!("fleet: {error}");
    eprintln!(
        "fleet: every cell failed: exit {status} after {:.2} s",
        took.as_secs_f64()
    );
    Ok(())
}
