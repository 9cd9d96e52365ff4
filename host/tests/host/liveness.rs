//! Liveness never waits on a plugin (issue 10, high 1, liveness side):
//! heartbeats carry the last level the plugin reported, `/health` and
//! `/metrics` answer from the last state it reported, while a plugin call
//! holds the instance.

use std::time::{Duration, Instant};

use crate::TTL;
use crate::support::{Discovery, Host, args, client};
use anyhow::Result;
use cellmesh_artifacts::{FIXTURE_LOOP_WASM, FIXTURE_SLEEP_WASM};
use serde_json::json;

/// How long the stuck call holds the instance: the looping fixture runs
/// until its CPU deadline, the sleeping one until its wall-clock bound, each
/// set this long.
const STUCK_MS: &str = "6000";
/// How long the test watches while the call is stuck (well inside it).
const WATCH: Duration = Duration::from_secs(4);

/// High 1: `evolve` ran before each heartbeat and `/health`, `/metrics`
/// called the plugin's `state`, all queued behind a stuck call (a cell got
/// evicted while its plugin slept). Now heartbeats stay on time, `/health`
/// and `/metrics` answer at once and `/health` says the plugin is busy.
/// Here the plugin spins in `handle-message` (CPU deadline raised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_health_and_metrics_never_wait_on_a_stuck_plugin() -> Result<()> {
    liveness_while_stuck(FIXTURE_LOOP_WASM, &["--call-timeout-ms", STUCK_MS]).await
}

/// High 1, as the hostile fixture: the plugin sleeps 60 s in
/// `handle-message` (no CPU burnt; only the wall-clock bound, raised here,
/// stops it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_health_and_metrics_never_wait_on_a_sleeping_plugin() -> Result<()> {
    liveness_while_stuck(FIXTURE_SLEEP_WASM, &["--call-wall-timeout-ms", STUCK_MS]).await
}

/// Holds the plugin of a host of `plugin` (with `bounds`) in one
/// `/message` call, and checks heartbeats, `/health` and `/metrics`
/// meanwhile.
async fn liveness_while_stuck(plugin: &str, bounds: &[&str]) -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let mut flags = vec!["--heartbeat-ms", "100"];
    flags.extend_from_slice(bounds);
    let host = Host::start(args(plugin, &discovery.url(), &flags)).await?;
    host.registered_with(&discovery).await;

    let url = format!("{}/message", host.url());
    let stuck = tokio::spawn(async move {
        client()
            .post(url)
            .json(&json!({"from_cell": "t", "content": "x"}))
            .send()
            .await
    });
    let started = Instant::now();
    let (mut slowest_health, mut slowest_metrics) = (Duration::ZERO, Duration::ZERO);
    let mut oldest_heartbeat_ms = 0;
    let mut saw_busy = false;
    while started.elapsed() < WATCH {
        let asked = Instant::now();
        let (status, health) = host.get("/health").await;
        slowest_health = slowest_health.max(asked.elapsed());
        assert_eq!(status, 200, "{health}");
        saw_busy |= health["plugin"]["status"] == "busy";

        let asked = Instant::now();
        let (status, _) = host.get_text("/metrics").await;
        slowest_metrics = slowest_metrics.max(asked.elapsed());
        assert_eq!(status, 200);

        if let Some(entry) = discovery.peer(&host.cell_id).await {
            oldest_heartbeat_ms = oldest_heartbeat_ms.max(entry["age_ms"].as_u64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Targets: /health and /metrics in milliseconds, a heartbeat every
    // 100 ms; the bounds are 10x those and far under the stuck call.
    assert!(
        slowest_health <= Duration::from_secs(1),
        "/health took {slowest_health:?}"
    );
    assert!(
        slowest_metrics <= Duration::from_secs(1),
        "/metrics took {slowest_metrics:?}"
    );
    assert!(
        oldest_heartbeat_ms <= 1_000,
        "a heartbeat was {oldest_heartbeat_ms} ms late"
    );
    assert!(saw_busy, "/health never said the plugin was busy");
    assert!(
        !stuck.is_finished(),
        "the call was not stuck for the whole watch"
    );
    let _ = stuck.await;
    host.stop().await?;
    Ok(())
}
