//! The real server on a socket: the original lifecycle over HTTP and graceful shutdown.

use std::time::Duration;

use discovery::{AppState, Config, serve, serve_with_state};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::*;

async fn start(
    config: Config,
) -> (
    String,
    AppState,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(config);
    let (tx, rx) = oneshot::channel::<()>();
    let s = state.clone();
    let task = tokio::spawn(async move {
        serve_with_state(listener, s, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (base, state, tx, task)
}

#[tokio::test]
async fn an_original_cell_works_over_http_and_shutdown_drains() {
    let (base, _state, stop, task) = start(cfg()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/register"))
        .json(&pure())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/heartbeat"))
        .json(&json!({"cell_id": "pure", "consciousness_level": 0.2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["peers_count"], 1);
    let peers: Value = http
        .get(format!("{base}/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peers["peers"][0]["cell_id"], "pure");
    // An open watch stream must not keep the server from stopping.
    let mut watch = http
        .get(format!("{base}/peers/watch"))
        .send()
        .await
        .unwrap();
    assert!(watch.chunk().await.unwrap().is_some());
    let r = http
        .delete(format!("{base}/peer/pure"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"status": "deregistered", "cell_id": "pure"})
    );
    let begun = std::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("drained in time")
        .unwrap();
    assert!(begun.elapsed() < Duration::from_secs(3));
    while let Ok(Some(_)) = watch.chunk().await {}
}

#[tokio::test]
async fn bad_configuration_is_an_error_not_a_panic() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = serve(
        listener,
        Config {
            ttl: Duration::ZERO,
            ..Config::default()
        },
        async {},
    )
    .await;
    assert!(matches!(err, Err(discovery::Error::Config(_))));
}
