//! Liveness of a many-cell host (issue 11): one batch request per host per
//! heartbeat interval against our discovery, per-cell rules kept (a
//! forgotten cell registered again, a refused cell failed alone, a
//! displaced cell contested), batched deregistration, and one request per
//! cell against the original discovery (no batch calls) or with
//! `--batch off`.
//!
//! The cells share one plugin file and run no listener (liveness never
//! calls a cell); each advertises a port of its own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::http::StatusCode;
use cell_host::cell::{CellRuntime, Identity};
use cell_host::contest::ContestPolicy;
use cell_host::discovery_client::{DiscoveryClient, http_client};
use cell_host::egress::{PeerClient, PeerPolicy};
use cell_host::fleet::{CellSlot, SlotState};
use cell_host::lifecycle::{BackoffPolicy, LifecycleSettings};
use cell_host::liveness::{BatchMode, LiveCell, LivenessEnd, deregister_all, run_liveness};
use cell_host::mesh::{Mesh, MeshServices};
use cell_host::mesh_view::MeshView;
use cell_host::plugin::{ComponentCache, PluginEngine, PluginSandbox};
use cell_host::status::RegistrationState;
use cellmesh_artifacts::PURE_WASM;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fake::{self, Fake, json_answer};
use crate::support::{self, Discovery, PATIENCE, client, eventually, register_as};

/// The host's heartbeat interval in these tests.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// Fast intervals: heartbeats every 200 ms, registration back-off from
/// 20 ms capped at 200 ms.
fn settings() -> LifecycleSettings {
    LifecycleSettings {
        heartbeat: HEARTBEAT,
        backoff: BackoffPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
            attempts: 10,
        },
        startup_delay: Duration::ZERO,
        contest: ContestPolicy::default(),
    }
}

/// The id of test cell `index`.
fn cell_id(index: usize) -> String {
    format!("cell-{index:03}")
}

/// The port test cell `index` advertises.
fn port_of(index: usize) -> u16 {
    20_000 + index as u16
}

/// `count` cells of the pure plugin against the discovery at `url`, cell
/// `i` on branch `branch(i)`, as a host builds them: one engine, one
/// discovery client, one peer client, one mesh view; a runtime and a slot
/// per cell.
async fn build_cells(
    url: &str,
    count: usize,
    branch: impl Fn(usize) -> String,
) -> Result<(Vec<LiveCell>, DiscoveryClient)> {
    let discovery = DiscoveryClient::new(http_client(Duration::from_secs(5)), url);
    let peers = PeerClient::new(PeerPolicy::default(), Duration::from_secs(5));
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let cache = ComponentCache::new(support::cache_dir());
    let view = Arc::new(MeshView::default());
    let mut cells = Vec::with_capacity(count);
    for index in 0..count {
        let mesh = Arc::new(Mesh::with_view(
            discovery.clone(),
            peers.clone(),
            view.clone(),
        ));
        let services = Arc::new(MeshServices::new(mesh.clone(), Vec::new()));
        let sandbox = PluginSandbox::builder(&engine, Path::new(PURE_WASM))
            .cache(Some(&cache))
            .services(services)
            .load()
            .await
            .with_context(|| format!("loading cell {index}"))?;
        let id = cell_id(index);
        mesh.set_self_id(id.clone());
        let identity = Identity {
            cell_id: id.clone(),
            branch: branch(index),
            advertise_host: "127.0.0.1".to_owned(),
            advertise_port: port_of(index),
        };
        let cell = Arc::new(CellRuntime::new(sandbox, identity, mesh));
        let slot = Arc::new(CellSlot::new(
            index,
            id,
            PURE_WASM.into(),
            None,
            Some(format!("127.0.0.1:{}", port_of(index))),
            SlotState::Running(cell.clone()),
        ));
        cells.push(LiveCell { slot, cell });
    }
    Ok((cells, discovery))
}

/// The liveness of `cells`, running in a task.
struct Running {
    cancel: CancellationToken,
    task: JoinHandle<LivenessEnd>,
    /// Cancels the liveness if the test ends early.
    _guard: tokio_util::sync::DropGuard,
}

