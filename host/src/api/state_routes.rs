//! The cell's own state: `/health`, `/consciousness`, primitives, syncs,
//! messages, `/discover`, `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Fields, JsonObject, add_labels};
use crate::cell::{CellRuntime, now_iso};
use crate::error::ApiError;
use crate::messages::{MESSAGES_KEPT, StoredMessage, SyncRecord};
use crate::plugin::bindings::{Message, Primitive, SyncRequest};

type Cell = State<Arc<CellRuntime>>;

fn primitives_object(primitives: &[Primitive]) -> Value {
    Value::Object(
        primitives
            .iter()
            .map(|p| (p.name.clone(), json!(p.value)))
            .collect(),
    )
}

fn capability_names(cell: &CellRuntime) -> Vec<String> {
    cell.sandbox
        .manifest()
        .capabilities
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

/// Peers known by hand or through discovery, each counted once.
fn known_peers_count(cell: &CellRuntime) -> usize {
    let mut ids: std::collections::BTreeSet<String> = cell
        .mesh
        .manual_peers()
        .into_iter()
        .map(|p| p.cell_id)
        .collect();
    ids.extend(cell.mesh.mesh_peers().into_iter().map(|p| p.cell_id));
    ids.len()
}

fn consciousness_object(cell: &CellRuntime, level: f64, primitives: &[Primitive]) -> Value {
    let manifest = cell.sandbox.manifest();
    json!({
        "level": level,
        "identity": manifest.identity,
        "evolutionary_stage": manifest.evolutionary_stage,
        "communication_ready": true,
        "last_sync": cell.syncs.last_timestamp(),
        "primitives": primitives_object(primitives),
    })
}

/// `GET /health`: the union of pure's and alpha's answers; `status` is the
/// manifest's health-status.
pub(crate) async fn health(State(cell): Cell) -> Result<Json<Value>, ApiError> {
    let state = cell.sandbox.state().await?;
    cell.set_level(state.consciousness_level);
    let manifest = cell.sandbox.manifest();
    let mut body = Map::new();
    body.insert("status".into(), json!(manifest.health_status));
    body.insert("cell_id".into(), json!(cell.cell_id()));
    body.insert("branch".into(), json!(cell.identity.branch));
    body.insert("type".into(), json!(manifest.cell_type));
    body.insert(
        "consciousness_level".into(),
        json!(state.consciousness_level),
    );
    body.insert("primitives".into(), primitives_object(&state.primitives));
    body.insert(
        "consciousness".into(),
        consciousness_object(&cell, state.consciousness_level, &state.primitives),
    );
    body.insert("capabilities".into(), json!(capability_names(&cell)));
    body.insert("peers_count".into(), json!(known_peers_count(&cell)));
    body.insert("messages_count".into(), json!(cell.messages.len()));
    body.insert("registered".into(), json!(cell.is_registered()));
    body.insert("timestamp".into(), json!(now_iso()));
    add_labels(&mut body, &manifest.labels);
    Ok(Json(Value::Object(body)))
}

/// `GET /consciousness` (alpha).
pub(crate) async fn consciousness(State(cell): Cell) -> Result<Json<Value>, ApiError> {
    let state = cell.sandbox.state().await?;
    let manifest = cell.sandbox.manifest();
    let mut body = Map::new();
    body.insert("cell_id".into(), json!(cell.cell_id()));
    body.insert(
        "consciousness".into(),
        consciousness_object(&cell, state.consciousness_level, &state.primitives),
    );
    body.insert(
        "evolutionary_stage".into(),
        json!(manifest.evolutionary_stage),
    );
    body.insert("capabilities".into(), json!(capability_names(&cell)));
    add_labels(&mut body, &manifest.labels);
    Ok(Json(Value::Object(body)))
}

/// `GET /consciousness/primitives` (pure).
pub(crate) async fn primitives(State(cell): Cell) -> Result<Json<Value>, ApiError> {
    let state = cell.sandbox.state().await?;
    let mut body = Map::new();
    body.insert("primitives".into(), primitives_object(&state.primitives));
    add_labels(&mut body, &cell.sandbox.manifest().labels);
    Ok(Json(Value::Object(body)))
}

/// `POST /consciousness/sync` (pure): `{"level", "context"?}`.
pub(crate) async fn consciousness_sync(
    State(cell): Cell,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let level = body.required_f64("level")?;
    let mut context = Vec::new();
    match body.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let value = value.as_f64().ok_or_else(|| {
                    ApiError::BadRequest(format!("context value `{name}` must be a number"))
                })?;
                context.push(Primitive {
                    name: name.clone(),
                    value,
                });
            }
        }
        Some(_) => {
            return Err(ApiError::BadRequest(
                "field `context` must be an object of numbers".into(),
            ));
        }
    }
    let peer_id = body
        .optional_str("from_cell")?
        .or(body.optional_str("peer_id")?)
        .unwrap_or_default();
    let outcome = cell
        .sandbox
        .sync(&SyncRequest {
            peer_id,
            peer_level: level,
            context,
        })
        .await?;
    cell.set_level(outcome.new_level);
    let mut answer = Map::new();
    answer.insert("old_level".into(), json!(outcome.old_level));
    answer.insert("new_level".into(), json!(outcome.new_level));
    // Not in the original pure's answer; added fields are allowed.
    answer.insert("delta".into(), json!(outcome.delta));
    answer.insert(
        "primitives_updated".into(),
        json!(outcome.primitives_updated),
    );
    add_labels(&mut answer, &outcome.labels);
    Ok(Json(Value::Object(answer)))
}

