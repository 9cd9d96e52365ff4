//! Messages tests.

use std::collections::BTreeSet;

use crate::TTL;
use crate::support::{self, Discovery, Host, args};
use anyhow::Result;
use cellmesh_artifacts::{ALPHA_WASM, PURE_WASM};
use serde_json::json;

#[tokio::test]
async fn send_delivers_between_two_hosts_through_discovery() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let pure = Host::start(args(PURE_WASM, &discovery.url(), &[])).await?;
    let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;
    pure.registered_with(&discovery).await;
    alpha.registered_with(&discovery).await;

    let (status, sent) = pure
        .post(
            "/send",
            &json!({"to_cell": "alpha", "content": "hello alpha", "priority": "high"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["to_cell"], "alpha");
    let (_, received) = alpha.get("/messages?from_cell=pure").await;
    let messages = received["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{received}");
    assert_eq!(messages[0]["content"], "hello alpha");
    assert_eq!(messages[0]["priority"], "high");
    assert_eq!(messages[0]["message_id"], sent["message_id"]);

    let (status, body) = pure
        .post("/send", &json!({"to_cell": "nobody", "content": "x"}))
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = pure
        .post("/send", &json!({"to_cell": "pure", "content": "x"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("itself"),
        "{body}"
    );

    // alpha's hand-kept list: send_to_peer to a registered and an unknown peer.
    let (status, _) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "pure-by-hand", "endpoint": pure.url()}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = alpha
        .post(
            "/send_to_peer",
            &json!({"peer_id": "pure-by-hand", "message": "hi"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, got) = pure.get("/messages?from_cell=alpha").await;
    assert_eq!(got["messages"][0]["content"], "hi", "{got}");
    let (status, _) = alpha
        .post(
            "/send_to_peer",
            &json!({"peer_id": "ghost", "message": "hi"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "dead", "endpoint": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = alpha
        .post(
            "/send_to_peer",
            &json!({"peer_id": "dead", "message": "hi"}),
        )
        .await;
    assert_eq!(status, 502);
    // /peers shows the mesh and the hand-kept list (whichever key holds
    // which: its shape is checked in `peer_contract`).
    let (_, peers) = alpha.get("/peers").await;
    let mut ids = BTreeSet::new();
    for key in ["peers", "mesh"] {
        match &peers[key] {
            serde_json::Value::Array(list) => ids.extend(
                list.iter()
                    .filter_map(|p| p["cell_id"].as_str().map(str::to_owned)),
            ),
            serde_json::Value::Object(by_id) => ids.extend(by_id.keys().cloned()),
            _ => {}
        }
    }
    assert!(
        ids.contains("pure") && ids.contains("pure-by-hand") && ids.contains("dead"),
        "{peers}"
    );
    pure.stop().await?;
    alpha.stop().await?;
    Ok(())
}

#[tokio::test]
async fn api_answers_the_union_of_pure_and_alpha() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let pure = Host::start(args(PURE_WASM, &discovery.url(), &[])).await?;

    let (status, health) = pure.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "pure_consciousness");
    assert_eq!(health["type"], "pure_cell");
    assert_eq!(health["purity_level"], "minimal_viable_consciousness");
    for key in [
        "cell_id",
        "branch",
        "consciousness_level",
        "primitives",
        "consciousness",
        "capabilities",
        "peers_count",
        "messages_count",
        "timestamp",
    ] {
        assert!(health.get(key).is_some(), "/health lacks {key}: {health}");
    }
    assert_eq!(health["primitives"]["awareness"], 0.1);

    let (_, prims) = pure.get("/consciousness/primitives").await;
    assert_eq!(prims["purity_level"], "minimal_viable_consciousness");
    let (status, synced) = pure
        .post(
            "/consciousness/sync",
            &json!({"level": 7.0, "context": {"awareness": 0.9}}),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["new_level"], 1.0);
    // `delta` is ours (the original answered without it): |old - peer|.
    let old = synced["old_level"].as_f64().expect("old_level");
    let delta = synced["delta"].as_f64().expect("delta");
    assert!((delta - (old - 7.0).abs()).abs() < 1e-9, "{synced}");
    assert_eq!(synced["primitives_updated"], true);
    assert_eq!(synced["purity"], "maintained");

    let (status, body) = pure
        .post("/message", &json!({"content": "no sender"}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("from_cell"),
        "{body}"
    );
    let (status, body) = pure.post("/message", &json!({"from_cell": "x"})).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"].as_str().unwrap().contains("content"),
        "{body}"
    );
    for i in 0..105 {
        let (status, body) = pure
            .post("/message", &json!({"from_cell": if i % 2 == 0 { "a" } else { "b" }, "content": format!("m{i}")}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "received");
    }
    let (_, listed) = pure.get("/messages?limit=3&from_cell=a").await;
    // The last 100 kept are m5..m104, 50 of them from `a`: `total` counts
    // the messages that match the filter, as the original's.
    assert_eq!(listed["total"], 50);
    let contents: Vec<&str> = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m100", "m102", "m104"]);

    let (status, body) = pure.post("/invoke/no-such-thing", &json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["capabilities"], json!(["consciousness-primitives"]));
    let (status, body) = pure
        .post("/invoke/consciousness-primitives", &json!([1, 2]))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = pure
        .post("/invoke/consciousness-primitives", &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, discover) = pure.get("/discover").await;
    assert_eq!(status, 200);
    assert_eq!(discover["endpoints"]["health"], "/health");
    let metrics = support::client()
        .get(format!("{}/metrics", pure.url()))
        .send()
        .await?
        .text()
        .await?;
    let labels = r#"{cell_id="pure",branch="pure",type="pure"}"#;
    for series in [
        format!("aios_cell_consciousness_level{labels} "),
        format!("aios_cell_awareness{labels} "),
        format!("aios_cell_up{labels} 1.0000"),
    ] {
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }

    let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;
    let (_, health) = alpha.get("/health").await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["consciousness"]["identity"], "AIOS Cell Alpha");
    assert_eq!(
        health["consciousness"]["evolutionary_stage"],
        "hierarchical_intelligence"
    );
    let (status, synced) = alpha
        .post(
            "/sync",
            &json!({"from_cell": "pure", "consciousness_level": 1.0}),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    assert_eq!(synced["status"], "synced");
    assert_eq!(synced["their_level"], 1.0);
    let (_, consciousness) = alpha.get("/consciousness").await;
    assert!(
        consciousness["consciousness"]["last_sync"].is_string(),
        "{consciousness}"
    );
    pure.stop().await?;
    alpha.stop().await?;
    Ok(())
}

/// Regression: our discovery's `GET /peers` entries carry `age_ms`; the
/// plugin's `mesh-peers` view must pass it on as `peer.age-ms`.
#[tokio::test]
async fn mesh_peers_carry_discoverys_age_ms() -> Result<()> {
    use cell_host::discovery_client::{DiscoveryClient, http_client};
    use cell_host::mesh::{Mesh, MeshServices};
    use cell_host::plugin::HostServices;
    use std::sync::Arc;

    let discovery = Discovery::start(TTL).await?;
    let registered = support::client()
        .post(format!("{}/register", discovery.url()))
        .json(&json!({"cell_id": "other", "ip": "127.0.0.1", "port": 9,
                      "consciousness_level": 0.5, "services": ["x"], "branch": "main",
                      "type": "test_cell", "hostname": "h"}))
        .send()
        .await?;
    assert!(registered.status().is_success());
    let http = http_client(std::time::Duration::from_secs(5));
    let peers =
        cell_host::egress::PeerClient::new(Default::default(), std::time::Duration::from_secs(5));
    let mesh = Arc::new(Mesh::new(
        DiscoveryClient::new(http.clone(), &discovery.url()),
        peers,
    ));
    mesh.set_self_id("me".into());
    assert_eq!(mesh.refresh().await?, 1);
    let peers = MeshServices::new(mesh, Vec::new()).mesh_peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].cell_id, "other");
    assert!(peers[0].age_ms.is_some(), "{:?}", peers[0]);
    Ok(())
}