impl Running {
    fn start(cells: &[LiveCell], discovery: &DiscoveryClient, batch: BatchMode) -> Self {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_liveness(
            cells.to_vec(),
            discovery.clone(),
            "test-host".to_owned(),
            settings(),
            batch,
            cancel.clone(),
        ));
        let _guard = cancel.clone().drop_guard();
        Self {
            cancel,
            task,
            _guard,
        }
    }

    /// Cancels it and answers how it ended.
    async fn stop(self) -> Result<LivenessEnd> {
        self.cancel.cancel();
        Ok(tokio::time::timeout(Duration::from_secs(10), self.task).await??)
    }
}

/// The value of the series `series` (name and labels, as written) in
/// discovery's `/metrics`; 0 when absent.
async fn metric(discovery: &Discovery, series: &str) -> Result<f64> {
    let text = client()
        .get(format!("{}/metrics", discovery.url()))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Discovery's count of batch requests of `call`.
async fn batches(discovery: &Discovery, call: &str) -> Result<f64> {
    metric(
        discovery,
        &format!("discovery_batch_requests_total{{call=\"{call}\"}}"),
    )
    .await
}

/// Waits until discovery lists every id of `ids`.
async fn all_listed(discovery: &Discovery, ids: &[String]) -> Vec<Value> {
    eventually(&format!("{} cells listed", ids.len()), PATIENCE, || async {
        let peers = discovery.peers().await.ok()?;
        ids.iter()
            .all(|id| peers.iter().any(|p| p["cell_id"] == id.as_str()))
            .then_some(peers)
    })
    .await
}

fn ids(count: usize) -> Vec<String> {
    (0..count).map(cell_id).collect()
}

/// Fifty cells: registered by one batch request, renewed by one batch
/// request per interval (not fifty), each cell's standing and peer count
/// kept; then removed by one batch deregistration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cells_register_heartbeat_and_deregister_in_batches() -> Result<()> {
    let discovery = Discovery::start(crate::TTL).await?;
    let (cells, host_client) = build_cells(&discovery.url(), 50, |_| "main".into()).await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    all_listed(&discovery, &ids(50)).await;
    assert_eq!(batches(&discovery, "register").await?, 1.0);

    // Heartbeats: one batch per interval for the 50 cells. Over a window of
    // 10 intervals, expect about 10 batches: at least 2, at most 30
    // (bounds 5x and 3x away), where one request per cell would be ~500.
    let window = 10 * HEARTBEAT;
    let before = batches(&discovery, "heartbeat").await?;
    let cells_before = metric(
        &discovery,
        "discovery_batch_cells_total{call=\"heartbeat\"}",
    )
    .await?;
    tokio::time::sleep(window).await;
    let beats = batches(&discovery, "heartbeat").await? - before;
    let renewed = metric(
        &discovery,
        "discovery_batch_cells_total{call=\"heartbeat\"}",
    )
    .await?
        - cells_before;
    assert!((2.0..=30.0).contains(&beats), "{beats} batch heartbeats");
    assert_eq!(renewed, beats * 50.0, "each batch renews all 50 cells");
    for live in &cells {
        let status = live.cell.registration_status();
        assert_eq!(status.status, RegistrationState::Registered, "{status:?}");
        assert!(status.incarnation.is_some());
        assert_eq!(live.cell.peers_count(), 50);
        assert!(!live.slot.is_failed());
    }
    // The view the cells share is refreshed for all: each sees the 49 others.
    for live in &cells {
        assert_eq!(
            live.cell.mesh.mesh_peers().len(),
            49,
            "{}",
            live.cell.cell_id()
        );
    }

    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);
    let started = Instant::now();
    deregister_all(
        &cells,
        &host_client,
        "test-host",
        true,
        Duration::from_secs(5),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(discovery.peers().await?.is_empty(), "every cell removed");
    assert_eq!(batches(&discovery, "deregister").await?, 1.0);
    assert!(cells.iter().all(|live| !live.cell.is_registered()));
    Ok(())
}