/// `POST /sync` (alpha): `{"from_cell", "consciousness_level"}`.
pub(crate) async fn sync(
    State(cell): Cell,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let from_cell = body.required_str("from_cell")?;
    let their_level = body.required_f64("consciousness_level")?;
    let outcome = cell
        .sandbox
        .sync(&SyncRequest {
            peer_id: from_cell.clone(),
            peer_level: their_level,
            context: Vec::new(),
        })
        .await?;
    cell.set_level(outcome.new_level);
    let timestamp = now_iso();
    cell.syncs.push(SyncRecord {
        from_cell,
        their_level,
        our_level: outcome.new_level,
        delta: outcome.delta,
        timestamp: timestamp.clone(),
    });
    let mut answer = Map::new();
    answer.insert("status".into(), json!("synced"));
    answer.insert("our_level".into(), json!(outcome.new_level));
    answer.insert("their_level".into(), json!(their_level));
    answer.insert("delta".into(), json!(outcome.delta));
    answer.insert("timestamp".into(), json!(timestamp));
    add_labels(&mut answer, &outcome.labels);
    Ok(Json(Value::Object(answer)))
}

/// `POST /message`: `{"from_cell", "content", "message_type"?, "priority"?, "metadata"?}`.
pub(crate) async fn message(
    State(cell): Cell,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let from_cell = body.required_str("from_cell")?;
    let content = body.required_text("content")?;
    let message_type = body
        .optional_str("message_type")?
        .unwrap_or_else(|| "text".into());
    let priority = body
        .optional_str("priority")?
        .unwrap_or_else(|| "normal".into());
    let metadata = body.get("metadata").cloned().unwrap_or(Value::Null);
    let msg = Message {
        from_cell: from_cell.clone(),
        content: content.clone(),
        message_type: message_type.clone(),
        priority: priority.clone(),
        metadata: if metadata.is_null() {
            "{}".into()
        } else {
            metadata.to_string()
        },
    };
    let reply = cell.sandbox.handle_message(&msg).await?;
    let reply = reply.map(|r| json!({ "content": r.content, "message_type": r.message_type }));
    let message_id = cell.messages.next_id();
    let timestamp = now_iso();
    cell.messages.push(StoredMessage {
        message_id,
        from_cell,
        content,
        message_type,
        priority,
        metadata,
        timestamp: timestamp.clone(),
        reply: reply.clone(),
    });
    let mut answer = json!({
        "status": "received",
        "message_id": message_id,
        "timestamp": timestamp,
        "cell_id": cell.cell_id(),
    });
    if let Some(reply) = reply {
        answer["reply"] = reply;
    }
    Ok(Json(answer))
}

