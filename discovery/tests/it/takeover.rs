//! Critical finding: one POST took over a live cell. With a token configured only the live
//! registration's secret (or the admin token) may replace or move it; in the open mode a
//! takeover is still allowed (the original's semantics) but logged, counted and announced.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use discovery::config::DEFAULT_TTL;
use serde_json::{Value, json};

use crate::watch::Stream;
use crate::*;

const BEARER: (&str, &str) = ("authorization", "Bearer shared-token");
const ADMIN: (&str, &str) = ("authorization", "Bearer admin-token");

fn shared_token() -> Config {
    Config {
        token: Some("shared-token".into()),
        admin_token: Some("admin-token".into()),
        ..cfg()
    }
}

/// The attacker's registration from the finding.
fn attacker() -> Value {
    json!({"cell_id": "pure", "ip": "10.66.66.66", "port": 9})
}

async fn register_with(app: &axum::Router, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let body = body.to_string();
    call(
        app,
        Method::POST,
        "/register",
        Some(body.as_bytes()),
        headers,
    )
    .await
}

async fn heartbeat_with(app: &axum::Router, secret: &str, auth: (&str, &str)) -> StatusCode {
    let hb = json!({"cell_id": "pure", "consciousness_level": 0.1}).to_string();
    let headers = [auth, ("x-cell-secret", secret)];
    call(
        app,
        Method::POST,
        "/heartbeat",
        Some(hb.as_bytes()),
        &headers,
    )
    .await
    .status
}

#[tokio::test]
async fn takeover_with_shared_token_is_refused_409() {
    let (_, app) = router(shared_token());
    let a = register_with(&app, &pure(), &[BEARER]).await;
    assert_eq!(a.status, StatusCode::OK);
    let secret = a.json["secret"].as_str().unwrap().to_owned();
    // Any token holder, with no secret or with a wrong one.
    for extra in [None, Some("00112233445566778899aabbccddeeff"), Some("zz")] {
        let mut headers = vec![BEARER];
        if let Some(s) = extra {
            headers.push(("x-cell-secret", s));
        }
        let a = register_with(&app, &attacker(), &headers).await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
        let detail = a.json["detail"].as_str().unwrap();
        assert!(
            detail.contains("pure") && detail.contains("another secret"),
            "{detail}"
        );
    }
    // Nothing moved, and the real cell keeps its lease.
    let p = get(&app, "/peers/pure").await.json;
    assert_eq!(p["ip"], "a173f12aa7e0");
    assert_eq!(p["port"], 8002);
    assert_eq!(heartbeat_with(&app, &secret, BEARER).await, StatusCode::OK);
    assert_eq!(
        metric(&app, "discovery_takeovers_refused_total ").await,
        3.0
    );
    assert_eq!(metric(&app, "discovery_takeovers_total ").await, 0.0);
}