/// A cell discovery forgets (deregistered behind the host's back) is
/// registered again at the next heartbeat, in a batch of its own; the
/// others keep their leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_discovery_forgets_is_registered_again_alone() -> Result<()> {
    let discovery = Discovery::start(crate::TTL).await?;
    let (cells, host_client) = build_cells(&discovery.url(), 20, |_| "main".into()).await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    let listed = all_listed(&discovery, &ids(20)).await;
    let incarnation = |peers: &[Value], id: &str| {
        peers
            .iter()
            .find(|p| p["cell_id"] == id)
            .map(|p| p["incarnation"].clone())
    };

    let forgotten = cell_id(7);
    let gone = client()
        .delete(format!("{}/peer/{forgotten}", discovery.url()))
        .send()
        .await?;
    assert_eq!(gone.status(), 200);
    let again = eventually("the forgotten cell registered again", PATIENCE, || async {
        discovery.peer(&forgotten).await
    })
    .await;
    assert_ne!(
        again["incarnation"],
        incarnation(&listed, &forgotten).unwrap()
    );
    assert_eq!(batches(&discovery, "register").await?, 2.0);
    let now = discovery.peers().await?;
    for id in ids(20).iter().filter(|id| **id != forgotten) {
        assert_eq!(incarnation(&now, id), incarnation(&listed, id), "{id}");
    }
    eventually("the cell's standing is registered", PATIENCE, || async {
        (cells[7].cell.registration_status().status == RegistrationState::Registered).then_some(())
    })
    .await;
    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);
    Ok(())
}

/// A cell discovery refuses (a branch longer than 255 characters) fails
/// its slot with discovery's reason; the other cells register and run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cell_fails_its_slot_while_the_others_run() -> Result<()> {
    let discovery = Discovery::start(crate::TTL).await?;
    let (cells, host_client) = build_cells(&discovery.url(), 10, |i| {
        if i == 3 {
            "b".repeat(300)
        } else {
            "main".into()
        }
    })
    .await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    let others: Vec<String> = ids(10).into_iter().filter(|id| id != "cell-003").collect();
    all_listed(&discovery, &others).await;
    eventually("the refused slot failed", PATIENCE, || async {
        cells[3].slot.is_failed().then_some(())
    })
    .await;
    match cells[3].slot.state() {
        SlotState::Failed(reason) => assert!(
            reason.starts_with("discovery refused the registration: ") && reason.contains("branch"),
            "{reason}"
        ),
        SlotState::Running(_) => unreachable!("checked above"),
    }
    assert!(discovery.peer("cell-003").await.is_none());
    // The others keep being renewed; the liveness did not end.
    let before = batches(&discovery, "heartbeat").await?;
    eventually("more batch heartbeats", PATIENCE, || async {
        (batches(&discovery, "heartbeat").await.ok()? >= before + 2.0).then_some(())
    })
    .await;
    assert!(!running.task.is_finished());
    assert!(
        cells
            .iter()
            .enumerate()
            .all(|(i, c)| i == 3 || !c.slot.is_failed())
    );
    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);
    Ok(())
}

/// When discovery refuses every cell, the liveness ends by itself saying
/// so (the host then exits non-zero).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_cell_is_refused_the_liveness_ends() -> Result<()> {
    let discovery = Discovery::start(crate::TTL).await?;
    let (cells, host_client) = build_cells(&discovery.url(), 3, |_| "b".repeat(300)).await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    // Target: one round trip; the bound is far above it.
    let end = tokio::time::timeout(Duration::from_secs(20), running.task).await??;
    assert_eq!(end, LivenessEnd::AllRefused);
    assert!(cells.iter().all(|live| live.slot.is_failed()));
    Ok(())
}

