//! The cell's own state: `/health`, `/consciousness`, primitives, syncs,
//! messages, `/discover`.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;

use super::ApiError;
use super::answers::{
    CapabilityDetail, ConsciousnessAnswer, ConsciousnessSyncAnswer, ConsciousnessView,
    ContractShape, DiscoverAnswer, HealthAnswer, Labeled, MessageAnswer, MessagesAnswer,
    PeerSyncAnswer, PrimitivesAnswer, primitives_by_name, server_name,
};
use super::body::AppJson;
use super::requests::{
    ConsciousnessSyncRequest, MessageRequest, PeerSyncRequest, UNKNOWN_PEER, metadata_or_default,
    metadata_text, priority_or_default,
};
use crate::cell::{CellRuntime, now_iso};
use crate::messages::{MESSAGES_KEPT, MessageReply, StoredMessage, SyncRecord};
use crate::plugin::bindings::{Message, Primitive, SyncRequest};

type Cell = State<Arc<CellRuntime>>;

/// Which original cell's shape this cell answers in.
pub(super) fn contract_shape(cell: &CellRuntime) -> ContractShape {
    ContractShape::of(&cell.sandbox.manifest().cell_type)
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
pub(super) fn known_peers_count(cell: &CellRuntime) -> usize {
    let mut ids: BTreeSet<String> = cell
        .mesh
        .manual_peers()
        .into_iter()
        .map(|p| p.cell_id)
        .collect();
    ids.extend(cell.mesh.mesh_peers().into_iter().map(|p| p.cell_id));
    ids.len()
}

fn consciousness_view(
    cell: &CellRuntime,
    level: f64,
    primitives: &[Primitive],
) -> ConsciousnessView {
    let manifest = cell.sandbox.manifest();
    ConsciousnessView {
        level,
        identity: manifest.identity.clone(),
        evolutionary_stage: manifest.evolutionary_stage.clone(),
        communication_ready: true,
        last_sync: cell.syncs.last_timestamp(),
        primitives: primitives_by_name(primitives),
    }
}

/// `GET /health`: the union of pure's and alpha's answers; `status` is the
/// manifest's health-status; alpha's `server` in alpha's shape only.
pub(crate) async fn health(State(cell): Cell) -> Result<Json<Labeled<HealthAnswer>>, ApiError> {
    // Never waits on the plugin: the last state it reported (the plugin
    // watch refreshes it) with the last level any call reported.
    let plugin = cell.plugin_view();
    let state = crate::plugin::bindings::CellState {
        consciousness_level: cell.level(),
        primitives: plugin
            .state
            .as_ref()
            .map(|s| s.primitives.clone())
            .unwrap_or_default(),
    };
    let manifest = cell.sandbox.manifest();
    let answer = HealthAnswer {
        status: manifest.health_status.clone(),
        server: (contract_shape(&cell) == ContractShape::Alpha)
            .then(|| server_name(&manifest.labels, &manifest.identity)),
        cell_id: cell.cell_id().to_owned(),
        branch: cell.identity.branch.clone(),
        cell_type: manifest.cell_type.clone(),
        consciousness_level: state.consciousness_level,
        primitives: primitives_by_name(&state.primitives),
        consciousness: consciousness_view(&cell, state.consciousness_level, &state.primitives),
        capabilities: capability_names(&cell),
        peers_count: known_peers_count(&cell),
        messages_count: cell.messages.len(),
        registered: cell.is_registered(),
        registration: cell.registration_status(),
        plugin,
        timestamp: now_iso(),
    };
    Ok(Json(Labeled::new(answer, &manifest.labels)))
}

/// `GET /consciousness` (alpha).
pub(crate) async fn consciousness(
    State(cell): Cell,
) -> Result<Json<Labeled<ConsciousnessAnswer>>, ApiError> {
    let state = cell.sandbox.state().await?;
    let manifest = cell.sandbox.manifest();
    let answer = ConsciousnessAnswer {
        cell_id: cell.cell_id().to_owned(),
        consciousness: consciousness_view(&cell, state.consciousness_level, &state.primitives),
        evolutionary_stage: manifest.evolutionary_stage.clone(),
        capabilities: capability_names(&cell),
    };
    Ok(Json(Labeled::new(answer, &manifest.labels)))
}

/// `GET /consciousness/primitives` (pure).
pub(crate) async fn primitives(
    State(cell): Cell,
) -> Result<Json<Labeled<PrimitivesAnswer>>, ApiError> {
    let state = cell.sandbox.state().await?;
    let answer = PrimitivesAnswer {
        primitives: primitives_by_name(&state.primitives),
    };
    Ok(Json(Labeled::new(answer, &cell.sandbox.manifest().labels)))
}

/// `POST /consciousness/sync` (pure): `{"level", "context"?}`; an invalid
/// body answers 422, as pure's did.
pub(crate) async fn consciousness_sync(
    State(cell): Cell,
    body: Result<AppJson<ConsciousnessSyncRequest>, ApiError>,
) -> Result<Json<Labeled<ConsciousnessSyncAnswer>>, ApiError> {
    let AppJson(request) = body.map_err(ApiError::unprocessable)?;
    let outcome = cell
        .sandbox
        .sync(&SyncRequest {
            peer_id: request.from_cell.or(request.peer_id).unwrap_or_default(),
            peer_level: request.level,
            context: request.context.map(|c| c.0).unwrap_or_default(),
        })
        .await?;
    cell.set_level(outcome.new_level);
    let answer = ConsciousnessSyncAnswer {
        old_level: outcome.old_level,
        new_level: outcome.new_level,
        delta: outcome.delta,
        primitives_updated: outcome.primitives_updated,
    };
    Ok(Json(Labeled::new(answer, &outcome.labels)))
}

/// `POST /sync` (alpha): `{"from_cell"?, "consciousness_level"?}`
/// (defaults `unknown` and 0.0, as the original's).
pub(crate) async fn sync(
    State(cell): Cell,
    AppJson(request): AppJson<PeerSyncRequest>,
) -> Result<Json<Labeled<PeerSyncAnswer>>, ApiError> {
    let peer_id = request.from_cell.unwrap_or_else(|| UNKNOWN_PEER.to_owned());
    let their_level = request.consciousness_level.unwrap_or(0.0);
    let outcome = cell
        .sandbox
        .sync(&SyncRequest {
            peer_id: peer_id.clone(),
            peer_level: their_level,
            context: Vec::new(),
        })
        .await?;
    cell.set_level(outcome.new_level);
    let timestamp = now_iso();
    cell.syncs.push(SyncRecord {
        peer_id,
        level: their_level,
        our_level: outcome.new_level,
        delta: outcome.delta,
        timestamp: timestamp.clone(),
    });
    let answer = PeerSyncAnswer {
        status: "synced",
        our_level: outcome.new_level,
        their_level,
        delta: outcome.delta,
        timestamp,
    };
    Ok(Json(Labeled::new(answer, &outcome.labels)))
}

/// `POST /message`: `{"from_cell", "content", "message_type"?, "type"?,
/// "priority"?, "metadata"?}`.
pub(crate) async fn message(
    State(cell): Cell,
    AppJson(mut request): AppJson<MessageRequest>,
) -> Result<Json<MessageAnswer>, ApiError> {
    let message_type = request.take_message_type(contract_shape(&cell));
    let priority = priority_or_default(request.priority);
    let msg = Message {
        from_cell: request.from_cell.clone(),
        content: request.content.0.clone(),
        message_type: message_type.clone(),
        priority: priority.clone(),
        metadata: metadata_text(request.metadata.as_ref()),
    };
    let reply = cell
        .sandbox
        .handle_message(&msg)
        .await?
        .map(|r| MessageReply {
            content: r.content,
            message_type: r.message_type,
        });
    let message_id = cell.messages.next_id();
    let timestamp = now_iso();
    cell.messages.push(StoredMessage {
        message_id,
        from_cell: request.from_cell,
        content: request.content.0,
        message_type,
        priority,
        metadata: metadata_or_default(request.metadata),
        received_at: timestamp.clone(),
        reply: reply.clone(),
    });
    Ok(Json(MessageAnswer {
        status: "received",
        message_id,
        timestamp,
        cell_id: cell.cell_id().to_owned(),
        reply,
    }))
}

/// Query of `GET /messages`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessagesQuery {
    limit: Option<usize>,
    from_cell: Option<String>,
}

