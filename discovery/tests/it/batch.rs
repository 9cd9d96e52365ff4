//! The batch calls of a many-cell host (`POST /batch/register|heartbeat|deregister`): outcomes
//! per cell, whole-batch refusals, limits, events and metrics; failure domains and the guard
//! in [`domains`].

use std::time::Duration;

use axum::http::{Method, StatusCode};
use cellmesh_wire::batch::{
    BATCH_MAX_BYTES, BATCH_MAX_CELLS, BatchDeregisterAnswer, BatchHeartbeatAnswer,
    BatchRegisterAnswer, HOST_ID_MAX_LEN,
};
use discovery::Config;
use serde_json::{Value, json};

use crate::watch::Stream;
use crate::*;

mod domains;

pub(super) const HOST: &str = "host-a";
const BEARER: (&str, &str) = ("authorization", "Bearer shared-token");
const ADMIN: (&str, &str) = ("authorization", "Bearer admin-token");

fn secured() -> Config {
    Config {
        token: Some("shared-token".into()),
        admin_token: Some("admin-token".into()),
        ..cfg()
    }
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A batch body for `host` with `cells`.
pub(super) fn batch(host: &str, cells: Vec<Value>) -> Value {
    json!({"host_id": host, "cells": cells})
}

/// `cell(id)` for each id, as batch cells.
pub(super) fn cells(ids: &[String]) -> Vec<Value> {
    ids.iter().map(|id| cell(id)).collect()
}

pub(super) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

pub(super) fn beat(id: &str, level: f64, incarnation: u64, secret: &str) -> Value {
    json!({"cell_id": id, "consciousness_level": level, "incarnation": incarnation, "secret": secret})
}

pub(super) fn leave(id: &str, incarnation: u64, secret: &str) -> Value {
    json!({"cell_id": id, "incarnation": incarnation, "secret": secret})
}

/// POSTs `body` to `/batch/{call}` with `headers`.
async fn send(app: &axum::Router, call: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    call_raw(app, call, body.to_string().as_bytes(), headers).await
}

async fn call_raw(app: &axum::Router, call: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
    crate::call(
        app,
        Method::POST,
        &format!("/batch/{call}"),
        Some(body),
        headers,
    )
    .await
}

/// Registers `ids` for `host` in one batch; answers each cell's (incarnation, secret).
pub(super) async fn register_all(
    app: &axum::Router,
    host: &str,
    ids: &[String],
    headers: &[(&str, &str)],
) -> Vec<(u64, String)> {
    let a = send(app, "register", &batch(host, cells(ids)), headers).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let answer: BatchRegisterAnswer = serde_json::from_value(a.json).unwrap();
    assert_eq!(answer.results.len(), ids.len());
    answer
        .results
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, "registered", "{r:?}");
            (r.incarnation.unwrap(), r.secret.unwrap())
        })
        .collect()
}

/// Renews `ids` (with `leases` from [`register_all`]) in one batch.
pub(super) async fn beat_all(
    app: &axum::Router,
    host: &str,
    ids: &[String],
    leases: &[(u64, String)],
) {
    let cells = ids
        .iter()
        .zip(leases)
        .map(|(id, (inc, secret))| beat(id, 0.0, *inc, secret))
        .collect();
    let a = send(app, "heartbeat", &batch(host, cells), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["renewed"], ids.len(), "{}", a.text);
}