/// A displaced cell (its id registered again elsewhere) follows the
/// contest rules, reported on its standing, and re-claims its id after a
/// TTL; the other cells stay registered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_displaced_cell_is_contested_and_reclaimed_while_the_others_run() -> Result<()> {
    let ttl = Duration::from_millis(1_500);
    let discovery = Discovery::start(ttl).await?;
    let (cells, host_client) = build_cells(&discovery.url(), 5, |_| "main".into()).await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    all_listed(&discovery, &ids(5)).await;
    let (status, body) = register_as(&discovery.url(), "cell-002", "10.66.66.66", 9, None).await?;
    assert_eq!(status, 200, "{body}");
    let contested = eventually("cell-002 contested", PATIENCE, || async {
        let status = cells[2].cell.registration_status();
        (status.status == RegistrationState::Contested).then_some(status)
    })
    .await;
    assert_eq!(contested.by.as_deref(), Some("10.66.66.66:9"));
    assert_eq!(contested.displacements, 1);
    for (i, live) in cells.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert_eq!(
            live.cell.registration_status().status,
            RegistrationState::Registered,
            "cell {i}"
        );
    }
    let own = u64::from(port_of(2));
    eventually("cell-002 re-claimed its id", PATIENCE, || async {
        let port = discovery.peer("cell-002").await?["port"].as_u64()?;
        (port == own).then_some(())
    })
    .await;
    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);
    Ok(())
}

/// Against the original discovery (no batch calls: 404 `{"detail":"Not
/// Found"}` or 405 on `/batch/*`), every cell registers with one request of
/// its own and heartbeats with requests of its own; the batch path is
/// tried once, never again; deregistration is one request per cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_original_discovery_each_cell_uses_its_own_requests() -> Result<()> {
    for answer in [StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED] {
        let discovery = fake::original_discovery(answer).await?;
        per_cell_requests(&discovery, BatchMode::Auto).await?;
        assert_eq!(
            discovery.hits_under("/batch/").len(),
            1,
            "one batch registration tried ({answer})"
        );
        discovery.stop().await;
    }
    Ok(())
}

/// With `--batch off` the host never tries the batch path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_batch_off_each_cell_uses_its_own_requests() -> Result<()> {
    let discovery = fake::original_discovery(StatusCode::NOT_FOUND).await?;
    per_cell_requests(&discovery, BatchMode::Off).await?;
    assert!(discovery.hits_under("/batch/").is_empty());
    discovery.stop().await;
    Ok(())
}

/// Five cells against `discovery` (original-like) with `batch`: one
/// registration request per cell, heartbeats per cell, one view refresh
/// per interval for all, one deregistration per cell.
async fn per_cell_requests(discovery: &Fake, batch: BatchMode) -> Result<()> {
    let (cells, host_client) = build_cells(&discovery.url(), 5, |_| "main".into()).await?;
    let running = Running::start(&cells, &host_client, batch);
    eventually("every cell heartbeats on its own", PATIENCE, || async {
        let beats = discovery.hits_on("POST", "/heartbeat");
        ids(5)
            .iter()
            .all(|id| {
                beats
                    .iter()
                    .filter(|h| h.body["cell_id"] == id.as_str())
                    .count()
                    >= 2
            })
            .then_some(())
    })
    .await;
    let registers = discovery.hits_on("POST", "/register");
    for id in ids(5) {
        let mine = registers
            .iter()
            .filter(|h| h.body["cell_id"] == id.as_str())
            .count();
        assert_eq!(mine, 1, "{id} registered once, alone");
    }
    // The view the cells share is refreshed once per interval, not once per
    // cell: over 10 intervals about 10 listings (at most 30), not 50.
    let before = discovery.hits_on("GET", "/peers").len();
    tokio::time::sleep(10 * HEARTBEAT).await;
    let listings = discovery.hits_on("GET", "/peers").len() - before;
    assert!(listings <= 30, "{listings} listings in 10 intervals");
    for live in &cells {
        assert_eq!(
            live.cell.registration_status().status,
            RegistrationState::Registered
        );
        assert_eq!(live.cell.peers_count(), 5);
    }
    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);

    deregister_all(
        &cells,
        &host_client,
        "test-host",
        true,
        Duration::from_secs(5),
    )
    .await;
    let deleted: Vec<String> = discovery
        .hits()
        .into_iter()
        .filter(|h| h.method == "DELETE")
        .map(|h| h.path_only().to_owned())
        .collect();
    assert_eq!(deleted.len(), 5, "{deleted:?}");
    for id in ids(5) {
        assert!(deleted.contains(&format!("/peer/{id}")), "{deleted:?}");
    }
    assert!(cells.iter().all(|live| !live.cell.is_registered()));
    Ok(())
}

