//! Replays every example of the original wire contract (described in docs/contract.md).

use axum::http::StatusCode;
use serde_json::json;

use crate::*;

#[tokio::test]
async fn register_answers_like_the_original() {
    let (_, app) = router(cfg());
    let a = post(&app, "/register", &pure()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["status"], "registered");
    assert_eq!(a.json["cell_id"], "pure");
    assert!(a.json["incarnation"].as_u64().is_some());
    assert_eq!(a.json["secret"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn peers_lists_every_field_with_last_seen() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    post(&app, "/register", &alpha()).await;
    let a = get(&app, "/peers").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["count"], 2);
    assert_eq!(a.json["my_host"], "primary");
    let peers = a.json["peers"].as_array().unwrap();
    let alpha_peer = peers.iter().find(|p| p["cell_id"] == "alpha").unwrap();
    for (k, v) in alpha().as_object().unwrap() {
        assert_eq!(&alpha_peer[k], v, "field {k}");
    }
    let pure_peer = peers.iter().find(|p| p["cell_id"] == "pure").unwrap();
    for (k, v) in pure().as_object().unwrap() {
        assert_eq!(&pure_peer[k], v, "field {k}");
    }
    let ts = pure_peer["last_seen"].as_str().unwrap();
    // 2026-01-02T12:21:45.755329Z
    assert_eq!(ts.len(), 27, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
    assert!(pure_peer["age_ms"].as_u64().is_some());
}

#[tokio::test]
async fn cellinfo_defaults() {
    let (_, app) = router(cfg());
    let a = post(
        &app,
        "/register",
        &json!({"cell_id": "x", "ip": "h", "port": 1}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let p = get(&app, "/peers").await.json["peers"][0].clone();
    assert_eq!(p["consciousness_level"], 0.0);
    assert_eq!(p["services"], json!([]));
    assert_eq!(p["branch"], "main");
    assert_eq!(p["type"], "cell");
    assert_eq!(p["hostname"], "");
}

#[tokio::test]
async fn reregistering_replaces_the_entry() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    let mut again = pure();
    again["port"] = json!(9999);
    let a = post(&app, "/register", &again).await;
    assert_eq!(a.json["status"], "registered");
    assert_eq!(a.json["replaced"], true);
    let peers = get(&app, "/peers").await.json;
    assert_eq!(peers["count"], 1);
    assert_eq!(peers["peers"][0]["port"], 9999);
}

#[tokio::test]
async fn heartbeat_updates_level_and_answers_peers_count() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    post(&app, "/register", &alpha()).await;
    let a = post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": 0.4}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["status"], "ok");
    assert_eq!(a.json["cell_id"], "pure");
    assert_eq!(a.json["peers_count"], 2);
    let p = get(&app, "/peers/pure").await.json;
    assert_eq!(p["consciousness_level"], 0.4);
    // The level defaults to 0.0.
    post(&app, "/heartbeat", &json!({"cell_id": "pure"})).await;
    assert_eq!(
        get(&app, "/peers/pure").await.json["consciousness_level"],
        0.0
    );
}

#[tokio::test]
async fn heartbeat_of_an_unknown_id_is_404_with_the_original_detail() {
    let (_, app) = router(cfg());
    let a = post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "ghost", "consciousness_level": 1.0}),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.json,
        json!({"detail": "Peer ID not registered. Call /register first."})
    );
}

