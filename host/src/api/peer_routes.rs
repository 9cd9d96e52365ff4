//! Talking to other cells: `/peers`, `/register_peer`, `/send_to_peer`
//! (alpha's hand-kept list, in the original's shapes), `/send` (through
//! discovery only), and `/invoke/{capability}`.
//!
//! Hand-kept peers are reached only by `/send_to_peer`, listed ones only by
//! `/send` and `send-message`: a `/register_peer` entry never shadows an id
//! discovery lists. `/send_to_peer` answers the peer's status, never its
//! body, and no redirect is followed (see [`crate::egress`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cellmesh_wire::limits::{CELL_ID_MAX_LEN, TEXT_MAX_LEN};
use serde_json::{Value, json};

use super::ApiError;
use super::answers::{
    HandKeptEntry, MeshPeerEntry, PeersAnswer, RegisterPeerAnswer, SendAnswer, SendToPeerAnswer,
    SendToPeerFailure,
};
use super::body::AppJson;
use super::requests::{
    RegisterPeerRequest, SendRequest, SendToPeerRequest, message_type_or_default, metadata_text,
    priority_or_default,
};
use crate::cell::{CellRuntime, now_iso};
use crate::egress::{self, EgressError};
use crate::mesh::{FORWARDED_MESSAGE_TYPE, ForwardedMessage, HandKeptError, ManualPeer, PeerError};
use crate::plugin::PluginError;
use crate::plugin::bindings::{CapabilityError, Message, SendError};

type Cell = State<Arc<CellRuntime>>;

/// `GET /peers`: the hand-kept peers keyed by id (the original's), and
/// the mesh as discovery last listed it (`mesh`, ours).
pub(crate) async fn peers(State(cell): Cell) -> Json<PeersAnswer> {
    let peers: BTreeMap<String, HandKeptEntry> = cell
        .mesh
        .manual_peers()
        .into_iter()
        .map(|peer| {
            let entry = HandKeptEntry {
                endpoint: peer.endpoint,
                identity: peer.identity,
                registered_at: peer.registered_at,
                last_contact: peer.last_contact,
            };
            (peer.cell_id, entry)
        })
        .collect();
    let mesh: BTreeMap<String, MeshPeerEntry> = cell
        .mesh
        .mesh_peers()
        .into_iter()
        .map(|peer| {
            let endpoint = egress::listed_peer_url(&peer.cell_id, &peer.ip, peer.port)
                .ok()
                .map(|url| url.as_str().trim_end_matches('/').to_owned());
            let entry = MeshPeerEntry {
                endpoint,
                ip: peer.ip,
                port: peer.port,
                consciousness_level: peer.consciousness_level,
                services: peer.services,
                branch: peer.branch,
                cell_type: peer.cell_type,
                hostname: peer.hostname,
                last_seen: peer.last_seen,
            };
            (peer.cell_id, entry)
        })
        .collect();
    Json(PeersAnswer {
        count: peers.len(),
        peers,
        cell_id: cell.cell_id().to_owned(),
        mesh_count: mesh.len(),
        mesh,
    })
}

/// The answer to `/register_peer` on a cell started with
/// `--no-register-peer` (403).
fn register_peer_disabled() -> Response {
    let message = "POST /register_peer is turned off on this cell (--no-register-peer); \
                   it sends only to the cells discovery lists";
    let body = json!({"error": message, "detail": message, "kind": "register_peer_disabled"});
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

/// `POST /register_peer`: `{"cell_id", "endpoint", "identity"?}`; the
/// endpoint must be a plain `http://` URL, and an IP literal must be one
/// the peer policy allows (a name is checked when it is resolved).
pub(crate) async fn register_peer(
    State(cell): Cell,
    request: Result<AppJson<RegisterPeerRequest>, ApiError>,
) -> Result<Response, ApiError> {
    if !cell.mesh.register_peer_enabled() {
        return Ok(register_peer_disabled());
    }
    let AppJson(request) = request?;
    if request.cell_id.is_empty() || request.cell_id.len() > CELL_ID_MAX_LEN {
        return Err(ApiError::BadRequest(format!(
            "field `cell_id` must be 1 to {CELL_ID_MAX_LEN} bytes"
        )));
    }
    if request
        .identity
        .as_ref()
        .is_some_and(|i| i.chars().count() > TEXT_MAX_LEN)
    {
        return Err(ApiError::BadRequest(format!(
            "field `identity` must be at most {TEXT_MAX_LEN} characters"
        )));
    }
    let url = egress::endpoint_url(&request.endpoint).map_err(bad_endpoint)?;
    cell.mesh
        .peer_client()
        .check_literal(&url)
        .map_err(bad_endpoint)?;
    let identity = request
        .identity
        .unwrap_or_else(|| format!("Cell {}", request.cell_id));
    let timestamp = now_iso();
    let stored = cell.mesh.register_manual(ManualPeer {
        cell_id: request.cell_id.clone(),
        endpoint: request.endpoint.trim_end_matches('/').to_owned(),
        url,
        identity,
        registered_at: timestamp.clone(),
        last_contact: None,
    });
    if !stored {
        return Err(ApiError::Unavailable("the peer list is full".into()));
    }
    Ok(Json(RegisterPeerAnswer {
        status: "registered",
        peer_id: request.cell_id,
        timestamp,
        total_peers: cell.mesh.manual_peers().len(),
    })
    .into_response())
}

fn bad_endpoint(error: EgressError) -> ApiError {
    ApiError::BadRequest(format!("field `endpoint` refused: {error}"))
}

/// `POST /send_to_peer`: `{"peer_id", "message", "type"?}` to a hand-kept
/// peer: the peer's status (200), 404 for an id not registered by hand, 502
/// `{"status": "failed", ...}` when it cannot be reached.
pub(crate) async fn send_to_peer(
    State(cell): Cell,
    AppJson(request): AppJson<SendToPeerRequest>,
) -> Result<Response, ApiError> {
    let message = ForwardedMessage {
        from_cell: cell.cell_id().to_owned(),
        content: request.message,
        message_type: request
            .message_type
            .unwrap_or_else(|| FORWARDED_MESSAGE_TYPE.to_owned()),
        metadata: json!({"original_sender": cell.sandbox.manifest().identity}),
    };
    match cell
        .mesh
        .send_to_hand_kept(&request.peer_id, &message, now_iso)
        .await
    {
        Ok(status) => Ok(Json(SendToPeerAnswer {
            status: "sent",
            peer_id: request.peer_id,
            response_status: status.as_u16(),
            timestamp: now_iso(),
        })
        .into_response()),
        Err(HandKeptError::NotRegistered) => {
            Err(ApiError::NotFound(HandKeptError::NotRegistered.to_string()))
        }
        Err(HandKeptError::Peer(error)) => {
            tracing::warn!(peer_id = %request.peer_id, %error, "send_to_peer failed");
            let kind = match error {
                PeerError::Egress(_) => "peer_refused",
                _ => "peer_unreachable",
            };
            let error = error.to_string();
            let body = SendToPeerFailure {
                status: "failed",
                peer_id: request.peer_id,
                detail: error.clone(),
                error,
                kind,
            };
            Ok((StatusCode::BAD_GATEWAY, Json(body)).into_response())
        }
    }
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
