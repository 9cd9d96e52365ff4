//! The admin API through its router (`oneshot`, no socket), with real cells
//! of the pure plugin and failed slots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use cellmesh_artifacts::PURE_WASM;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wasmtime::component::Component;

use super::{AdminHost, admin_app};
use crate::cell::{CellRuntime, Identity};
use crate::discovery_client::{DiscoveryClient, http_client};
use crate::egress::{PeerClient, PeerPolicy};
use crate::fleet::{CellSlot, SlotState};
use crate::mesh::Mesh;
use crate::plugin::{CacheOutcome, PluginEngine, PluginSandbox, load_component};
use crate::status::RegistrationState;

/// The pure plugin, compiled once for every test.
fn pure() -> &'static (PluginEngine, Component) {
    static PURE: OnceLock<(PluginEngine, Component)> = OnceLock::new();
    PURE.get_or_init(|| {
        let engine = PluginEngine::new().expect("an engine");
        let (component, _) =
            load_component(&engine, Path::new(PURE_WASM), None).expect("pure compiles");
        (engine, component)
    })
}

/// A running cell of the pure plugin named `cell_id`, its state read once;
/// discovery is an address nothing listens on (nothing here calls it).
async fn pure_cell(cell_id: &str) -> Arc<CellRuntime> {
    let (engine, component) = pure();
    let sandbox = PluginSandbox::builder(engine, Path::new(PURE_WASM))
        .component(component.clone(), CacheOutcome::Uncached, Duration::ZERO)
        .load()
        .await
        .expect("pure loads");
    let timeout = Duration::from_secs(2);
    let discovery = DiscoveryClient::new(http_client(timeout), "http://127.0.0.1:9");
    let mesh = Arc::new(Mesh::new(
        discovery,
        PeerClient::new(PeerPolicy::default(), timeout),
    ));
    mesh.set_self_id(cell_id.to_owned());
    let identity = Identity {
        cell_id: cell_id.to_owned(),
        branch: "main".to_owned(),
        advertise_host: "127.0.0.1".to_owned(),
        advertise_port: 9100,
    };
    let cell = Arc::new(CellRuntime::new(sandbox, identity, mesh));
    cell.refresh_state().await.expect("pure answers state");
    cell
}

fn running(index: usize, cell: &Arc<CellRuntime>) -> Arc<CellSlot> {
    Arc::new(CellSlot::new(
        index,
        cell.cell_id().to_owned(),
        PathBuf::from(PURE_WASM),
        Some("ab".repeat(32)),
        Some(format!("127.0.0.1:{}", 9100 + index)),
        SlotState::Running(cell.clone()),
    ))
}

fn failed(index: usize, name: &str, reason: &str) -> Arc<CellSlot> {
    Arc::new(CellSlot::new(
        index,
        name.to_owned(),
        PathBuf::from("/plugins/broken.wasm"),
        None,
        None,
        SlotState::Failed(reason.to_owned()),
    ))
}

fn registered(cell: &CellRuntime, incarnation: u64) {
    cell.update_registration(|status| {
        status.status = RegistrationState::Registered;
        status.incarnation = Some(incarnation);
    });
}

fn host(slots: Vec<Arc<CellSlot>>) -> Arc<AdminHost> {
    Arc::new(AdminHost::new("host-a".to_owned(), slots))
}

/// Two running cells (`pure-a` registered, `pure-b` registering) and one
/// failed slot.
async fn mixed_host() -> Arc<AdminHost> {
    let a = pure_cell("pure-a").await;
    registered(&a, 7);
    let b = pure_cell("pure-b").await;
    host(vec![
        running(0, &a),
        running(1, &b),
        failed(2, "cell #2", "port 9102 is in use"),
    ])
}

struct Answer {
    status: u16,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8")
    }
}

async fn call(router: &Router, method: &str, path: &str, token: Option<&str>) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    }
}

async fn get(router: &Router, path: &str) -> Answer {
    call(router, "GET", path, None).await
}