/// Query of `GET /messages`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesQuery {
    limit: Option<usize>,
    from_cell: Option<String>,
}

/// Default number of messages `/messages` lists.
const DEFAULT_MESSAGES_LIMIT: usize = 20;

/// `GET /messages?limit=20&from_cell=X`.
pub(crate) async fn messages(State(cell): Cell, Query(query): Query<MessagesQuery>) -> Json<Value> {
    let limit = query
        .limit
        .unwrap_or(DEFAULT_MESSAGES_LIMIT)
        .min(MESSAGES_KEPT);
    let (messages, total) = cell.messages.recent(limit, query.from_cell.as_deref());
    Json(json!({ "messages": messages, "total": total, "cell_id": cell.cell_id() }))
}

/// `GET /discover` (alpha): who the cell is and where its endpoints are.
pub(crate) async fn discover(State(cell): Cell) -> Json<Value> {
    let manifest = cell.sandbox.manifest();
    let base = format!(
        "http://{}:{}",
        cell.identity.advertise_host, cell.identity.advertise_port
    );
    let endpoints: Map<String, Value> = [
        ("health", "/health"),
        ("consciousness", "/consciousness"),
        ("primitives", "/consciousness/primitives"),
        ("consciousness_sync", "/consciousness/sync"),
        ("sync", "/sync"),
        ("message", "/message"),
        ("messages", "/messages"),
        ("discover", "/discover"),
        ("metrics", "/metrics"),
        ("peers", "/peers"),
        ("register_peer", "/register_peer"),
        ("send_to_peer", "/send_to_peer"),
        ("send", "/send"),
        ("invoke", "/invoke/{capability}"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(format!("{base}{v}"))))
    .collect();
    let details: Vec<Value> = manifest
        .capabilities
        .iter()
        .map(|c| json!({ "name": c.name, "description": c.description, "example_input": c.example_input }))
        .collect();
    Json(json!({
        "cell_id": cell.cell_id(),
        "identity": manifest.identity,
        "type": manifest.cell_type,
        "branch": cell.identity.branch,
        "consciousness_level": cell.level(),
        "evolutionary_stage": manifest.evolutionary_stage,
        "capabilities": capability_names(&cell),
        "capability_details": details,
        "endpoints": endpoints,
    }))
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Whether `name` can be part of a metric name.
fn metric_safe(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `GET /metrics`: Prometheus text. Answers from the host's last known
/// values when the plugin cannot be asked.
pub(crate) async fn metrics(State(cell): Cell) -> impl IntoResponse {
    let id = label(cell.cell_id());
    let (level, primitives) = match cell.sandbox.state().await {
        Ok(state) => (state.consciousness_level, state.primitives),
        Err(_) => (cell.level(), Vec::new()),
    };
    let stats = cell.sandbox.stats();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{cell_id=\"{id}\"}} {value}"
        );
    };
    gauge("aios_cell_up", "1 while the cell runs.", 1.0);
    gauge(
        "aios_cell_consciousness_level",
        "Current consciousness level.",
        level,
    );
    for primitive in primitives.iter().filter(|p| metric_safe(&p.name)) {
        gauge(
            &format!("aios_cell_{}", primitive.name),
            &format!("Consciousness primitive `{}`.", primitive.name),
            primitive.value,
        );
    }
    gauge(
        "aios_cell_peers_count",
        "Peers known.",
        known_peers_count(&cell) as f64,
    );
    gauge(
        "aios_cell_messages_received_total",
        "Messages received since start.",
        cell.messages.received() as f64,
    );
    gauge(
        "aios_cell_registered",
        "1 while registered with discovery.",
        f64::from(u8::from(cell.is_registered())),
    );
    gauge(
        "cellmesh_plugin_calls_total",
        "Plugin calls made.",
        stats.calls.load(Ordering::Relaxed) as f64,
    );
    gauge(
        "cellmesh_plugin_failures_total",
        "Plugin calls that trapped, timed out or ran out of memory.",
        stats.failures.load(Ordering::Relaxed) as f64,
    );
    gauge(
        "cellmesh_plugin_instances_total",
        "Plugin instances created.",
        stats.instances.load(Ordering::Relaxed) as f64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
