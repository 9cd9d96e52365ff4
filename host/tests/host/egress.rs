//! The cell API is not an open proxy (issue 10, High 3): each test is
//! named after a finding of the review, and fails on the code it was
//! found in. Peers and discovery are in-process fakes on 127.0.0.1:0.

use std::time::{Duration, Instant};

use anyhow::Result;
use axum::http::StatusCode;
use cellmesh_artifacts::ALPHA_WASM;
use serde_json::{Value, json};

use crate::TTL;
use crate::fake::{self, Fake, cell_info, json_answer, redirect, register_with};
use crate::support::{Discovery, Host, args};

/// A fake internal service that must never be reached through a cell.
async fn internal_service() -> Result<Fake> {
    Fake::start(|_| json_answer(StatusCode::OK, &json!({"admin": "INTERNAL-SECRET"}))).await
}

fn assert_untouched(internal: &Fake) {
    let hits = internal.hits();
    assert!(
        hits.is_empty(),
        "the internal service was reached: {hits:?}"
    );
}

fn assert_not_leaked(answer: &Value, secret: &str) {
    assert!(
        !answer.to_string().contains(secret),
        "the answer relays what the peer or internal service said: {answer}"
    );
}

/// Finding: the host's HTTP client followed redirects, so a peer answering
/// 303 to an internal URL made the cell call it (a POST became a GET) and
/// `/send_to_peer` relayed the internal answer. Neither `/send_to_peer`,
/// `/send` nor `send-message` follows a redirect now.
#[tokio::test]
async fn peer_redirects_are_not_followed() -> Result<()> {
    let internal = internal_service().await?;
    let location = format!("{}/internal/admin", internal.url());
    let redirector = Fake::start(move |_| redirect(StatusCode::SEE_OTHER, &location)).await?;
    let discovery = Discovery::start(TTL).await?;
    register_with(&discovery.url(), "redirector", redirector.addr).await?;
    let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;

    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "hand", "endpoint": redirector.url()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alpha
        .post("/send_to_peer", &json!({"peer_id": "hand", "message": "x"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response_status"], 303, "{body}");
    assert_not_leaked(&body, "INTERNAL-SECRET");

    let (status, body) = alpha
        .post("/send", &json!({"to_cell": "redirector", "content": "x"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_not_leaked(&body, "INTERNAL-SECRET");
    let (status, body) = alpha
        .post(
            "/invoke/dendritic-communication",
            &json!({"to_cell": "redirector", "content": "x"}),
        )
        .await;
    assert_ne!(status, 200, "{body}");
    assert_not_leaked(&body, "INTERNAL-SECRET");

    assert_eq!(redirector.hits().len(), 3, "{:?}", redirector.hits());
    assert_untouched(&internal);
    alpha.stop().await?;
    Ok(())
}

/// Finding: `/send_to_peer` answered with the peer's own answer body, so the
/// cell relayed whatever the address it was pointed at said. It answers the
/// original's `{"status", "peer_id", "response_status", "timestamp"}` now,
/// whatever the peer answers.
#[tokio::test]
async fn send_to_peer_never_relays_the_peer_body() -> Result<()> {
    let talkative = Fake::peer(json!({"leak": "PEER-BODY-SECRET"})).await?;
    let failing = Fake::start(|_| {
        json_answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"detail": "PEER-BODY-SECRET"}),
        )
    })
    .await?;
    let not_json = Fake::start(|_| {
        axum::response::Response::new(axum::body::Body::from("PEER-BODY-SECRET as text"))
    })
    .await?;
    let alpha = Host::start(args(ALPHA_WASM, "http://127.0.0.1:9", &[])).await?;
    for (id, peer, expected) in [
        ("talkative", &talkative, 200),
        ("failing", &failing, 500),
        ("not-json", &not_json, 200),
    ] {
        let (status, body) = alpha
            .post(
                "/register_peer",
                &json!({"cell_id": id, "endpoint": peer.url()}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = alpha
            .post("/send_to_peer", &json!({"peer_id": id, "message": "hi"}))
            .await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_not_leaked(&body, "PEER-BODY-SECRET");
        assert_eq!(body["response_status"], expected, "{id}: {body}");
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["peer_id", "response_status", "status", "timestamp"],
            "{body}"
        );
    }
    alpha.stop().await?;
    Ok(())
}

/// Finding: a `/register_peer` entry overrode discovery's id for `/send`
/// and `send-message`, so anyone who can reach the API redirected another
/// cell's traffic. Discovery's ids always win now: hand-kept peers are
/// reached only through `/send_to_peer`.
#[tokio::test]
async fn hand_registered_peer_does_not_shadow_a_discovery_id() -> Result<()> {
    let real = Fake::peer(json!({})).await?;
    let impostor = Fake::peer(json!({})).await?;
    let discovery = Discovery::start(TTL).await?;
    register_with(&discovery.url(), "pure", real.addr).await?;
    let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "pure", "endpoint": impostor.url()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = alpha
        .post("/send", &json!({"to_cell": "pure", "content": "via send"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alpha
        .post(
            "/invoke/dendritic-communication",
            &json!({"to_cell": "pure", "content": "via send-message"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(real.hits().len(), 2, "{:?}", real.hits());
    assert!(impostor.hits().is_empty(), "{:?}", impostor.hits());

    // A hand-kept id discovery does not list is not reached by `/send`.
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "only-by-hand", "endpoint": impostor.url()}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alpha
        .post("/send", &json!({"to_cell": "only-by-hand", "content": "x"}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(impostor.hits().is_empty(), "{:?}", impostor.hits());
    alpha.stop().await?;
    Ok(())
}

/// Finding: discovery's `ip` was pasted into URLs, so a listing of
/// `"127.0.0.1:PORT/internal/admin?x="` made the cell POST to an internal
/// path. An `ip` that is not an IP address or a host name of letters,
/// digits, `-`, `_` and `.` is refused (502, naming the address), and
/// nothing is sent.
#[tokio::test]
async fn discovery_ip_with_a_path_port_or_userinfo_is_refused() -> Result<()> {
    let internal = internal_service().await?;
    let port = internal.addr.port();
    // The review's exact case was on IPv6 loopback; where there is one.
    let internal_v6 = match tokio::net::TcpListener::bind("[::1]:0").await {
        Ok(listener) => Some(Fake::start_on(listener, |_| {
            json_answer(StatusCode::OK, &json!({"admin": "INTERNAL-SECRET"}))
        })?),
        Err(_) => None,
    };
    let port_v6 = internal_v6.as_ref().map_or(9, |f| f.addr.port());
    let bad = [
        ("pathy", format!("127.0.0.1:{port}/internal/admin?x="), 9),
        ("userinfo", "user@127.0.0.1".to_owned(), port),
        ("porty", format!("127.0.0.1:{port}"), 9),
        ("fragment", "127.0.0.1#".to_owned(), port),
        ("spaced", "127.0.0.1 ".to_owned(), port),
        ("v6-path", format!("[::1]:{port_v6}/internal/admin?x="), 9),
        ("empty", String::new(), port),
    ];
    let listing = bad
        .iter()
        .map(|(id, ip, port)| cell_info(id, ip, *port))
        .collect();
    let discovery = fake::discovery(listing).await?;
    let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;
    for (id, ip, _) in &bad {
        let (status, body) = alpha
            .post("/send", &json!({"to_cell": id, "content": "x"}))
            .await;
        assert_eq!(status, 502, "{id}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("ip") && detail.contains(&format!("{ip:?}")),
            "{id}: the answer must name the refused address: {body}"
        );
    }
    assert_untouched(&internal);
    if let Some(internal_v6) = &internal_v6 {
        assert_untouched(internal_v6);
    }
    alpha.stop().await?;
    Ok(())
}

/// Finding: nothing limited where a cell may send, so a listing or a
/// hand-kept endpoint at a cloud-metadata or link-local address made the
/// cell call it. The default policy refuses those ranges, checked on the
/// address before connecting (fast, without touching the network).
#[tokio::test]
async fn metadata_addresses_are_refused_before_connecting() -> Result<()> {
    let listing = vec![
        cell_info("aws-metadata", "169.254.169.254", 80),
        cell_info("link-local", "169.254.1.1", 80),
        cell_info("alibaba-metadata", "100.100.100.200", 80),
        cell_info("aws-metadata-v6", "fd00:ec2::254", 80),
        cell_info("link-local-v6", "fe80::1", 80),
        cell_info("mapped", "::ffff:169.254.169.254", 80),
    ];
    let discovery = fake::discovery(listing.clone()).await?;
    // A connection attempt would wait up to 60 s, far past the bound below.
    let alpha = Host::start(args(
        ALPHA_WASM,
        &discovery.url(),
        &["--http-timeout-ms", "60000"],
    ))
    .await?;
    for entry in &listing {
        let id = entry["cell_id"].as_str().unwrap();
        let started = Instant::now();
        let (status, body) = alpha
            .post("/send", &json!({"to_cell": id, "content": "x"}))
            .await;
        assert!(started.elapsed() < Duration::from_secs(10), "{id}: slow");
        assert_eq!(status, 502, "{id}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("--peer-allow"), "{id}: {body}");
    }
    // The same for a hand-kept endpoint: refused when registered.
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "meta", "endpoint": "http://169.254.169.254/latest"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("--peer-allow"), "{body}");
    alpha.stop().await?;
    Ok(())
}

/// `--peer-allow CIDR,...` limits where a host sends, for IP literals and
/// for names (checked on the resolved address: `localhost` is refused when
/// loopback is not allowed).
#[tokio::test]
async fn peer_allow_limits_where_a_host_sends() -> Result<()> {
    let peer = Fake::peer(json!({})).await?;
    let port = peer.addr.port();
    let discovery = fake::discovery(vec![
        cell_info("by-ip", "127.0.0.1", port),
        cell_info("by-name", "localhost", port),
    ])
    .await?;
    let closed = Host::start(args(
        ALPHA_WASM,
        &discovery.url(),
        &["--peer-allow", "10.0.0.0/8,fd00::/8"],
    ))
    .await?;
    for id in ["by-ip", "by-name"] {
        let (status, body) = closed
            .post("/send", &json!({"to_cell": id, "content": "x"}))
            .await;
        assert_eq!(status, 502, "{id}: {body}");
        assert!(body.to_string().contains("--peer-allow"), "{id}: {body}");
    }
    let (status, body) = closed
        .post(
            "/register_peer",
            &json!({"cell_id": "hand", "endpoint": format!("http://localhost:{port}")}),
        )
        .await;
    assert_eq!(status, 200, "a name is checked when it is resolved: {body}");
    let (status, body) = closed
        .post("/send_to_peer", &json!({"peer_id": "hand", "message": "x"}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    assert!(peer.hits().is_empty(), "{:?}", peer.hits());
    closed.stop().await?;

    let open = Host::start(args(
        ALPHA_WASM,
        &discovery.url(),
        &["--peer-allow", "127.0.0.0/8, ::1/128"],
    ))
    .await?;
    for id in ["by-ip", "by-name"] {
        let (status, body) = open
            .post("/send", &json!({"to_cell": id, "content": "x"}))
            .await;
        assert_eq!(status, 200, "{id}: {body}");
    }
    assert_eq!(peer.hits().len(), 2, "{:?}", peer.hits());
    open.stop().await?;
    Ok(())
}

/// `/register_peer` stays on by default (the original's API);
/// `--no-register-peer` turns it off with a clear 403.
#[tokio::test]
async fn register_peer_can_be_turned_off() -> Result<()> {
    let alpha = Host::start(args(
        ALPHA_WASM,
        "http://127.0.0.1:9",
        &["--no-register-peer"],
    ))
    .await?;
    let (status, body) = alpha
        .post(
            "/register_peer",
            &json!({"cell_id": "p", "endpoint": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    for key in ["error", "detail"] {
        assert!(
            body[key]
                .as_str()
                .is_some_and(|s| s.contains("--no-register-peer")),
            "{key}: {body}"
        );
    }
    let (_, peers) = alpha.get("/peers").await;
    assert_eq!(peers["count"], 0, "{peers}");
    alpha.stop().await?;
    Ok(())
}