#[tokio::test]
async fn cells_lists_running_and_failed_cells_with_the_hosts_counts() {
    let router = admin_app(mixed_host().await, None);
    let answer = get(&router, "/cells").await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["host_id"], "host-a");
    assert_eq!(
        body["counts"],
        json!({"running": 2, "failed": 1, "registered": 1})
    );
    let cells = body["cells"].as_array().expect("a list");
    assert_eq!(cells.len(), 3);
    let a = &cells[0];
    assert_eq!(a["index"], 0);
    assert_eq!(a["cell_id"], "pure-a");
    assert_eq!(a["address"], "127.0.0.1:9100");
    assert_eq!(a["plugin"], PURE_WASM);
    assert_eq!(a["digest"], "ab".repeat(32));
    assert_eq!(a["state"], "running");
    assert_eq!(a["registration"], "registered");
    assert_eq!(a["incarnation"], 7);
    assert_eq!(a["plugin_status"], "ok");
    // The manifest and the first state read were plugin calls.
    assert!(a["calls"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!((&a["failures"], &a["resets"]), (&json!(0), &json!(0)));
    assert!(a.get("reason").is_none(), "{a}");
    assert_eq!(cells[1]["registration"], "registering");
    assert_eq!(cells[1]["incarnation"], Value::Null);
    assert_eq!(
        cells[2],
        json!({
            "index": 2, "cell_id": "cell #2", "address": null,
            "plugin": "/plugins/broken.wasm", "digest": null, "state": "failed",
            "reason": "port 9102 is in use", "registration": null, "incarnation": null,
            "plugin_status": null, "calls": null, "failures": null, "resets": null
        })
    );
}

#[tokio::test]
async fn cells_are_filtered_by_state_and_a_bad_filter_is_named() {
    let router = admin_app(mixed_host().await, None);
    let ids = |body: &Value| -> Vec<String> {
        body["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cell_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let body = get(&router, "/cells?state=failed").await.json();
    assert_eq!(ids(&body), ["cell #2"]);
    // The counts stay the host's.
    assert_eq!(body["counts"]["running"], 2);
    let body = get(&router, "/cells?state=running").await.json();
    assert_eq!(ids(&body), ["pure-a", "pure-b"]);

    let answer = get(&router, "/cells?state=sleeping").await;
    assert_eq!(answer.status, 400);
    let body = answer.json();
    assert_eq!(body["kind"], "bad_request");
    assert_eq!(body["error"], body["detail"]);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("`sleeping`") && detail.contains("?state="),
        "{detail}"
    );
    let answer = get(&router, "/cells?colour=red").await;
    assert_eq!(answer.status, 400);
    let detail = answer.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("colour"), "{detail}");
}

#[tokio::test]
async fn one_cell_by_id_and_unknown_ones_answer_404_json() {
    let router = admin_app(mixed_host().await, None);
    let answer = get(&router, "/cells/pure-b").await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(
        (&body["index"], &body["state"]),
        (&json!(1), &json!("running"))
    );
    let body = get(&router, "/cells/cell%20%232").await.json();
    assert_eq!(body["reason"], "port 9102 is in use");

    let answer = get(&router, "/cells/nobody").await;
    assert_eq!(answer.status, 404);
    let body = answer.json();
    assert_eq!(body["kind"], "not_found");
    assert!(
        body["detail"].as_str().unwrap().contains("`nobody`"),
        "{body}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let router = admin_app(mixed_host().await, None);
    let answer = get(&router, "/peers").await;
    assert_eq!(answer.status, 404);
    let body = answer.json();
    assert_eq!(body["kind"], "not_found");
    assert!(
        body["detail"].as_str().unwrap().contains("/peers"),
        "{body}"
    );
    let answer = call(&router, "POST", "/cells", None).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.json()["kind"], "method_not_allowed");
}

#[tokio::test]
async fn a_token_is_required_on_every_route_when_set() {
    let router = admin_app(mixed_host().await, Some("s3cret".to_owned()));
    for path in ["/cells", "/cells/pure-a", "/metrics", "/health", "/nowhere"] {
        for token in [None, Some("wrong"), Some("s3cre")] {
            let answer = call(&router, "GET", path, token).await;
            assert_eq!(answer.status, 401, "{path} with {token:?}");
            assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer");
            let body = answer.json();
            assert_eq!(body["kind"], "unauthorized", "{body}");
            assert_eq!(body["error"], body["detail"]);
        }
    }
    let missing = call(&router, "GET", "/health", None).await.json();
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{missing}"
    );
    for path in ["/cells", "/cells/pure-a", "/metrics", "/health"] {
        let answer = call(&router, "GET", path, Some("s3cret")).await;
        assert_eq!(answer.status, 200, "{path}");
    }
    // With the token, an unknown route is a plain 404.
    assert_eq!(
        call(&router, "GET", "/nowhere", Some("s3cret"))
            .await
            .status,
        404
    );
    // The scheme in any case.
    let request = Request::get("/health")
        .header(header::AUTHORIZATION, "bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(router.clone().oneshot(request).await.unwrap().status(), 200);
    // Without a token, open.
    let open = admin_app(mixed_host().await, None);
    assert_eq!(get(&open, "/cells").await.status, 200);
    // An empty token refuses everyone rather than letting everyone in.
    let locked = admin_app(mixed_host().await, Some(String::new()));
    assert_eq!(call(&locked, "GET", "/health", Some("")).await.status, 401);
}

#[tokio::test]
async fn health_is_ok_degraded_or_failed() {
    let a = pure_cell("pure-a").await;
    let b = pure_cell("pure-b").await;
    let cases = [
        (vec![running(0, &a), running(1, &b)], 200, "ok", 2, 0),
        (
            vec![running(0, &a), failed(1, "b", "no plugin")],
            200,
            "degraded",
            1,
            1,
        ),
        (
            vec![failed(0, "a", "no plugin"), failed(1, "b", "no plugin")],
            503,
            "failed",
            0,
            2,
        ),
    ];
    for (slots, code, status, run, fail) in cases {
        let answer = get(&admin_app(host(slots), None), "/health").await;
        assert_eq!(answer.status, code, "{status}");
        let body = answer.json();
        assert_eq!(body["status"], status);
        assert_eq!(body["host_id"], "host-a");
        assert_eq!(
            (&body["cells"], &body["running"], &body["failed"]),
            (&json!(2), &json!(run), &json!(fail)),
            "{body}"
        );
        assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    }
    // A slot that fails later shows at once.
    let slots = vec![running(0, &a), running(1, &b)];
    let late = slots[1].clone();
    let router = admin_app(host(slots), None);
    late.fail("discovery refused the registration: invalid ip");
    assert_eq!(get(&router, "/health").await.json()["status"], "degraded");
}

/// The metric family of a sample line.
fn family(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap()
}

#[tokio::test]
async fn metrics_show_host_gauges_and_every_cells_series_labelled_once_per_family() {
    let a = pure_cell("pure-a").await;
    registered(&a, 3);
    let odd = pure_cell("odd\"id\\x").await;
    let slots = vec![
        running(0, &a),
        running(1, &odd),
        failed(2, "bad \"one\"\nline", "plugin missing"),
    ];
    let router = admin_app(host(slots), None);
    let answer = get(&router, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.text();
    for expected in [
        "cellmesh_host_info{host_id=\"host-a\"} 1.0000",
        "cellmesh_host_cells{state=\"running\"} 2.0000",
        "cellmesh_host_cells{state=\"failed\"} 1.0000",
        "cellmesh_host_cells_registered 1.0000",
        "cellmesh_host_cell_running{cell=\"pure-a\",index=\"0\"} 1.0000",
        "cellmesh_host_cell_running{cell=\"bad \\\"one\\\"\\nline\",index=\"2\"} 0.0000",
        "aios_cell_up{cell_id=\"pure-a\",branch=\"main\",type=\"pure\",cell=\"pure-a\"} 1.0000",
        "aios_cell_up{cell_id=\"odd\\\"id\\\\x\",branch=\"main\",type=\"pure\",cell=\"odd\\\"id\\\\x\"} 1.0000",
        "aios_cell_registered{cell_id=\"pure-a\",branch=\"main\",type=\"pure\",cell=\"pure-a\"} 0.0000",
        "cellmesh_registration_registered{cell_id=\"pure-a\",branch=\"main\",type=\"pure\",cell=\"pure-a\"} 1.0000",
        "cellmesh_plugin_resets_total{cell_id=\"pure-a\",branch=\"main\",type=\"pure\",cell=\"pure-a\",cause=\"trap\"} 0.0000",
    ] {
        assert!(
            text.lines().any(|line| line == expected),
            "{expected} in\n{text}"
        );
    }
    // Each family once: its HELP and TYPE, then all its samples together.
    let mut seen = std::collections::BTreeSet::new();
    let mut current = "";
    for line in text.lines() {
        let name = match line.strip_prefix("# HELP ") {
            Some(rest) => {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_owned()), "second HELP of {name}");
                current = name;
                continue;
            }
            None if line.starts_with("# TYPE ") => {
                assert_eq!(line.split(' ').nth(2), Some(current), "{line}");
                continue;
            }
            None => family(line),
        };
        assert_eq!(name, current, "{line} outside its family");
    }
    // Every series of a cell's own page is there, for each running cell.
    let own = crate::api::app(a.clone(), crate::api::ApiLimits::default());
    let own_page = get(&own, "/metrics").await.text();
    let own_families: std::collections::BTreeSet<&str> = own_page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(family)
        .collect();
    for name in &own_families {
        for cell in ["cell=\"pure-a\"", "cell=\"odd\\\"id\\\\x\""] {
            assert!(
                text.lines().any(|l| family(l) == *name && l.contains(cell)),
                "{name} of {cell}"
            );
        }
    }
    assert!(own_families.contains("aios_cell_consciousness_level"));
    // The cell's own page is unchanged by the admin API: no `cell` label.
    assert!(!own_page.contains("cell=\""), "{own_page}");
}

