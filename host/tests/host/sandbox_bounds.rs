//! Issue 10, High 1 and Medium 4, sandbox side: every plugin call has a
//! wall-clock bound, `send-message` a per-call budget, a caller that gives
//! up never cancels a call, and every state reset is counted by cause.
//!
//! The in-process tests run on paused time: the sleeping fixture sleeps on
//! tokio's clock (`wasi:clocks` subscribe), so the wall-clock bound, the
//! sleep and the slow sends are virtual and the verdict never depends on
//! the machine's speed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use cell_host::plugin::bindings::{Delivery, Message, Peer, SendError};
use cell_host::plugin::{
    HostServices, PluginEngine, PluginError, PluginSandbox, ResetCause, SendFuture,
};
use cellmesh_artifacts::{ALPHA_WASM, FIXTURE_SLEEP_WASM, FIXTURE_TRAP_WASM};
use serde_json::{Value, json};

use crate::TTL;
use crate::support::{self, Discovery, Host, args};

/// A mesh of `peers` cells where every send takes `send_time` (on tokio's
/// clock) and succeeds.
struct SlowMesh {
    peers: usize,
    send_time: Duration,
}

impl HostServices for SlowMesh {
    fn cell_id(&self) -> String {
        "tester".into()
    }
    fn config(&self) -> &[(String, String)] {
        &[]
    }
    fn mesh_peers(&self) -> Vec<Peer> {
        (0..self.peers)
            .map(|i| Peer {
                cell_id: format!("peer-{i}"),
                ip: "127.0.0.1".into(),
                port: 9,
                consciousness_level: 0.0,
                services: Vec::new(),
                branch: "main".into(),
                cell_type: "cell".into(),
                hostname: String::new(),
                age_ms: None,
            })
            .collect()
    }
    fn send_message(&self, to_cell: String, _msg: Message) -> SendFuture {
        let wait = self.send_time;
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            Ok::<_, SendError>(Delivery {
                message_id: 1,
                to_cell,
            })
        })
    }
}

/// Loads `plugin` in-process with the shared cache and `services`.
async fn load(plugin: &str, services: SlowMesh) -> Result<PluginSandbox> {
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let cache = cell_host::plugin::ComponentCache::new(support::cache_dir());
    Ok(
        PluginSandbox::builder(&engine, std::path::Path::new(plugin))
            .cache(Some(&cache))
            .services(Arc::new(services))
            .load()
            .await?,
    )
}

fn message(content: &str) -> Message {
    Message {
        from_cell: "t".into(),
        content: content.into(),
        message_type: "text".into(),
        priority: "normal".into(),
        metadata: "{}".into(),
    }
}

async fn archive(sandbox: &PluginSandbox, input: Value) -> Value {
    let output = sandbox
        .invoke("tachyonic-archival", &input.to_string())
        .await
        .expect("the call runs")
        .expect("the capability answers");
    serde_json::from_str(&output).expect("JSON output")
}

/// Finding: a guest sleeping in `handle-message` held the instance for its
/// whole sleep (the CPU deadline only counts while wasm runs). Now the
/// default wall-clock bound (1.75 s) ends the call: 504, well within 5x.
#[tokio::test]
async fn a_plugin_sleeping_in_handle_message_answers_504_within_the_wall_timeout() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let host = Host::start(args(FIXTURE_SLEEP_WASM, &discovery.url(), &["--unique-id"])).await?;
    let started = std::time::Instant::now();
    let (status, body) = host
        .post("/message", &json!({"from_cell": "t", "content": "x"}))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(took < Duration::from_millis(5 * 1_750), "took {took:?}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("wall-clock"), "{detail}");
    // The instance was replaced: the cell still answers.
    let (status, health) = host.get("/health").await;
    assert_eq!(status, 200, "{health}");
    host.stop().await?;
    Ok(())
}

/// Finding: alpha's archive vanished after a dropped request (the dropped
/// future abandoned the instance mid-call) and `failures_total` stayed 0.
/// Now a caller that gives up never cancels the call: it completes, the
/// instance (and its archive) stays, and nothing counts as a reset.
#[tokio::test(start_paused = true)]
async fn alphas_archive_survives_a_dropped_request() -> Result<()> {
    let sandbox = load(
        ALPHA_WASM,
        SlowMesh {
            peers: 1,
            send_time: Duration::from_millis(300),
        },
    )
    .await?;
    let stored = archive(&sandbox, json!({"op": "store", "key": "k", "value": 42})).await;
    assert_eq!(stored["entries"], 1, "{stored}");
    // A request that waits on a slow send, dropped by its caller mid-call.
    let input = json!({"to_cell": "peer-0", "content": "hello"}).to_string();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        sandbox.invoke("dendritic-communication", &input),
    )
    .await;
    assert!(dropped.is_err(), "the request was dropped mid-call");
    let got = archive(&sandbox, json!({"op": "get", "key": "k"})).await;
    assert_eq!(got["found"], true, "the archive vanished: {got}");
    assert_eq!(got["value"], 42, "{got}");
    let stats = sandbox.stats();
    assert_eq!(stats.instances.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failures.load(Ordering::Relaxed), 0);
    assert_eq!(stats.resets().total(), 0, "{:?}", stats.resets());
    Ok(())
}

