//! Shutdown order (issue 10, low 10): deregister first, so peers stop
//! sending; then drain the requests in flight; then the plugin's hook.

use std::sync::Arc;
use std::time::Duration;

use crate::TTL;
use crate::support::{
    Discovery, Host, PATIENCE, args, client, eventually, register_as, serve_router,
};
use anyhow::Result;
use axum::routing::post;
use cellmesh_artifacts::PURE_WASM;
use serde_json::json;
use tokio::sync::{Notify, mpsc};

/// Low 10: a stopping host drained its requests (and ran the plugin's
/// hook) before it deregistered, so peers kept sending to a cell on its way
/// out. Now discovery forgets the cell while a request is still in flight,
/// and that request still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deregisters_before_draining_in_flight_requests() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    // A peer that holds every message until the test releases it.
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<()>();
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let peer = axum::Router::new().route(
        "/message",
        post(move || {
            let (arrived_tx, held) = (arrived_tx.clone(), held.clone());
            async move {
                let _ = arrived_tx.send(());
                held.notified().await;
                axum::Json(json!({"status": "received", "message_id": 1,
                                  "timestamp": "2026-01-01T00:00:00"}))
            }
        }),
    );
    let (peer_addr, _peer) = serve_router(peer).await?;
    let (status, body) = register_as(
        &discovery.url(),
        "slow",
        "127.0.0.1",
        peer_addr.port(),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");

    // Drain and peer timeouts far longer than the test: only the order can
    // let it pass.
    let host = Host::start(args(
        PURE_WASM,
        &discovery.url(),
        &["--drain-ms", "120000", "--http-timeout-ms", "120000"],
    ))
    .await?;
    host.registered_with(&discovery).await;
    let url = format!("{}/send", host.url());
    let in_flight = tokio::spawn(async move {
        client()
            .post(url)
            .timeout(Duration::from_secs(120))
            .json(&json!({"to_cell": "slow", "content": "last words"}))
            .send()
            .await
    });
    tokio::time::timeout(PATIENCE, arrived.recv())
        .await?
        .expect("the peer got the message");

    let stopping = tokio::spawn(host.stop());
    eventually(
        "deregistered while a request is in flight",
        PATIENCE,
        || async { discovery.peer("pure").await.is_none().then_some(()) },
    )
    .await;
    assert!(!in_flight.is_finished(), "the request was cut, not drained");
    release.notify_one();
    let answer = in_flight.await??;
    assert_eq!(answer.status(), 200, "the in-flight request completed");
    stopping.await??;
    Ok(())
}