#[tokio::test]
async fn the_peers_count_is_the_cells_own() {
    let a = pure_cell("pure-a").await;
    let own = crate::api::app(a.clone(), crate::api::ApiLimits::default());
    for (peer, endpoint) in [
        ("p1", "http://10.1.2.3:8000"),
        ("p2", "http://10.1.2.4:8000"),
    ] {
        let request = Request::post("/register_peer")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"cell_id": peer, "endpoint": endpoint}).to_string(),
            ))
            .unwrap();
        let status = own.clone().oneshot(request).await.unwrap().status();
        assert!(status.is_success(), "{status}");
    }
    let sample = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("aios_cell_peers_count{"))
            .and_then(|l| l.rsplit(' ').next())
            .expect("a peers count")
            .to_owned()
    };
    let own_count = sample(&get(&own, "/metrics").await.text());
    assert_eq!(own_count, "2.0000");
    let admin = admin_app(host(vec![running(0, &a)]), None);
    assert_eq!(sample(&get(&admin, "/metrics").await.text()), own_count);
}

/// 10,000 cells (9,000 running, sharing a few runtimes, which costs the
/// rendering as much as distinct ones; 1,000 failed): `/cells` and
/// `/metrics` are timed and printed (target: `/cells` well under 100 ms in
/// a release build), and checked for content only.
#[tokio::test]
async fn ten_thousand_cells_render_in_one_pass() {
    let runtimes = [
        pure_cell("pure-0").await,
        pure_cell("pure-1").await,
        pure_cell("pure-2").await,
        pure_cell("pure-3").await,
    ];
    registered(&runtimes[0], 1);
    let slots: Vec<_> = (0..10_000)
        .map(|i| {
            if i % 10 == 9 {
                failed(i, &format!("cell #{i}"), "port in use")
            } else {
                running(i, &runtimes[i % 4])
            }
        })
        .collect();
    let registered_slots = (0..10_000).filter(|i| i % 10 != 9 && i % 4 == 0).count();
    let router = admin_app(host(slots), None);

    let started = Instant::now();
    let answer = get(&router, "/cells").await;
    let took = started.elapsed();
    println!(
        "GET /cells, 10,000 cells: {took:?}, {} bytes",
        answer.body.len()
    );
    let body = answer.json();
    assert_eq!(body["cells"].as_array().unwrap().len(), 10_000);
    assert_eq!(
        body["counts"],
        json!({"running": 9_000, "failed": 1_000, "registered": registered_slots})
    );
    assert_eq!(body["cells"][9_999]["reason"], "port in use");

    let started = Instant::now();
    let answer = get(&router, "/cells?state=failed").await;
    println!(
        "GET /cells?state=failed, 10,000 cells: {:?}",
        started.elapsed()
    );
    assert_eq!(answer.json()["cells"].as_array().unwrap().len(), 1_000);

    let started = Instant::now();
    let answer = get(&router, "/metrics").await;
    let took = started.elapsed();
    let text = answer.text();
    println!("GET /metrics, 10,000 cells: {took:?}, {} bytes", text.len());
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("aios_cell_up{"))
            .count(),
        9_000
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("# HELP aios_cell_up "))
            .count(),
        1
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("cellmesh_host_cell_running{"))
            .count(),
        10_000
    );
}