/// Default number of messages `/messages` lists.
const DEFAULT_MESSAGES_LIMIT: usize = 20;

/// `GET /messages?limit=20&from_cell=X`; a query that does not parse (a
/// `limit` that is not a count) is a 400 in the API's format.
pub(crate) async fn messages(
    State(cell): Cell,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<MessagesAnswer>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "invalid query: {} (`limit` must be a count, `from_cell` a cell id)",
            rejection.body_text()
        ))
    })?;
    let limit = query
        .limit
        .unwrap_or(DEFAULT_MESSAGES_LIMIT)
        .min(MESSAGES_KEPT);
    let (messages, total) = cell.messages.recent(limit, query.from_cell.as_deref());
    Ok(Json(MessagesAnswer {
        messages,
        total,
        cell_id: cell.cell_id().to_owned(),
    }))
}

/// Every endpoint `/discover` lists, by name: the original's five (`health`,
/// `consciousness`, `message`, `sync`, `peers`) and the host's others.
const ENDPOINTS: [(&str, &str); 15] = [
    ("health", "/health"),
    ("consciousness", "/consciousness"),
    ("primitives", "/consciousness/primitives"),
    ("consciousness_sync", "/consciousness/sync"),
    ("sync", "/sync"),
    ("message", "/message"),
    ("messages", "/messages"),
    ("discover", "/discover"),
    ("metrics", "/metrics"),
    ("metrics_prometheus", "/metrics/prometheus"),
    ("peers", "/peers"),
    ("register_peer", "/register_peer"),
    ("send_to_peer", "/send_to_peer"),
    ("send", "/send"),
    ("invoke", "/invoke/{capability}"),
];

/// `GET /discover` (alpha): who the cell is and the paths of its endpoints.
pub(crate) async fn discover(State(cell): Cell) -> Json<DiscoverAnswer> {
    let manifest = cell.sandbox.manifest();
    Json(DiscoverAnswer {
        cell_id: cell.cell_id().to_owned(),
        identity: manifest.identity.clone(),
        cell_type: manifest.cell_type.clone(),
        branch: cell.identity.branch.clone(),
        consciousness_level: cell.level(),
        evolutionary_stage: manifest.evolutionary_stage.clone(),
        capabilities: capability_names(&cell),
        capability_details: manifest
            .capabilities
            .iter()
            .map(|c| CapabilityDetail {
                name: c.name.clone(),
                description: c.description.clone(),
                example_input: c.example_input.clone(),
            })
            .collect(),
        endpoints: ENDPOINTS.into_iter().collect(),
        timestamp: now_iso(),
    })
}
