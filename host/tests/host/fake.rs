//! In-process fake servers on 127.0.0.1:0 for the egress, peer contract and
//! liveness tests: a peer that records every request it gets and answers
//! what the test tells it, a discovery service whose listing the test
//! writes (so it can list addresses our discovery would refuse), and one
//! that answers as the original Python discovery does (no batch calls).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Its method.
    pub method: Method,
    /// Its path and query.
    pub path: String,
    /// Its body as JSON (`null` when it is not JSON).
    pub body: Value,
}

impl Hit {
    /// Its path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// How a fake answers a request.
pub type Answer = Arc<dyn Fn(&Hit) -> Response + Send + Sync>;

#[derive(Clone)]
struct Shared {
    hits: Arc<Mutex<Vec<Hit>>>,
    answer: Answer,
}

/// A fake HTTP server that records requests and answers with `answer`.
pub struct Fake {
    /// Where it listens.
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Fake {
    /// Starts a fake on 127.0.0.1:0 answering every request with `answer`.
    pub async fn start(answer: impl Fn(&Hit) -> Response + Send + Sync + 'static) -> Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?, answer)
    }

    /// The same on a bound listener.
    pub fn start_on(
        listener: TcpListener,
        answer: impl Fn(&Hit) -> Response + Send + Sync + 'static,
    ) -> Result<Self> {
        let addr = listener.local_addr()?;
        let hits = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            hits: hits.clone(),
            answer: Arc::new(answer),
        };
        let app = Router::new().fallback(record).with_state(shared);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            hits,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A peer that takes every message with a receipt carrying `extra`
    /// fields (what a hostile peer would like relayed).
    pub async fn peer(extra: Value) -> Result<Self> {
        Self::start(move |_| {
            let mut receipt = json!({"status": "received", "message_id": 7,
                                     "timestamp": "2026-01-01T00:00:00"});
            if let (Some(receipt), Some(extra)) = (receipt.as_object_mut(), extra.as_object()) {
                receipt.extend(extra.clone());
            }
            json_answer(StatusCode::OK, &receipt)
        })
        .await
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request it received so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The requests it received so far with `method` on `path` (the query
    /// left out).
    pub fn hits_on(&self, method: &str, path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|hit| hit.method == method && hit.path_only() == path)
            .collect()
    }

    /// The requests it received so far on a path starting with `prefix`.
    pub fn hits_under(&self, prefix: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|hit| hit.path.starts_with(prefix))
            .collect()
    }

    /// Stops it and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn record(State(shared): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let hit = Hit {
        method,
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    shared.hits.lock().unwrap().push(hit.clone());
    (shared.answer)(&hit)
}

/// A JSON answer.
pub fn json_answer(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// A redirect to `location`.
pub fn redirect(status: StatusCode, location: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::LOCATION, location)
        .body(Body::empty())
        .unwrap()
}

/// A discovery service that accepts any registration and heartbeat and
/// lists exactly `peers` (CellInfo objects, written by the test).
pub async fn discovery(peers: Vec<Value>) -> Result<Fake> {
    Fake::start(move |hit| {
        let id = hit.body["cell_id"].clone();
        let path = hit.path.split('?').next().unwrap_or_default();
        match (hit.method.as_str(), path) {
            ("POST", "/register") => json_answer(
                StatusCode::OK,
                &json!({"status": "registered", "cell_id": id}),
            ),
            ("POST", "/heartbeat") => json_answer(
                StatusCode::OK,
                &json!({"status": "ok", "cell_id": id, "peers_count": peers.len()}),
            ),
            ("GET", "/peers") => json_answer(
                StatusCode::OK,
                &json!({"peers": peers, "count": peers.len(), "my_host": "fake"}),
            ),
            ("DELETE", _) => json_answer(
                StatusCode::OK,
                &json!({"status": "deregistered", "cell_id": path.rsplit('/').next()}),
            ),
            _ => json_answer(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"})),
        }
    })
    .await
}

/// A CellInfo as a discovery lists it, at `ip` and `port`.
pub fn cell_info(cell_id: &str, ip: &str, port: u16) -> Value {
    json!({"cell_id": cell_id, "ip": ip, "port": port, "consciousness_level": 0.1,
           "services": [], "branch": "main", "type": "fake_cell", "hostname": "fake",
           "last_seen": "2026-01-01T00:00:00.000000Z"})
}

/// Registers `cell_id` at `addr` with a real discovery at `discovery_url`.
pub async fn register_with(discovery_url: &str, cell_id: &str, addr: SocketAddr) -> Result<()> {
    let answer = crate::support::client()
        .post(format!("{discovery_url}/register"))
        .json(&cell_info(cell_id, &addr.ip().to_string(), addr.port()))
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_success(),
        "registering {cell_id}: {}",
        answer.status()
    );
    Ok(())
}

/// A discovery service as the original Python one (FastAPI) answers
/// (docs/contract.md): `POST /register` keeps the CellInfo and answers
/// `{"status": "registered", "cell_id"}` (no lease, no secret, no TTL);
/// `POST /heartbeat` answers `{"status": "ok", "cell_id", "peers_count"}`,
/// or 404 `{"detail": "Peer ID not registered. Call /register first."}`
/// for an id it does not hold; `GET /peers` lists what it holds;
/// `DELETE /peer/{id}` removes it (404 `{"detail": "Peer not found"}`).
/// It has no batch calls: `/batch/*` is answered `batch_status`, 404
/// `{"detail": "Not Found"}` (FastAPI's answer to a path it lacks) or 405
/// `{"detail": "Method Not Allowed"}`; so is any other path.
pub async fn original_discovery(batch_status: StatusCode) -> Result<Fake> {
    let registry: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    Fake::start(move |hit| {
        let mut registry = registry.lock().unwrap();
        let id = hit.body["cell_id"].as_str().unwrap_or_default().to_owned();
        let path = hit.path_only();
        match (hit.method.as_str(), path) {
            ("POST", "/register") => {
                let mut entry = hit.body.clone();
                entry["last_seen"] = json!("2026-01-01T00:00:00.000000Z");
                registry.insert(id.clone(), entry);
                json_answer(
                    StatusCode::OK,
                    &json!({"status": "registered", "cell_id": id}),
                )
            }
            ("POST", "/heartbeat") if registry.contains_key(&id) => json_answer(
                StatusCode::OK,
                &json!({"status": "ok", "cell_id": id, "peers_count": registry.len()}),
            ),
            ("POST", "/heartbeat") => json_answer(
                StatusCode::NOT_FOUND,
                &json!({"detail": "Peer ID not registered. Call /register first."}),
            ),
            ("GET", "/peers") => {
                let peers: Vec<&Value> = registry.values().collect();
                json_answer(
                    StatusCode::OK,
                    &json!({"peers": peers, "count": peers.len(), "my_host": "primary"}),
                )
            }
            ("DELETE", _) if path.starts_with("/peer/") => {
                let id = path.trim_start_matches("/peer/");
                match registry.remove(id) {
                    Some(_) => json_answer(
                        StatusCode::OK,
                        &json!({"status": "deregistered", "cell_id": id}),
                    ),
                    None => {
                        json_answer(StatusCode::NOT_FOUND, &json!({"detail": "Peer not found"}))
                    }
                }
            }
            _ if batch_status == StatusCode::METHOD_NOT_ALLOWED => json_answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"detail": "Method Not Allowed"}),
            ),
            _ => json_answer(StatusCode::NOT_FOUND, &json!({"detail": "Not Found"})),
        }
    })
    .await
}