/// Finding (Medium 4): an instance replaced after a failure lost the
/// plugin's state without a trace. Every reset is counted by cause, with
/// the last cause, the export and when.
#[tokio::test(start_paused = true)]
async fn state_resets_are_counted_by_cause_with_the_last_one() -> Result<()> {
    let idle = || SlowMesh {
        peers: 0,
        send_time: Duration::ZERO,
    };
    let sleeping = load(FIXTURE_SLEEP_WASM, idle()).await?;
    assert_eq!(sleeping.stats().resets().total(), 0);
    assert_eq!(sleeping.stats().resets().last, None);
    let error = sleeping.handle_message(&message("x")).await.unwrap_err();
    assert_eq!(error.kind(), "wall_timeout", "{error}");
    let resets = sleeping.stats().resets();
    assert_eq!(resets.count(ResetCause::WallTimeout), 1, "{resets:?}");
    assert_eq!(resets.total(), 1, "{resets:?}");
    let last = resets.last.expect("a last reset");
    assert_eq!(
        (last.cause, last.export),
        (ResetCause::WallTimeout, "handle-message")
    );
    assert!(last.at.ends_with('Z'), "{}", last.at);
    assert_eq!(sleeping.stats().failures.load(Ordering::Relaxed), 1);
    // A fresh instance answers the next call.
    sleeping.state().await?;
    assert_eq!(sleeping.stats().instances.load(Ordering::Relaxed), 2);

    let trapping = load(FIXTURE_TRAP_WASM, idle()).await?;
    let request = cell_host::plugin::bindings::SyncRequest {
        peer_id: "t".into(),
        peer_level: 1.0,
        context: Vec::new(),
    };
    assert_eq!(trapping.sync(&request).await.unwrap_err().kind(), "trap");
    let resets = trapping.stats().resets();
    assert_eq!(resets.count(ResetCause::Trap), 1, "{resets:?}");
    assert_eq!(resets.last.map(|l| l.export), Some("sync"));
    Ok(())
}

/// A busy plugin answers 503 with `Retry-After`; a wall-clock timeout 504.
#[test]
fn busy_is_503_with_retry_after_and_a_wall_clock_timeout_504() {
    use axum::response::IntoResponse;
    use cell_host::api::ApiError;
    let busy = ApiError::Plugin(PluginError::Busy {
        export: "handle-message",
        waited: Duration::from_millis(1_750),
    })
    .into_response();
    assert_eq!(busy.status().as_u16(), 503);
    assert_eq!(busy.headers()["retry-after"], "2");
    let timeout = ApiError::Plugin(PluginError::WallTimeout {
        export: "handle-message",
        limit: Duration::from_millis(1_750),
    })
    .into_response();
    assert_eq!(timeout.status().as_u16(), 504);
}

/// Finding: alpha's `"*"` fan-out held the instance for K sends of up to
/// 2 s each. Now `send-message` has a per-call budget (8 sends, 1 s in all):
/// past it the sends are refused, saying so, and the call ends in time.
#[tokio::test(start_paused = true)]
async fn alphas_fan_out_is_bounded_by_the_send_budget() -> Result<()> {
    let sandbox = load(
        ALPHA_WASM,
        SlowMesh {
            peers: 20,
            send_time: Duration::from_millis(300),
        },
    )
    .await?;
    let input = json!({"to_cell": "*", "content": "hello"}).to_string();
    let started = tokio::time::Instant::now();
    let output = sandbox
        .invoke("dendritic-communication", &input)
        .await
        .expect("the call ends normally")
        .expect("a fan-out answers");
    let took = started.elapsed();
    let output: Value = serde_json::from_str(&output)?;
    let delivered = output["delivered"].as_array().map_or(0, Vec::len);
    let failed = output["failed"].as_array().cloned().unwrap_or_default();
    assert!(delivered <= 8, "{delivered} delivered: {output}");
    assert_eq!(delivered + failed.len(), 20, "{output}");
    assert!(
        failed
            .iter()
            .all(|f| f["error"].as_str().unwrap_or("").contains("budget")),
        "{output}"
    );
    // 1 s of sends at most, then refusals that cost nothing.
    assert!(took <= Duration::from_millis(1_100), "took {took:?}");
    Ok(())
}

/// Finding: calls queued on the instance without bound. Waiting for the
/// instance is bounded by the wall-clock bound too: a third call, queued
/// behind two sleeping ones, is refused as busy.
#[tokio::test(start_paused = true)]
async fn a_call_waiting_too_long_for_the_instance_is_refused_as_busy() -> Result<()> {
    let sandbox = Arc::new(
        load(
            FIXTURE_SLEEP_WASM,
            SlowMesh {
                peers: 0,
                send_time: Duration::ZERO,
            },
        )
        .await?,
    );
    let wall = Duration::from_millis(1_750);
    let call =
        |s: Arc<PluginSandbox>| tokio::spawn(async move { s.handle_message(&message("x")).await });
    // A holds the instance from t=0; B and C queue from t=wall/2. A ends at
    // `wall` (timed out), B gets the instance and holds it until 2x wall,
    // past C's wait bound (1.5x wall).
    let a = call(sandbox.clone());
    tokio::time::sleep(wall / 2).await;
    let b = call(sandbox.clone());
    tokio::task::yield_now().await;
    let c = call(sandbox.clone());
    let (a, b, c) = (a.await?, b.await?, c.await?);
    let kind = |r: &Result<_, PluginError>| match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.kind().to_owned(),
    };
    assert_eq!(
        (kind(&a), kind(&b), kind(&c)),
        ("wall_timeout".into(), "wall_timeout".into(), "busy".into())
    );
    Ok(())
}
