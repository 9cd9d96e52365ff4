//! Talking to other cells: `/peers`, `/register_peer`, `/send_to_peer`
//! (alpha's hand-kept list merged with the mesh), `/send` (through
//! discovery), and `/invoke/{capability}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::Value;

use super::ApiError;
use super::answers::{
    ListedFields, ManualFields, PeerEntry, PeersAnswer, RegisterPeerAnswer, SendAnswer,
    SendToPeerAnswer,
};
use super::body::AppJson;
use super::requests::{
    RegisterPeerRequest, SendRequest, SendToPeerRequest, message_type_or_default, metadata_text,
    priority_or_default,
};
use crate::cell::{CellRuntime, now_iso};
use crate::discovery_client::peer_base_url;
use crate::mesh::{ManualPeer, OutgoingMessage};
use crate::plugin::PluginError;
use crate::plugin::bindings::{CapabilityError, Message, SendError};

type Cell = State<Arc<CellRuntime>>;

/// `GET /peers`: hand-kept peers and the mesh as discovery last listed it.
pub(crate) async fn peers(State(cell): Cell) -> Json<PeersAnswer> {
    let mut merged: BTreeMap<String, PeerEntry> = BTreeMap::new();
    for peer in cell.mesh.mesh_peers() {
        let entry = PeerEntry {
            cell_id: peer.cell_id.clone(),
            endpoint: peer_base_url(&peer),
            source: "mesh",
            listed: Some(ListedFields {
                ip: peer.ip,
                port: peer.port,
                consciousness_level: peer.consciousness_level,
                services: peer.services,
                branch: peer.branch,
                cell_type: peer.cell_type,
                hostname: peer.hostname,
                last_seen: peer.last_seen,
            }),
            manual: None,
        };
        merged.insert(peer.cell_id, entry);
    }
    for peer in cell.mesh.manual_peers() {
        let entry = merged
            .entry(peer.cell_id.clone())
            .or_insert_with(|| PeerEntry {
                cell_id: peer.cell_id.clone(),
                endpoint: String::new(),
                source: "manual",
                listed: None,
                manual: None,
            });
        // The hand-kept endpoint wins over the listed one.
        entry.endpoint = peer.endpoint;
        entry.source = "manual";
        entry.manual = Some(ManualFields {
            identity: peer.identity,
            registered_at: peer.registered_at,
        });
    }
    let peers: Vec<PeerEntry> = merged.into_values().collect();
    Json(PeersAnswer {
        cell_id: cell.cell_id().to_owned(),
        count: peers.len(),
        peers,
    })
}

/// `POST /register_peer`: `{"cell_id", "endpoint", "identity"?}`.
pub(crate) async fn register_peer(
    State(cell): Cell,
    AppJson(request): AppJson<RegisterPeerRequest>,
) -> Result<Json<RegisterPeerAnswer>, ApiError> {
    let endpoint = request.endpoint;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(ApiError::BadRequest(format!(
            "field `endpoint` must be an http:// URL, got `{endpoint}`"
        )));
    }
    let stored = cell.mesh.register_manual(ManualPeer {
        cell_id: request.cell_id.clone(),
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        identity: request.identity,
        registered_at: now_iso(),
    });
    if !stored {
        return Err(ApiError::Unavailable("the peer list is full".into()));
    }
    Ok(Json(RegisterPeerAnswer {
        status: "registered",
        peer_id: request.cell_id,
        total_peers: cell.mesh.manual_peers().len(),
    }))
}

/// `POST /send_to_peer`: `{"peer_id", "message", "type"?}`; 404 for an
/// unknown peer, 502 when it cannot be reached.
pub(crate) async fn send_to_peer(
    State(cell): Cell,
    AppJson(request): AppJson<SendToPeerRequest>,
) -> Result<Json<SendToPeerAnswer>, ApiError> {
    let Some(peer) = cell.mesh.resolve(&request.peer_id).await else {
        return Err(ApiError::NotFound(format!(
            "peer `{}` is not known",
            request.peer_id
        )));
    };
    // The original alpha sent these three fields only.
    let message = OutgoingMessage {
        from_cell: cell.cell_id().to_owned(),
        content: request.message.0,
        message_type: message_type_or_default(request.message_type),
        priority: None,
        metadata: None,
    };
    let answer = cell.mesh.post_message(&peer.endpoint, &message).await?;
    Ok(Json(SendToPeerAnswer {
        status: "sent",
        peer_id: request.peer_id,
        response: answer.body,
        timestamp: now_iso(),
    }))
}

/// `POST /send`: `{"to_cell", "content", "message_type"?, "priority"?,
/// "metadata"?}`, the receiver found through discovery. The same delivery
/// path as the plugin's `send-message`.
pub(crate) async fn send(
    State(cell): Cell,
    AppJson(request): AppJson<SendRequest>,
) -> Result<Json<SendAnswer>, ApiError> {
    let msg = Message {
        from_cell: cell.cell_id().to_owned(),
        content: request.content.0,
        message_type: message_type_or_default(request.message_type),
        priority: priority_or_default(request.priority),
        metadata: metadata_text(request.metadata.as_ref()),
    };
    match cell.mesh.deliver(&request.to_cell, msg).await {
        Ok(delivery) => Ok(Json(SendAnswer {
            status: "sent",
            to_cell: delivery.to_cell,
            message_id: delivery.message_id,
            timestamp: now_iso(),
        })),
        Err(SendError::UnknownCell(id)) => Err(ApiError::NotFound(format!(
            "discovery does not list a cell `{id}`"
        ))),
        Err(SendError::Unreachable(detail)) => Err(ApiError::BadGateway(detail)),
        Err(SendError::Refused(detail)) => Err(ApiError::BadRequest(detail)),
    }
}

/// `POST /invoke/{capability}` with a JSON body: the capability's JSON
/// answer, whatever shape the plugin gives it; 404 with the known list for
/// an unknown capability, 400 for invalid input, 500 when it fails.
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
    let unknown = |name: String| ApiError::UnknownCapability {
        name,
        known: known.clone(),
    };
    if !known.contains(&capability) {
        return Err(unknown(capability));
    }
    // Any JSON value is an input (the plugin judges it), so no `AppJson`.
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
        Err(CapabilityError::UnknownCapability(name)) => Err(unknown(name)),
        Err(CapabilityError::InvalidInput(detail)) => Err(ApiError::BadRequest(format!(
            "invalid input for `{capability}`: {detail}"
        ))),
        Err(CapabilityError::Failed(detail)) => Err(ApiError::CapabilityFailed(format!(
            "`{capability}`: {detail}"
        ))),
    }
}
