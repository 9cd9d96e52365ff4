//! Lifecycle tests.

use std::time::{Duration, Instant};

use crate::TTL;
use crate::support::{Discovery, Host, PATIENCE, args, eventually};
use anyhow::Result;
use cellmesh_artifacts::{ALPHA_WASM, PURE_WASM};
use serde_json::json;

/// Acceptance: alpha's entry in discovery's `GET /peers` matches the
/// original alpha registration (docs/contract.md) field for field.
#[tokio::test]
async fn alpha_peers_entry_matches_the_original_registration() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    // A long heartbeat so the level is still the registered one.
    let host = Host::start(args(
        ALPHA_WASM,
        &discovery.url(),
        &["--heartbeat-ms", "600000"],
    ))
    .await?;
    let entry = host.registered_with(&discovery).await;
    let expected = json!({
        "cell_id": "alpha",
        "ip": "127.0.0.1",
        "port": host.addr.port(),
        "consciousness_level": 5.2,
        "services": ["code-analysis", "consciousness-sync", "dendritic-communication",
                     "tachyonic-archival", "geometric-engine"],
        "branch": "main",
        "type": "alpha_cell",
        "hostname": "127.0.0.1",
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&entry[field], value, "field `{field}` of {entry}");
    }
    let last_seen = entry["last_seen"].as_str().expect("last_seen is a string");
    assert!(last_seen.ends_with('Z'), "{last_seen}");
    host.stop().await?;
    assert!(
        discovery.peer("alpha").await.is_none(),
        "deregistered on stop"
    );
    Ok(())
}

#[tokio::test]
async fn pure_registers_with_its_manifest_and_evolved_level_reaches_discovery() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let host = Host::start(args(
        PURE_WASM,
        &discovery.url(),
        &["--heartbeat-ms", "100"],
    ))
    .await?;
    let entry = host.registered_with(&discovery).await;
    assert_eq!(entry["type"], "pure_cell");
    assert_eq!(entry["services"], json!(["consciousness-primitives"]));
    // The registration carried the manifest's level; heartbeats carry evolve's.
    let first = entry["consciousness_level"].as_f64().unwrap();
    let evolved = eventually("an evolved level in discovery", PATIENCE, || async {
        let level = discovery.peer("pure").await?["consciousness_level"].as_f64()?;
        (level > first).then_some(level)
    })
    .await;
    assert!(evolved <= 1.0);
    // ... and the cell's own /health agrees it is the plugin's level.
    let (status, health) = host.get("/health").await;
    assert_eq!(status, 200);
    assert!(health["consciousness_level"].as_f64().unwrap() >= evolved);
    host.stop().await?;
    Ok(())
}

#[tokio::test]
async fn re_registers_within_one_interval_after_discovery_restarts() -> Result<()> {
    let mut discovery = Discovery::start(TTL).await?;
    // A long interval, so that generous slack (well over 5x what the 404,
    // the registration and the poll take on a loaded machine) still tells
    // "at the next heartbeat" from "the one after".
    let interval = Duration::from_millis(2_000);
    let slack = Duration::from_millis(1_500);
    let host = Host::start(args(
        PURE_WASM,
        &discovery.url(),
        &["--heartbeat-ms", "2000"],
    ))
    .await?;
    host.registered_with(&discovery).await;
    discovery.restart(TTL).await?;
    let restarted = Instant::now();
    assert!(
        discovery.peer("pure").await.is_none(),
        "a fresh discovery is empty"
    );
    host.registered_with(&discovery).await;
    let took = restarted.elapsed();
    // One interval, plus the slack; two intervals would be over the bound.
    assert!(slack < interval);
    assert!(took <= interval + slack, "re-registered after {took:?}");
    host.stop().await?;
    Ok(())
}

/// With a token configured, discovery enforces per-cell secrets: heartbeats
/// and deregistration only work if the host kept and presented the secret
/// and incarnation from its registration answer.
#[tokio::test]
async fn secured_discovery_sees_token_secret_and_incarnation() -> Result<()> {
    let discovery = Discovery::start_secured(TTL, "s3cret-token", None).await?;
    let host = Host::start(args(
        PURE_WASM,
        &discovery.url(),
        &["--heartbeat-ms", "100", "--discovery-token", "s3cret-token"],
    ))
    .await?;
    let first = host.registered_with(&discovery).await;
    eventually("an accepted heartbeat", PATIENCE, || async {
        let now = discovery.peer("pure").await?;
        (now["last_seen"] != first["last_seen"]).then_some(())
    })
    .await;
    host.stop().await?;
    assert!(
        discovery.peer("pure").await.is_none(),
        "deregistered with its secret"
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn backoff_waits_follow_full_jitter_under_the_doubling_cap() {
    use cell_host::lifecycle::{BackoffPolicy, retry_with_backoff};
    use rand::SeedableRng;
    let policy = BackoffPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(30),
        attempts: 10,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut tries: Vec<tokio::time::Instant> = Vec::new();
    let started = tokio::time::Instant::now();
    let value = retry_with_backoff(policy, &mut rng, "test op", || {
        tries.push(tokio::time::Instant::now());
        let n = tries.len();
        async move { if n < 14 { Err("nope") } else { Ok(n) } }
    })
    .await;
    assert_eq!(value, 14, "keeps trying past the 10 announced tries");
    for (i, pair) in tries.windows(2).enumerate() {
        let wait = pair[1] - pair[0];
        assert!(
            wait <= policy.ceiling(i as u32),
            "wait {i} was {wait:?}, above {:?}",
            policy.ceiling(i as u32)
        );
    }
    let total = tries.last().unwrap().duration_since(started);
    let ceiling_sum: Duration = (0..13).map(|i| policy.ceiling(i)).sum();
    assert!(
        total <= ceiling_sum && total > Duration::from_secs(10),
        "{total:?}"
    );
}

/// The original did not back off after non-2xx answers; this host does.
#[tokio::test]
async fn registration_backs_off_on_non_2xx_answers() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = axum::Router::new()
        .route(
            "/register",
            axum::routing::post(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let (status, body) = if n < 3 {
                        (503, r#"{"detail":"busy"}"#)
                    } else {
                        (200, r#"{"status":"registered","cell_id":"pure"}"#)
                    };
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .route(
            "/peers",
            axum::routing::get(|| async { r#"{"peers":[],"count":0,"my_host":"x"}"# }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, fake).await });
    let host = Host::start(args(
        PURE_WASM,
        &url,
        &["--register-base-ms", "100", "--heartbeat-ms", "600000"],
    ))
    .await?;
    // Timed from here: loading the plugin (a compile on a cold cache) is
    // not part of the back-off.
    let started = Instant::now();
    eventually("four registration tries", PATIENCE, || async {
        (calls.load(Ordering::SeqCst) >= 4).then_some(())
    })
    .await;
    // Three failures then success: never a tight loop.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(started.elapsed() < Duration::from_secs(5));
    host.stop().await?;
    Ok(())
}