#[tokio::test]
async fn delete_peer_and_legacy_unregister() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    post(&app, "/register", &alpha()).await;
    let a = delete(&app, "/peer/pure").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json, json!({"status": "deregistered", "cell_id": "pure"}));
    let a = delete(&app, "/peer/pure").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json, json!({"detail": "Peer not found"}));
    let a = delete(&app, "/unregister/alpha").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["status"], "unregistered");
    let a = delete(&app, "/unregister/alpha").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json, json!({"detail": "Peer not found"}));
    assert_eq!(ids(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn health_and_metrics() {
    let (_, app) = router(Config {
        my_host: "primary".into(),
        ..cfg()
    });
    let h = get(&app, "/health").await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.json["status"], "healthy");
    assert_eq!(h.json["cell_id"], "primary");
    post(&app, "/register", &pure()).await;
    post(&app, "/register", &alpha()).await;
    let m = get(&app, "/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text
            .lines()
            .any(|l| l == "aios_cell_peers_count{cell_id=\"primary\"} 2"),
        "{}",
        m.text
    );
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn missing_or_mistyped_fields_are_422_in_fastapi_shape() {
    let (_, app) = router(cfg());
    let a = post(&app, "/register", &json!({"ip": "h", "port": 1})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = &a.json["detail"][0];
    assert_eq!(d["type"], "missing");
    assert_eq!(d["loc"], json!(["body", "cell_id"]));
    assert!(d["msg"].as_str().unwrap().contains("cell_id"));
    assert_eq!(d["input"], json!({"ip": "h", "port": 1}));

    let a = post(
        &app,
        "/register",
        &json!({"cell_id": "a", "ip": "h", "port": "eighty"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["detail"][0]["type"], "int_parsing");
    assert_eq!(a.json["detail"][0]["loc"], json!(["body", "port"]));
    assert!(
        a.json["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("port")
    );

    let a = post(&app, "/heartbeat", &json!({"consciousness_level": 1.0})).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["detail"][0]["loc"], json!(["body", "cell_id"]));

    let a = post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": "high"}),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.json["detail"][0]["type"], "float_parsing");
    assert_eq!(
        a.json["detail"][0]["loc"],
        json!(["body", "consciousness_level"])
    );
}

/// A cell written for the original: registers, heartbeats, is listed, deregisters.
#[tokio::test]
async fn original_cell_lifecycle() {
    let (_, app) = router(cfg());
    assert_eq!(
        post(
            &app,
            "/heartbeat",
            &json!({"cell_id": "pure", "consciousness_level": 0.1})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post(&app, "/register", &pure()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        post(
            &app,
            "/heartbeat",
            &json!({"cell_id": "pure", "consciousness_level": 0.1})
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(ids(&app).await, vec!["pure"]);
    assert_eq!(delete(&app, "/peer/pure").await.status, StatusCode::OK);
    assert!(ids(&app).await.is_empty());
}

/// Contract fidelity: the original discovery described itself as a cell on `/health`
/// (`branch`, `consciousness_level`, `services`, `type`, `hostname`); ours lacked them.
#[tokio::test]
async fn discovery_health_describes_itself_as_a_cell() {
    let (_, app) = router(cfg());
    let h = get(&app, "/health").await.json;
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["cell_id"], "primary");
    assert_eq!(h["branch"], "main");
    assert_eq!(h["consciousness_level"], 0.0);
    assert_eq!(h["services"], json!(["discovery"]));
    assert_eq!(h["type"], "discovery");
    assert!(h["hostname"].is_string(), "{h}");
}

/// The key set of a JSON object.
fn keys(v: &serde_json::Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(names: &[&str]) -> std::collections::BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts that `answer`'s keys are exactly the original's plus our documented additions.
#[track_caller]
fn assert_keys(what: &str, answer: &serde_json::Value, original: &[&str], added: &[&str]) {
    let want = &set(original) | &set(added);
    let got = keys(answer);
    assert_eq!(
        got,
        want,
        "{what}: missing {:?}, undocumented {:?}",
        want.difference(&got).collect::<Vec<_>>(),
        got.difference(&want).collect::<Vec<_>>()
    );
}

/// CellInfo as the original listed it, and what cellmesh adds (docs/contract.md).
const PEER: &[&str] = &[
    "cell_id",
    "ip",
    "port",
    "consciousness_level",
    "services",
    "branch",
    "type",
    "hostname",
    "last_seen",
];
const PEER_ADDED: &[&str] = &["incarnation", "age_ms"];

/// Every discovery answer carries the original's keys plus the additions documented in
/// docs/contract.md, and nothing else: the next difference (either way) fails here.
#[tokio::test]
async fn every_discovery_answer_has_the_original_keys_plus_documented_additions() {
    let (_, app) = router(cfg());
    let a = post(&app, "/register", &pure()).await;
    assert_keys(
        "POST /register",
        &a.json,
        &["status", "cell_id"],
        &["incarnation", "secret", "replaced", "ttl_ms"],
    );
    post(&app, "/register", &alpha()).await;
    let a = post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": 0.2}),
    )
    .await;
    assert_keys(
        "POST /heartbeat",
        &a.json,
        &["status", "cell_id", "peers_count"],
        &["incarnation"],
    );
    let a = post(&app, "/heartbeat", &json!({"cell_id": "ghost"})).await;
    assert_keys("POST /heartbeat 404", &a.json, &["detail"], &[]);
    let a = post(&app, "/heartbeat", &json!({})).await;
    assert_keys("POST /heartbeat 422", &a.json, &["detail"], &[]);
    for d in a.json["detail"].as_array().unwrap() {
        assert_keys("422 detail item", d, &["type", "loc", "msg", "input"], &[]);
    }
    let a = get(&app, "/peers").await;
    assert_keys(
        "GET /peers",
        &a.json,
        &["peers", "count", "my_host"],
        &["revision"],
    );
    for p in a.json["peers"].as_array().unwrap() {
        assert_keys("GET /peers item", p, PEER, PEER_ADDED);
    }
    let a = get(&app, "/peers/alpha").await;
    assert_keys("GET /peers/{id}", &a.json, PEER, PEER_ADDED);
    let a = get(&app, "/health").await;
    assert_keys(
        "GET /health",
        &a.json,
        &[
            "status",
            "cell_id",
            "branch",
            "consciousness_level",
            "services",
            "type",
            "hostname",
        ],
        &[
            "service",
            "my_host",
            "peers_count",
            "revision",
            "ready",
            "uptime_seconds",
            "timestamp",
            "version",
        ],
    );
    assert_keys(
        "GET /readyz",
        &get(&app, "/readyz").await.json,
        &[],
        &["status"],
    );
    let a = delete(&app, "/peer/pure").await;
    assert_keys("DELETE /peer/{id}", &a.json, &["status", "cell_id"], &[]);
    let a = delete(&app, "/peer/pure").await;
    assert_keys("DELETE /peer/{id} 404", &a.json, &["detail"], &[]);
    let a = delete(&app, "/unregister/alpha").await;
    assert_keys(
        "DELETE /unregister/{id}",
        &a.json,
        &["status"],
        &["cell_id"],
    );
    let a = delete(&app, "/unregister/alpha").await;
    assert_keys("DELETE /unregister/{id} 404", &a.json, &["detail"], &[]);
}