/// A discovery that answers the batch registration: first 500 (the whole
/// batch fails), then 503 for cells 3 to 5 (registry full) and success for
/// the others, then success; heartbeats renew whatever they name.
async fn reluctant_discovery() -> Result<Fake> {
    let registers = std::sync::atomic::AtomicUsize::new(0);
    Fake::start(move |hit| match hit.path_only() {
        "/batch/register" => {
            let call = registers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if call == 0 {
                return json_answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"detail": "oops"}),
                );
            }
            let results: Vec<Value> = hit.body["cells"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let id = cell["cell_id"].clone();
                    if call == 1 && (3..6).contains(&i) {
                        json!({"cell_id": id, "status": "refused", "code": 503,
                               "detail": "The registry is full"})
                    } else {
                        json!({"cell_id": id, "status": "registered", "incarnation": 1 + i,
                               "secret": "0123456789abcdef0123456789abcdef",
                               "replaced": false})
                    }
                })
                .collect();
            json_answer(
                StatusCode::OK,
                &json!({"host_id": "test-host", "ttl_ms": 60000, "results": results}),
            )
        }
        "/batch/heartbeat" => json_answer(
            StatusCode::OK,
            &json!({"status": "ok", "host_id": "test-host",
                    "renewed": hit.body["cells"].as_array().map_or(0, Vec::len),
                    "peers_count": 6, "refused": []}),
        ),
        "/peers" => json_answer(
            StatusCode::OK,
            &json!({"peers": [], "count": 0, "my_host": "fake"}),
        ),
        _ => json_answer(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"})),
    })
    .await
}

/// A batch that fails as a whole is retried with back-off; the cells
/// discovery cannot take yet (503) are retried together, in one batch of
/// their own; every heartbeat batch then names all six cells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_discovery_cannot_take_yet_are_retried_together() -> Result<()> {
    let discovery = reluctant_discovery().await?;
    let (cells, host_client) = build_cells(&discovery.url(), 6, |_| "main".into()).await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    eventually("every cell registered", PATIENCE, || async {
        cells
            .iter()
            .all(|live| live.cell.registration_status().status == RegistrationState::Registered)
            .then_some(())
    })
    .await;
    let registers = discovery.hits_on("POST", "/batch/register");
    let named = |hit: &fake::Hit| -> Vec<String> {
        hit.body["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["cell_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(registers.len(), 3, "a 500, a partial success, the rest");
    assert_eq!(named(&registers[0]), ids(6));
    assert_eq!(named(&registers[1]), ids(6));
    assert_eq!(
        named(&registers[2]),
        vec![cell_id(3), cell_id(4), cell_id(5)]
    );
    eventually("a heartbeat naming every cell", PATIENCE, || async {
        let beats = discovery.hits_on("POST", "/batch/heartbeat");
        beats.iter().any(|hit| named(hit).len() == 6).then_some(())
    })
    .await;
    assert!(
        discovery.hits_on("POST", "/register").is_empty(),
        "never one request per cell"
    );
    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);
    Ok(())
}

