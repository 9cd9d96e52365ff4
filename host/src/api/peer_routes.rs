//! Talking to other cells: `/peers`, `/register_peer`, `/send_to_peer`
//! (alpha's hand-kept list merged with the mesh), `/send` (through
//! discovery), and `/invoke/{capability}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{Fields, JsonObject};
use crate::cell::{CellRuntime, now_iso};
use crate::error::ApiError;
use crate::mesh::ManualPeer;
use crate::plugin::PluginError;
use crate::plugin::bindings::{CapabilityError, Message, SendError};

type Cell = State<Arc<CellRuntime>>;

/// `GET /peers`: hand-kept peers and the mesh as discovery last listed it.
pub(crate) async fn peers(State(cell): Cell) -> Json<Value> {
    let mut merged: BTreeMap<String, Value> = BTreeMap::new();
    for peer in cell.mesh.mesh_peers() {
        merged.insert(
            peer.cell_id.clone(),
            json!({
                "cell_id": peer.cell_id,
                "endpoint": peer.base_url(),
                "ip": peer.ip,
                "port": peer.port,
                "consciousness_level": peer.consciousness_level,
                "services": peer.services,
                "branch": peer.branch,
                "type": peer.cell_type,
                "hostname": peer.hostname,
                "last_seen": peer.last_seen,
                "source": "mesh",
            }),
        );
    }
    for peer in cell.mesh.manual_peers() {
        let entry = merged
            .entry(peer.cell_id.clone())
            .or_insert_with(|| json!({ "cell_id": peer.cell_id }));
        entry["endpoint"] = json!(peer.endpoint);
        entry["identity"] = json!(peer.identity);
        entry["registered_at"] = json!(peer.registered_at);
        entry["source"] = json!("manual");
    }
    let peers: Vec<Value> = merged.into_values().collect();
    Json(json!({
        "cell_id": cell.cell_id(),
        "count": peers.len(),
        "peers": peers,
    }))
}

/// `POST /register_peer`: `{"cell_id", "endpoint", "identity"?}`.
pub(crate) async fn register_peer(
    State(cell): Cell,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let cell_id = body.required_str("cell_id")?;
    let endpoint = body.required_str("endpoint")?;
    let identity = body.optional_str("identity")?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ApiError::BadRequest(format!(
            "field `endpoint` must be an http:// URL, got `{endpoint}`"
        )));
    }
    let stored = cell.mesh.register_manual(ManualPeer {
        cell_id: cell_id.clone(),
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        identity,
        registered_at: now_iso(),
    });
    if !stored {
        return Err(ApiError::Unavailable("the peer list is full".into()));
    }
    Ok(Json(json!({
        "status": "registered",
        "peer_id": cell_id,
        "total_peers": cell.mesh.manual_peers().len(),
    })))
}

/// `POST /send_to_peer`: `{"peer_id", "message", "type"?}`; 404 for an
/// unknown peer, 502 when it cannot be reached.
pub(crate) async fn send_to_peer(
    State(cell): Cell,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let peer_id = body.required_str("peer_id")?;
    let message = body.required_text("message")?;
    let message_type = body.optional_str("type")?.unwrap_or_else(|| "text".into());
    let Some(peer) = cell.mesh.resolve(&peer_id).await else {
        return Err(ApiError::NotFound {
            detail: format!("peer `{peer_id}` is not known"),
            extra: None,
        });
    };
    let payload = json!({
        "from_cell": cell.cell_id(),
        "content": message,
        "message_type": message_type,
    });
    let answer = cell
        .mesh
        .post_message(&peer.endpoint, &payload)
        .await
        .map_err(ApiError::BadGateway)?;
    Ok(Json(json!({
        "status": "sent",
        "peer_id": peer_id,
        "response": answer.body,
        "timestamp": now_iso(),
    })))
}

/// `POST /send`: `{"to_cell", "content", "message_type"?, "priority"?,
/// "metadata"?}`, the receiver found through discovery. The same delivery
/// path as the plugin's `send-message`.
pub(crate) async fn send(
    State(cell): Cell,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let to_cell = body.required_str("to_cell")?;
    let content = body.required_text("content")?;
    let msg = Message {
        from_cell: cell.cell_id().to_owned(),
        content,
        message_type: body
            .optional_str("message_type")?
            .unwrap_or_else(|| "text".into()),
        priority: body
            .optional_str("priority")?
            .unwrap_or_else(|| "normal".into()),
        metadata: body
            .get("metadata")
            .filter(|m| !m.is_null())
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".into()),
    };
    match cell.mesh.deliver(&to_cell, msg).await {
        Ok(delivery) => Ok(Json(json!({
            "status": "sent",
            "to_cell": delivery.to_cell,
            "message_id": delivery.message_id,
            "timestamp": now_iso(),
        }))),
        Err(SendError::UnknownCell(id)) => Err(ApiError::NotFound {
            detail: format!("discovery does not list a cell `{id}`"),
            extra: None,
        }),
        Err(SendError::Unreachable(detail)) => Err(ApiError::BadGateway(detail)),
        Err(SendError::Refused(detail)) => Err(ApiError::BadRequest(detail)),
    }
}

/// `POST /invoke/{capability}` with a JSON body: the capability's JSON
/// answer; 404 with the known list for an unknown capability, 400 for
/// invalid input, 500 when it fails.
pub(crate) async fn invoke(
    State(cell): Cell,
    Path(capability): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let known: Vec<String> = cell
        .sandbox
        .manifest()
        .capabilities
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let unknown = |name: &str| ApiError::NotFound {
        detail: format!("unknown capability `{name}`"),
        extra: Some(json!({ "capabilities": known })),
    };
    if !known.contains(&capability) {
        return Err(unknown(&capability));
    }
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        "{}".to_owned()
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        value.to_string()
    };
    match cell.sandbox.invoke(&capability, &input).await? {
        Ok(output) => serde_json::from_str(&output).map(Json).map_err(|e| {
            ApiError::Plugin(PluginError::InvalidOutput {
                export: "invoke",
                detail: format!("output is not JSON: {e}"),
            })
        }),
        Err(CapabilityError::UnknownCapability(name)) => Err(unknown(&name)),
        Err(CapabilityError::InvalidInput(detail)) => Err(ApiError::BadRequest(format!(
            "invalid input for `{capability}`: {detail}"
        ))),
        Err(CapabilityError::Failed(detail)) => Err(ApiError::CapabilityFailed(format!(
            "`{capability}`: {detail}"
        ))),
    }
}
