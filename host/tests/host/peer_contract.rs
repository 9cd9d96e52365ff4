//! Contract tests of alpha's peer routes (docs/contract.md, "alpha"): each
//! answer carries exactly the original's keys plus the additions
//! `docs/contract.md` documents, so the next difference is caught here.

use std::collections::BTreeSet;

use anyhow::Result;
use cellmesh_artifacts::ALPHA_WASM;
use serde_json::{Value, json};

use crate::TTL;
use crate::fake::{Fake, register_with};
use crate::support::{Discovery, Host, PATIENCE, args, eventually};

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// `original` plus `added`, as a set.
fn expected<'a>(original: &[&'a str], added: &[&'a str]) -> BTreeSet<&'a str> {
    original.iter().chain(added).copied().collect()
}

/// Original: `{"peers": {ID: {"endpoint", "identity", "registered_at",
/// "last_contact"}}, "count", "cell_id"}`, an object keyed by peer id.
/// Added: `mesh` (discovery's peers, keyed by id) and `mesh_count`.
#[tokio::test]
async fn peers_is_an_object_keyed_by_peer_id_as_the_original() -> Result<()> {
    let listed = Fake::peer(json!({})).await?;
    let discovery = Discovery::start(TTL).await?;
    register_with(&discovery.url(), "listed", listed.addr).await?;
    let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "hand", "endpoint": listed.url()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "named", "endpoint": format!("{}/", listed.url()),
                    "identity": "Someone"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let peers = eventually("alpha's mesh view lists `listed`", PATIENCE, || async {
        let (_, peers) = alpha.get("/peers").await;
        peers["mesh"].get("listed").is_some().then_some(peers)
    })
    .await;
    assert_eq!(
        keys(&peers),
        expected(&["peers", "count", "cell_id"], &["mesh", "mesh_count"]),
        "{peers}"
    );
    assert_eq!(peers["cell_id"], "alpha");
    assert_eq!(peers["count"], 2, "hand-kept peers only: {peers}");
    let hand = &peers["peers"]["hand"];
    assert_eq!(
        keys(hand),
        expected(
            &["endpoint", "identity", "registered_at", "last_contact"],
            &[]
        ),
        "{hand}"
    );
    assert_eq!(hand["endpoint"], listed.url());
    assert_eq!(hand["identity"], "Cell hand", "the original's default");
    assert!(hand["registered_at"].is_string(), "{hand}");
    assert!(hand["last_contact"].is_null(), "{hand}");
    assert_eq!(peers["peers"]["named"]["identity"], "Someone");
    assert_eq!(peers["peers"]["named"]["endpoint"], listed.url());

    let mesh = &peers["mesh"]["listed"];
    assert_eq!(
        keys(mesh),
        expected(
            &[],
            &[
                "endpoint",
                "ip",
                "port",
                "consciousness_level",
                "services",
                "branch",
                "type",
                "hostname",
                "last_seen"
            ]
        ),
        "{mesh}"
    );
    assert_eq!(mesh["endpoint"], listed.url());
    assert!(
        peers["mesh"].get("alpha").is_none(),
        "never itself: {peers}"
    );
    assert_eq!(
        peers["mesh_count"].as_u64(),
        Some(peers["mesh"].as_object().unwrap().len() as u64)
    );
    alpha.stop().await?;
    Ok(())
}

/// Original: `{"status": "registered", "peer_id", "timestamp"}`; added:
/// `total_peers`. A missing field: 400 with `error` and `detail` naming it.
#[tokio::test]
async fn register_peer_answers_the_original_shape() -> Result<()> {
    let alpha = Host::start(args(ALPHA_WASM, "http://127.0.0.1:9", &[])).await?;
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "p", "endpoint": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        expected(&["status", "peer_id", "timestamp"], &["total_peers"])
    );
    assert_eq!(body["status"], "registered");
    assert_eq!(body["peer_id"], "p");
    assert!(body["timestamp"].is_string(), "{body}");
    assert_eq!(body["total_peers"], 1);

    for (request, field) in [
        (json!({"endpoint": "http://127.0.0.1:9"}), "cell_id"),
        (json!({"cell_id": "p"}), "endpoint"),
    ] {
        let (status, body) = alpha.post("/register_peer", &request).await;
        assert_eq!(status, 400, "{body}");
        for key in ["error", "detail"] {
            assert!(
                body[key].as_str().is_some_and(|s| s.contains(field)),
                "{key} must name {field}: {body}"
            );
        }
    }
    for endpoint in [
        "ftp://127.0.0.1:9",
        "http://user:pw@127.0.0.1:9",
        "http://127.0.0.1:9/?q=1",
        "not a url",
    ] {
        let (status, body) = alpha
            .post(
                "/register_peer",
                &json!({"cell_id": "p", "endpoint": endpoint}),
            )
            .await;
        assert_eq!(status, 400, "{endpoint}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|s| s.contains("endpoint"))
        );
    }
    alpha.stop().await?;
    Ok(())
}

/// Original: POSTs `{"from_cell", "content", "type": type or "forwarded",
/// "metadata": {"original_sender": identity}}` to `endpoint + "/message"`,
/// sets `last_contact`, answers `{"status": "sent", "peer_id",
/// "response_status", "timestamp"}`; unknown peer: 404 `{"error": "Peer ID
/// not registered"}`; unreachable: 502 `{"status": "failed", "peer_id",
/// "error"}` (plus the API's `detail` and `kind`).
#[tokio::test]
async fn send_to_peer_answers_the_original_shape() -> Result<()> {
    let peer = Fake::peer(json!({})).await?;
    let alpha = Host::start(args(ALPHA_WASM, "http://127.0.0.1:9", &[])).await?;
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "p", "endpoint": format!("{}/base", peer.url())}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = alpha
        .post("/send_to_peer", &json!({"peer_id": "p", "message": "hi"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        expected(&["status", "peer_id", "response_status", "timestamp"], &[])
    );
    assert_eq!(body["status"], "sent");
    assert_eq!(body["peer_id"], "p");
    assert_eq!(body["response_status"], 200);
    let (status, body) = alpha
        .post(
            "/send_to_peer",
            &json!({"peer_id": "p", "message": {"k": 1}, "type": "urgent"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hits = peer.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].method, "POST");
    assert_eq!(hits[0].path, "/base/message");
    assert_eq!(
        hits[0].body,
        json!({"from_cell": "alpha", "content": "hi", "type": "forwarded",
               "metadata": {"original_sender": "AIOS Cell Alpha"}})
    );
    assert_eq!(hits[1].body["type"], "urgent");
    assert_eq!(
        hits[1].body["content"],
        json!({"k": 1}),
        "passed on as sent"
    );
    let (_, peers) = alpha.get("/peers").await;
    assert!(peers["peers"]["p"]["last_contact"].is_string(), "{peers}");

    let (status, body) = alpha
        .post(
            "/send_to_peer",
            &json!({"peer_id": "ghost", "message": "hi"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "Peer ID not registered", "{body}");
    assert!(body["detail"].is_string(), "{body}");

    let (status, body) = alpha.post("/send_to_peer", &json!({"peer_id": "p"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|s| s.contains("message"))
    );

    peer.stop().await;
    let (status, body) = alpha
        .post("/send_to_peer", &json!({"peer_id": "p", "message": "hi"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        keys(&body),
        expected(&["status", "peer_id", "error"], &["detail", "kind"])
    );
    assert_eq!(body["status"], "failed");
    assert_eq!(body["peer_id"], "p");
    alpha.stop().await?;
    Ok(())
}
