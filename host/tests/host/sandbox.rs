//! Sandbox tests.

use crate::TTL;
use crate::support::{self, Discovery, Host, PATIENCE, args, eventually};
use anyhow::Result;
use cellmesh_artifacts::{FIXTURE_ALLOC_WASM, FIXTURE_LOOP_WASM, FIXTURE_TRAP_WASM};
use serde_json::json;

/// The CPU deadline of the looping fixture's test, the one limit it must
/// hit: every looping call costs a whole deadline, yet it stays well over
/// 5x what instantiating and the well-behaved calls take on a loaded
/// machine (the deadline is wall-clock time), so only the loop can hit it.
const LOOP_DEADLINE_MS: u64 = 1_000;
/// The CPU deadline where another limit is under test: unreachable, so the
/// verdict names that limit however slow the machine is.
const UNREACHABLE_DEADLINE_MS: u64 = 60_000;

/// A misbehaving fixture: the failing request answers a 5xx naming what
/// happened; the host keeps serving and heartbeating with a fresh instance.
async fn check_fixture(
    plugin: &str,
    call_timeout_ms: u64,
    expected_status: u16,
    expected_detail: &str,
) -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let call_timeout_ms = call_timeout_ms.to_string();
    let host = Host::start(args(
        plugin,
        &discovery.url(),
        &[
            "--call-timeout-ms",
            &call_timeout_ms,
            "--memory-limit-mb",
            "16",
            // The CPU deadline, the memory cap or a trap is under test: the
            // wall-clock bound stays out of reach.
            "--call-wall-timeout-ms",
            "120000",
            "--heartbeat-ms",
            "100",
            "--unique-id",
        ],
    ))
    .await?;
    let before = host.registered_with(&discovery).await;
    for path in ["/message", "/sync", "/invoke"] {
        let (status, body) = match path {
            "/message" => {
                host.post(path, &json!({"from_cell": "t", "content": "x"}))
                    .await
            }
            "/sync" => {
                host.post(path, &json!({"from_cell": "t", "consciousness_level": 1.0}))
                    .await
            }
            _ => {
                let (_, health) = host.get("/health").await;
                let capability = health["capabilities"][0]
                    .as_str()
                    .expect("a capability")
                    .to_owned();
                host.post(&format!("/invoke/{capability}"), &json!({}))
                    .await
            }
        };
        assert_eq!(status, expected_status, "{path}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(expected_detail), "{path}: {detail}");
        // Still serving: a fresh instance answers the well-behaved exports.
        let (status, health) = host.get("/health").await;
        assert_eq!(status, 200, "{health}");
    }
    // Still heartbeating: discovery sees fresh heartbeats after the failures.
    let seen = before["last_seen"].clone();
    eventually("a heartbeat after the failures", PATIENCE, || async {
        let now = discovery.peer(&host.cell_id).await?;
        (now["last_seen"] != seen).then_some(())
    })
    .await;
    let metrics = support::client()
        .get(format!("{}/metrics", host.url()))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("cellmesh_plugin_failures_total"),
        "{metrics}"
    );
    host.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_looping_plugin_hits_its_cpu_deadline() -> Result<()> {
    check_fixture(
        FIXTURE_LOOP_WASM,
        LOOP_DEADLINE_MS,
        504,
        "plugin exceeded its CPU deadline of 1000 ms",
    )
    .await
}

#[tokio::test]
async fn a_trapping_plugin_is_reported_and_replaced() -> Result<()> {
    check_fixture(
        FIXTURE_TRAP_WASM,
        UNREACHABLE_DEADLINE_MS,
        500,
        "plugin trapped",
    )
    .await
}

#[tokio::test]
async fn an_allocating_plugin_hits_its_memory_cap() -> Result<()> {
    check_fixture(
        FIXTURE_ALLOC_WASM,
        UNREACHABLE_DEADLINE_MS,
        500,
        "plugin exceeded its memory cap of 16 MiB",
    )
    .await
}

/// Hardening, "state resets are visible": every replacement of the plugin's
/// instance loses the plugin's in-memory state; it used to be silent
/// (alpha's archive vanished and `failures_total` stayed 0). Now `/health`
/// counts it by cause under `plugin.resets`, with the last one, and
/// `/metrics` has `cellmesh_plugin_resets_total{cause}`.
#[tokio::test]
async fn state_resets_are_visible_on_health_and_metrics_by_cause() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let host = Host::start(args(
        FIXTURE_TRAP_WASM,
        &discovery.url(),
        &[
            // Only the trap may end a call.
            "--call-timeout-ms",
            &UNREACHABLE_DEADLINE_MS.to_string(),
            "--call-wall-timeout-ms",
            "120000",
            "--unique-id",
        ],
    ))
    .await?;
    let (_, health) = host.get("/health").await;
    assert_eq!(health["plugin"]["resets"]["total"], 0, "{health}");
    assert_eq!(health["plugin"]["resets"]["last"], json!(null), "{health}");

    let (status, body) = host
        .post("/message", &json!({"from_cell": "t", "content": "x"}))
        .await;
    assert_eq!(status, 500, "{body}");

    let (_, health) = host.get("/health").await;
    let resets = &health["plugin"]["resets"];
    assert_eq!(resets["total"], 1, "{health}");
    assert_eq!(resets["by_cause"]["trap"], 1, "{health}");
    assert_eq!(resets["by_cause"]["cpu_deadline"], 0, "{health}");
    assert_eq!(resets["last"]["cause"], "trap", "{health}");
    assert_eq!(resets["last"]["export"], "handle-message", "{health}");
    assert!(
        resets["last"]["at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{health}"
    );

    let (status, metrics) = host.get_text("/metrics").await;
    assert_eq!(status, 200);
    let trap_line = metrics
        .lines()
        .find(|line| {
            line.starts_with("cellmesh_plugin_resets_total{") && line.contains("cause=\"trap\"")
        })
        .unwrap_or_else(|| panic!("no trap series in:\n{metrics}"));
    assert!(trap_line.ends_with(" 1.0000"), "{trap_line}");
    assert!(metrics.contains("# TYPE cellmesh_plugin_resets_total counter"));
    host.stop().await?;
    Ok(())
}