/// Deregistration is bounded by its timeout even when discovery never
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_is_bounded_by_its_timeout() -> Result<()> {
    let silent = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "late"
    });
    let (addr, _guard) = support::serve_router(silent).await?;
    let (cells, host_client) = build_cells(&format!("http://{addr}"), 3, |_| "main".into()).await?;
    for (i, live) in cells.iter().enumerate() {
        live.cell
            .set_lease(Some(cell_host::discovery_client::Lease {
                incarnation: Some(i as u64 + 1),
                secret: Some("0123456789abcdef0123456789abcdef".into()),
                ttl: None,
            }));
    }
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    deregister_all(&cells, &host_client, "test-host", true, timeout).await;
    // Target: the timeout; the bound is 5x it.
    assert!(started.elapsed() < 5 * timeout, "{:?}", started.elapsed());
    assert!(cells.iter().all(|live| live.cell.is_registered()));
    Ok(())
}

/// A discovery that offers batch calls while `batch` holds, and answers as
/// the original does (404 on `/batch/*`, one request per cell accepted)
/// once it is cleared: discovery replaced by the original service.
async fn downgrading_discovery(batch: Arc<std::sync::atomic::AtomicBool>) -> Result<Fake> {
    use std::sync::atomic::Ordering;
    Fake::start(move |hit| {
        let on = batch.load(Ordering::SeqCst);
        let cells = hit.body["cells"].as_array().cloned().unwrap_or_default();
        match (on, hit.path_only()) {
            (true, "/batch/register") => {
                let results: Vec<Value> = cells
                    .iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        json!({"cell_id": cell["cell_id"], "status": "registered",
                               "incarnation": 1 + i,
                               "secret": "0123456789abcdef0123456789abcdef"})
                    })
                    .collect();
                json_answer(
                    StatusCode::OK,
                    &json!({"host_id": "test-host", "ttl_ms": 60000, "results": results}),
                )
            }
            (true, "/batch/heartbeat") => json_answer(
                StatusCode::OK,
                &json!({"status": "ok", "host_id": "test-host", "renewed": cells.len(),
                        "peers_count": 3, "refused": []}),
            ),
            (false, "/register") => json_answer(
                StatusCode::OK,
                &json!({"status": "registered", "cell_id": hit.body["cell_id"]}),
            ),
            (false, "/heartbeat") => json_answer(
                StatusCode::OK,
                &json!({"status": "ok", "cell_id": hit.body["cell_id"], "peers_count": 3}),
            ),
            (_, "/peers") => json_answer(
                StatusCode::OK,
                &json!({"peers": [], "count": 0, "my_host": "fake"}),
            ),
            _ => json_answer(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"})),
        }
    })
    .await
}

/// Batch calls decided, then discovery replaced by one without them: the
/// first batch answered 404 switches the host to one request per cell for
/// good (the rule in `cell_host::liveness`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_that_loses_its_batch_calls_is_then_used_per_cell() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let batch = Arc::new(AtomicBool::new(true));
    let discovery = downgrading_discovery(batch.clone()).await?;
    let (cells, host_client) = build_cells(&discovery.url(), 3, |_| "main".into()).await?;
    let running = Running::start(&cells, &host_client, BatchMode::Auto);
    eventually("a batch heartbeat", PATIENCE, || async {
        (!discovery.hits_on("POST", "/batch/heartbeat").is_empty()).then_some(())
    })
    .await;
    assert!(discovery.hits_on("POST", "/register").is_empty());
    batch.store(false, Ordering::SeqCst);
    let batches_then = discovery.hits_under("/batch/").len();
    eventually("every cell heartbeats on its own", PATIENCE, || async {
        let beats = discovery.hits_on("POST", "/heartbeat");
        ids(3)
            .iter()
            .all(|id| beats.iter().any(|h| h.body["cell_id"] == id.as_str()))
            .then_some(())
    })
    .await;
    let registers = discovery.hits_on("POST", "/register");
    assert_eq!(registers.len(), 3, "each cell registered again, alone");
    // One batch call found the batch calls gone (a heartbeat, or a
    // registration already in flight), none after.
    tokio::time::sleep(5 * HEARTBEAT).await;
    let after = discovery.hits_under("/batch/").len() - batches_then;
    assert!(after <= 1, "{after} batch calls after the downgrade");
    assert_eq!(running.stop().await?, LivenessEnd::Cancelled);
    Ok(())
}