#[tokio::test]
async fn takeover_with_only_an_admin_token_configured_is_refused_409() {
    let (_, app) = router(Config {
        admin_token: Some("admin-token".into()),
        ..cfg()
    });
    let a = register_with(&app, &pure(), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = register_with(&app, &attacker(), &[]).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    // Same address, no secret: replacing is refused just the same.
    let a = register_with(&app, &pure(), &[]).await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(get(&app, "/peers/pure").await.json["ip"], "a173f12aa7e0");
}

#[tokio::test]
async fn live_secret_may_move_its_own_registration() {
    let (_, app) = router(shared_token());
    let first = register_with(&app, &pure(), &[BEARER]).await.json;
    let old_secret = first["secret"].as_str().unwrap().to_owned();
    let mut moved = pure();
    moved["ip"] = json!("10.0.0.7");
    let a = register_with(&app, &moved, &[BEARER, ("x-cell-secret", &old_secret)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["replaced"], true);
    let new_secret = a.json["secret"].as_str().unwrap().to_owned();
    assert!(a.json["incarnation"].as_u64() > first["incarnation"].as_u64());
    assert_eq!(get(&app, "/peers/pure").await.json["ip"], "10.0.0.7");
    // The new lease has the new secret; the old one is spent.
    assert_eq!(
        heartbeat_with(&app, &old_secret, BEARER).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        heartbeat_with(&app, &new_secret, BEARER).await,
        StatusCode::OK
    );
    // The admin token may move (and delete) any registration.
    let a = register_with(&app, &attacker(), &[ADMIN]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(get(&app, "/peers/pure").await.json["ip"], "10.66.66.66");
    // A move by the owner is not a takeover; one by the admin is (the owner did not ask).
    assert_eq!(metric(&app, "discovery_takeovers_total ").await, 1.0);
}

#[tokio::test(start_paused = true)]
async fn expired_lease_may_be_claimed_by_a_new_registration() {
    let (_, app) = router(shared_token());
    assert_eq!(
        register_with(&app, &pure(), &[BEARER]).await.status,
        StatusCode::OK
    );
    // Still live one millisecond before its deadline ...
    tokio::time::advance(DEFAULT_TTL - Duration::from_millis(1)).await;
    assert_eq!(
        register_with(&app, &attacker(), &[BEARER]).await.status,
        StatusCode::CONFLICT
    );
    // ... free once it has passed (no reaper runs here: the entry is still listed).
    tokio::time::advance(Duration::from_millis(2)).await;
    let a = register_with(&app, &attacker(), &[BEARER]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["replaced"], true);
    assert_eq!(get(&app, "/peers/pure").await.json["ip"], "10.66.66.66");
}

/// A `MakeWriter` that keeps what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn takeover_in_open_mode_is_logged_counted_and_an_event() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (_, app) = router(cfg());
    let mut watch = Stream::open(&app, "/peers/watch", None).await;
    assert_eq!(watch.next().await.unwrap().event, "snapshot");
    let first = post(&app, "/register", &pure()).await;
    assert_eq!(watch.next().await.unwrap().event, "join");
    // Re-registering at the same address replaces (the original's semantics), no takeover.
    assert_eq!(
        post(&app, "/register", &pure()).await.status,
        StatusCode::OK
    );
    assert_eq!(watch.next().await.unwrap().event, "leave");
    assert_eq!(watch.next().await.unwrap().event, "join");
    assert_eq!(metric(&app, "discovery_takeovers_total ").await, 0.0);
    // The finding's POST, with no token at all: still allowed in the open mode ...
    let a = post(&app, "/register", &attacker()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(get(&app, "/peers/pure").await.json["ip"], "10.66.66.66");
    // ... but counted,
    assert_eq!(metric(&app, "discovery_takeovers_total ").await, 1.0);
    // announced on the watch stream after the usual leave and join (unchanged),
    let leave = watch.next().await.unwrap();
    assert_eq!(
        (leave.event.as_str(), leave.data["reason"].as_str()),
        ("leave", Some("replaced"))
    );
    assert_eq!(watch.next().await.unwrap().event, "join");
    let ev = watch.next().await.unwrap();
    assert_eq!(ev.event, "takeover", "{:?}", ev);
    assert_eq!(ev.data["type"], "takeover");
    assert_eq!(ev.data["cell_id"], "pure");
    assert_eq!(ev.data["from"], "a173f12aa7e0:8002");
    assert_eq!(ev.data["to"], "10.66.66.66:9");
    assert_eq!(ev.data["incarnation"], a.json["incarnation"]);
    assert!(ev.data["replaced_incarnation"].as_u64() > first.json["incarnation"].as_u64());
    assert!(ev.data["revision"].as_u64().is_some());
    // and logged at warn with structured fields.
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("takeover"))
        .unwrap_or_else(|| panic!("no takeover log line in\n{text}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("cell_id=pure"), "{line}");
    assert!(line.contains("from=a173f12aa7e0:8002"), "{line}");
    assert!(line.contains("to=10.66.66.66:9"), "{line}");
    // A cell presenting its own live secret moves itself: not a takeover.
    let secret = a.json["secret"].as_str().unwrap().to_owned();
    let back = register_with(&app, &pure(), &[("x-cell-secret", &secret)]).await;
    assert_eq!(back.status, StatusCode::OK);
    assert_eq!(metric(&app, "discovery_takeovers_total ").await, 1.0);
}

#[test]
fn the_dashboard_shows_takeover_events() {
    let page = discovery::dashboard::PAGE;
    assert!(page.contains("addEventListener(\"takeover\""), "no handler");
    assert!(page.contains("id=\"notices\""), "no place to show it");
}