#[tokio::test]
async fn a_batch_registers_renews_and_deregisters_each_cell() {
    let (state, app) = router(cfg());
    let members = names("b", 3);
    let a = send(&app, "register", &batch(HOST, cells(&members)), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let answer: BatchRegisterAnswer = serde_json::from_value(a.json).unwrap();
    assert_eq!((answer.host_id.as_str(), answer.ttl_ms), (HOST, 15_000));
    let got: Vec<_> = answer.results.iter().map(|r| r.cell_id.clone()).collect();
    assert_eq!(got, members, "one outcome per cell, in request order");
    for r in &answer.results {
        assert!(r.is_ok());
        assert_eq!(r.replaced, Some(false));
        assert_eq!(r.secret.as_ref().unwrap().len(), 32);
        assert_eq!((r.code, &r.detail), (None, &None));
    }
    assert!(answer.results[0].incarnation < answer.results[2].incarnation);
    assert_eq!(ids(&app).await, members);
    assert_eq!(
        state.registry().lock().domain("b0001").as_deref(),
        Some(HOST)
    );

    let beats = members
        .iter()
        .zip(&answer.results)
        .enumerate()
        .map(|(i, (id, r))| beat(id, i as f64 + 0.5, r.incarnation.unwrap(), "ignored"))
        .collect();
    let a = send(&app, "heartbeat", &batch(HOST, beats), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let hb: BatchHeartbeatAnswer = serde_json::from_value(a.json).unwrap();
    assert_eq!(
        (
            hb.status.as_str(),
            hb.host_id.as_str(),
            hb.renewed,
            hb.peers_count
        ),
        ("ok", HOST, 3, 3)
    );
    assert!(hb.refused.is_empty());
    assert_eq!(
        get(&app, "/peers/b0002").await.json["consciousness_level"],
        2.5
    );

    let leaves = members
        .iter()
        .zip(&answer.results)
        .map(|(id, r)| leave(id, r.incarnation.unwrap(), "ignored"))
        .collect();
    let a = send(&app, "deregister", &batch(HOST, leaves), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let d: BatchDeregisterAnswer = serde_json::from_value(a.json).unwrap();
    assert_eq!(
        (d.status.as_str(), d.host_id.as_str(), d.deregistered),
        ("deregistered", HOST, 3)
    );
    assert!(d.refused.is_empty());
    assert!(ids(&app).await.is_empty());
    assert_eq!(state.registry().lock().failure_domains(), 0);
}

/// `/peers` shows a batch-registered cell exactly as a single registration (no domain field).
#[tokio::test]
async fn peers_list_batch_cells_like_single_ones() {
    let (_, app) = router(cfg());
    assert_eq!(
        post(&app, "/register", &pure()).await.status,
        StatusCode::OK
    );
    let mut twin = pure();
    twin["cell_id"] = json!("pure-twin");
    let a = send(&app, "register", &batch(HOST, vec![twin]), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let listing = get(&app, "/peers").await.json;
    let peers = listing["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    let keys = |p: &Value| {
        let mut k: Vec<String> = p.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&peers[0]), keys(&peers[1]));
    let varying = ["cell_id", "incarnation", "last_seen", "age_ms"];
    for k in keys(&peers[0]) {
        if !varying.contains(&k.as_str()) {
            assert_eq!(peers[0][&k], peers[1][&k], "{k}");
        }
    }
    let one = get(&app, "/peers/pure-twin").await.json;
    assert_eq!(keys(&one), keys(&peers[0]));
    assert!(!listing.to_string().contains(HOST), "no domain on /peers");
}

/// Per-cell refusals carry the single call's code and detail; the rest of the batch goes on.
#[tokio::test]
async fn refused_cells_do_not_fail_the_batch() {
    let (_, app) = router(secured());
    let ab = vec!["a".to_owned(), "b".to_owned()];
    let leases = register_all(&app, HOST, &ab, &[BEARER]).await;
    let ((ia, sa), (ib, sb)) = (leases[0].clone(), leases[1].clone());
    let wrong = "00".repeat(16);

    let a = send(
        &app,
        "heartbeat",
        &batch(
            HOST,
            vec![
                beat("a", 1.0, ia, &sa),
                beat("b", 0.0, ib, &wrong),
                beat("nobody", 0.0, 1, &sa),
                json!({"cell_id": "c", "consciousness_level": "nan", "incarnation": 1, "secret": "x"}),
            ],
        ),
        &[BEARER],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let hb: BatchHeartbeatAnswer = serde_json::from_value(a.json).unwrap();
    assert_eq!((hb.renewed, hb.peers_count), (1, 2));
    let refused: Vec<_> = hb
        .refused
        .iter()
        .map(|r| (r.cell_id.as_str(), r.status.as_str(), r.code.unwrap()))
        .collect();
    assert_eq!(
        refused,
        [
            ("b", "refused", 403),
            ("nobody", "refused", 404),
            ("c", "refused", 422)
        ]
    );
    assert!(
        hb.refused[0]
            .detail
            .as_ref()
            .unwrap()
            .contains("X-Cell-Secret")
    );
    assert_eq!(
        hb.refused[1].detail.as_deref(),
        Some("Peer ID not registered. Call /register first.")
    );
    assert_eq!(
        hb.refused[2].detail.as_deref(),
        Some("consciousness_level: Input should be a finite number")
    );

    // Registrations: a held id (409), a new one, an invalid one (422), a renewal with its secret.
    let mut renew_b = cell("b");
    renew_b["secret"] = json!(sb);
    let mut bad_port = cell("e");
    bad_port["port"] = json!(70_000);
    let a = send(
        &app,
        "register",
        &batch(HOST, vec![cell("a"), cell("a2"), bad_port, renew_b]),
        &[BEARER],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let reg: BatchRegisterAnswer = serde_json::from_value(a.json).unwrap();
    let outcome: Vec<_> = reg
        .results
        .iter()
        .map(|r| (r.cell_id.as_str(), r.status.as_str(), r.code))
        .collect();
    assert_eq!(
        outcome,
        [
            ("a", "refused", Some(409)),
            ("a2", "registered", None),
            ("e", "refused", Some(422)),
            ("b", "registered", None)
        ]
    );
    assert!(
        reg.results[0]
            .detail
            .as_ref()
            .unwrap()
            .contains("is held by a live registration")
    );
    assert_eq!(
        reg.results[2].detail.as_deref(),
        Some("port: Input should be less than or equal to 65535")
    );
    assert_eq!(reg.results[3].replaced, Some(true));
    let (ib2, sb2) = (
        reg.results[3].incarnation.unwrap(),
        reg.results[3].secret.clone().unwrap(),
    );

    // Deregistrations: a stale incarnation (409), the right one, an unknown id (404).
    let a = send(
        &app,
        "deregister",
        &batch(
            HOST,
            vec![
                leave("b", ib, &sb2),
                leave("b-gone", 1, &sb2),
                leave("a", ia, &sa),
            ],
        ),
        &[BEARER],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let d: BatchDeregisterAnswer = serde_json::from_value(a.json).unwrap();
    assert_eq!(d.deregistered, 1);
    let refused: Vec<_> = d
        .refused
        .iter()
        .map(|r| (r.cell_id.as_str(), r.code.unwrap()))
        .collect();
    assert_eq!(refused, [("b", 409), ("b-gone", 404)]);
    assert!(
        d.refused[0]
            .detail
            .as_ref()
            .unwrap()
            .contains("Stale incarnation")
    );
    assert_eq!(ids(&app).await, ["a2", "b"]);

    // The admin token needs no secret, as on the single calls.
    let a = send(
        &app,
        "heartbeat",
        &batch(HOST, vec![beat("b", 0.0, ib2, &wrong)]),
        &[ADMIN],
    )
    .await;
    assert_eq!(a.json["renewed"], 1, "{}", a.text);
}

/// A registry at its cap refuses the cells past it (503), and a registration over its byte
/// budget is that cell's 413, as the single call would answer; the rest are registered.
#[tokio::test]
async fn full_registry_and_oversized_registrations_are_per_cell() {
    let (_, app) = router(Config {
        max_peers: 2,
        registration_max_bytes: 600,
        ..cfg()
    });
    let mut big = cell("big");
    for field in ["hostname", "branch", "type"] {
        big[field] = json!("x".repeat(250));
    }
    let body = batch(HOST, vec![cell("p"), big, cell("q"), cell("r")]);
    let a = send(&app, "register", &body, &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let reg: BatchRegisterAnswer = serde_json::from_value(a.json).unwrap();
    let codes: Vec<_> = reg
        .results
        .iter()
        .map(|r| (r.cell_id.as_str(), r.code))
        .collect();
    assert_eq!(
        codes,
        [
            ("p", None),
            ("big", Some(413)),
            ("q", None),
            ("r", Some(503))
        ]
    );
    assert!(
        reg.results[1]
            .detail
            .as_ref()
            .unwrap()
            .contains("600 bytes")
    );
    assert!(
        reg.results[3]
            .detail
            .as_ref()
            .unwrap()
            .contains("registry is full")
    );
    assert_eq!(ids(&app).await, ["p", "q"]);
}

/// A batch malformed as a whole is refused as a whole, naming what is wrong.
#[tokio::test]
async fn malformed_batches_are_refused_whole() {
    let (_, app) = router(secured());
    let reg = |n: usize| batch(HOST, cells(&names("x", n)));

    for auth in [None, Some(("authorization", "Bearer wrong"))] {
        let headers: Vec<_> = auth.into_iter().collect();
        for call in ["register", "heartbeat", "deregister"] {
            // Not even JSON: the token is checked before the body.
            let a = call_raw(&app, call, b"{nope", &headers).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{call}: {}", a.text);
            assert_eq!(a.headers["www-authenticate"], "Bearer");
        }
    }

    let a = send(&app, "register", &reg(BATCH_MAX_CELLS + 1), &[BEARER]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    let e = &a.json["detail"][0];
    assert_eq!(
        (&e["type"], &e["loc"]),
        (&json!("too_long"), &json!(["body", "cells"]))
    );
    assert!(
        e["msg"].as_str().unwrap().contains("at most 1000 items"),
        "{e}"
    );
    assert!(e["msg"].as_str().unwrap().contains("not 1001"), "{e}");

    let dup = batch(HOST, vec![cell("d"), cell("e"), cell("d")]);
    let a = send(&app, "register", &dup, &[BEARER]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        a.json["detail"][0]["loc"],
        json!(["body", "cells", 2, "cell_id"])
    );
    assert!(
        a.json["detail"][0]["msg"]
            .as_str()
            .unwrap()
            .contains("'d' is named twice")
    );

    for bad in [
        json!("bad host"),
        json!(""),
        json!("h".repeat(HOST_ID_MAX_LEN + 1)),
        json!(7),
    ] {
        let a = send(
            &app,
            "heartbeat",
            &json!({"host_id": bad, "cells": []}),
            &[BEARER],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(
            a.json["detail"][0]["loc"],
            json!(["body", "host_id"]),
            "{bad}"
        );
    }
    let a = send(&app, "deregister", &json!({"cells": []}), &[BEARER]).await;
    assert_eq!(a.json["detail"][0]["msg"], "host_id: Field required");
    let a = call_raw(
        &app,
        "register",
        b"{\"host_id\": \"h\", \"cells\": [",
        &[BEARER],
    )
    .await;
    assert_eq!(a.json["detail"][0]["type"], "json_invalid");

    // Over the batch calls' own limit: 413 with the limit.
    let mut huge = reg(1);
    huge["padding"] = json!("p".repeat(BATCH_MAX_BYTES));
    let a = send(&app, "register", &huge, &[BEARER]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.json["detail"]
            .as_str()
            .unwrap()
            .contains(&BATCH_MAX_BYTES.to_string())
    );

    assert!(ids(&app).await.is_empty(), "nothing registered");
    assert_eq!(
        metric(&app, "discovery_batch_requests_total{call=\"register\"}").await,
        0.0,
        "refused batches are not counted as batches"
    );
}

/// The bearer token is checked before a byte of a batch body is read (as for `/register`):
/// a never-ending body with no or a wrong token is refused at once, unread.
#[tokio::test(start_paused = true)]
async fn batch_calls_check_the_token_before_reading_the_body() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;

    use axum::body::{Body, Bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    let (_, app) = router(secured());
    for call in ["register", "heartbeat", "deregister"] {
        for auth in [None, Some("Bearer wrong")] {
            let polled = Arc::new(AtomicBool::new(false));
            let flag = polled.clone();
            let never = futures::stream::poll_fn(move |_| {
                flag.store(true, Ordering::SeqCst);
                Poll::<Option<Result<Bytes, std::io::Error>>>::Pending
            });
            let mut req = Request::post(format!("/batch/{call}"))
                .header("content-type", "application/json")
                .header("content-length", "4000000");
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = app
                .clone()
                .oneshot(req.body(Body::from_stream(never)).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{call} {auth:?}");
            assert!(!polled.load(Ordering::SeqCst), "{call}: the body was read");
        }
    }
}

/// The 4 MiB limit is the batch routes' alone: the single calls keep theirs (64 KiB).
#[tokio::test]
async fn only_batch_routes_take_large_bodies() {
    let (_, app) = router(cfg());
    let mut big = batch(HOST, cells(&names("big", 3)));
    big["padding"] = json!("p".repeat(1024 * 1024));
    let a = send(&app, "register", &big, &[]).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "a 1 MiB batch is fine: {}",
        a.text
    );
    let mut single = cell("single");
    single["padding"] = json!("p".repeat(100 * 1024));
    let a = post(&app, "/register", &single).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        a.json["detail"].as_str().unwrap().contains("65536"),
        "{}",
        a.text
    );
    let a = post(&app, "/heartbeat", &single).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A full batch of realistic registrations is over 64 KiB and fits.
    let ids = names("full", BATCH_MAX_CELLS);
    let full: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut p = alpha();
            p["cell_id"] = json!(id);
            p
        })
        .collect();
    let body = batch(HOST, full);
    assert!(body.to_string().len() > 64 * 1024);
    let a = send(&app, "register", &body, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(get(&app, "/peers").await.json["count"], BATCH_MAX_CELLS + 3);
}

/// Watchers see one event per cell, as if each cell had made the single call.
#[tokio::test]
async fn watchers_get_one_event_per_cell() {
    let (_, app) = router(cfg());
    let mut s = Stream::open(&app, "/peers/watch", None).await;
    assert_eq!(s.next().await.unwrap().event, "snapshot");
    let ids = names("w", 5);
    let leases = register_all(&app, HOST, &ids, &[]).await;
    for id in &ids {
        let e = s.next().await.unwrap();
        assert_eq!(
            (e.event.as_str(), e.data["cell_id"].as_str()),
            ("join", Some(id.as_str()))
        );
        assert_eq!(e.data["peer"]["cell_id"], json!(id));
    }
    let beats = ids
        .iter()
        .zip(&leases)
        .enumerate()
        .map(|(i, (id, (inc, s)))| beat(id, if i % 2 == 0 { 1.0 } else { 0.0 }, *inc, s))
        .collect();
    let a = send(&app, "heartbeat", &batch(HOST, beats), &[]).await;
    assert_eq!(a.json["renewed"], 5);
    for id in ["w0000", "w0002", "w0004"] {
        let e = s.next().await.unwrap();
        assert_eq!(
            (e.event.as_str(), e.data["cell_id"].as_str()),
            ("update", Some(id))
        );
    }
    let leaves = ids
        .iter()
        .zip(&leases)
        .map(|(id, (inc, s))| leave(id, *inc, s))
        .collect();
    let a = send(&app, "deregister", &batch(HOST, leaves), &[]).await;
    assert_eq!(a.json["deregistered"], 5);
    for id in &ids {
        let e = s.next().await.unwrap();
        assert_eq!(e.event, "leave");
        assert_eq!(e.data["cell_id"], json!(id));
        assert_eq!(e.data["reason"], "deregistered");
    }
}

#[tokio::test]
async fn batches_are_counted_per_call_and_per_cell() {
    let (_, app) = router(cfg());
    let ids = names("c", 3);
    let mut body = batch(HOST, cells(&ids));
    body["cells"]
        .as_array_mut()
        .unwrap()
        .push(json!({"cell_id": "bad", "ip": "127.0.0.1", "port": 0}));
    let a = send(&app, "register", &body, &[]).await;
    assert_eq!(a.json["results"][3]["code"], 422);
    let leases: Vec<(u64, String)> = a.json["results"]
        .as_array()
        .unwrap()
        .iter()
        .take(3)
        .map(|r| {
            (
                r["incarnation"].as_u64().unwrap(),
                r["secret"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    beat_all(&app, HOST, &ids, &leases).await;
    beat_all(&app, HOST, &ids, &leases).await;
    post(&app, "/heartbeat", &json!({"cell_id": "c0000"})).await;
    let leaves = vec![leave("c0000", leases[0].0, ""), leave("nobody", 1, "")];
    send(&app, "deregister", &batch(HOST, leaves), &[]).await;
    let m = |line: &'static str| {
        let app = app.clone();
        async move { metric(&app, line).await }
    };
    assert_eq!(
        m("discovery_batch_requests_total{call=\"register\"}").await,
        1.0
    );
    assert_eq!(
        m("discovery_batch_requests_total{call=\"heartbeat\"}").await,
        2.0
    );
    assert_eq!(
        m("discovery_batch_requests_total{call=\"deregister\"}").await,
        1.0
    );
    assert_eq!(
        m("discovery_batch_cells_total{call=\"register\"}").await,
        4.0
    );
    assert_eq!(
        m("discovery_batch_cells_total{call=\"heartbeat\"}").await,
        6.0
    );
    assert_eq!(
        m("discovery_batch_cells_total{call=\"deregister\"}").await,
        2.0
    );
    assert_eq!(
        m("discovery_registrations_total ").await,
        3.0,
        "each cell registered"
    );
    assert_eq!(
        m("discovery_heartbeats_total ").await,
        7.0,
        "each cell renewed, + 1 single"
    );
    assert_eq!(
        m("discovery_evictions_total{reason=\"deregistered\"}").await,
        1.0
    );
    assert_eq!(
        m("discovery_bad_requests_total ").await,
        1.0,
        "the invalid cell"
    );
    assert_eq!(m("discovery_failure_domains ").await, 1.0);
    let text = get(&app, "/metrics").await.text;
    assert!(
        text.contains("discovery_request_duration_seconds_count{route=\"/batch/heartbeat\"} 2"),
        "{text}"
    );
}
