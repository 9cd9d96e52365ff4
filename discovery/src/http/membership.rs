//! The calls that change membership: `POST /register`, `POST /heartbeat` (the hot path),
//! `DELETE /peer/{id}` and `DELETE /unregister/{id}`.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cellmesh_wire::{DeregisterAnswer, RegisterAnswer};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::auth::{authority, claim, registry_error};
use super::body::read_body;
use super::json::json_response;
use super::query::{incarnation, path_id};
use crate::clock::unix_micros_now;
use crate::error::ApiError;
use crate::registry::{SECRET_LEN, push_u64};
use crate::state::AppState;
use crate::validate;

/// `POST /register`.
///
/// The bearer token is checked before a byte of the body is read. With security on, a live
/// registration is only replaced by its own `X-Cell-Secret` or the admin token (409
/// otherwise); in the open mode a takeover is allowed but logged at warn (see
/// [`crate::registry::lease`]).
pub async fn register(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let claim = claim(&state, &parts.headers)?;
    let body = read_body(body, &state).await?;
    let info = validate::registration(&body, state.config().registration_max_bytes)?;
    let secret: [u8; SECRET_LEN] = rand::random();
    let now = Instant::now();
    let result = state
        .registry()
        .register(&info, secret, claim, now, unix_micros_now());
    let reg = result.map_err(|e| {
        if let crate::registry::RegistryError::Held { .. } = e {
            // Counted in `discovery_takeovers_refused_total`; debug, so that refusals cannot
            // flood the log.
            debug!(cell_id = %info.cell_id, ip = %info.ip, port = info.port,
                  "registration refused: the id is held by a live registration under another secret");
        }
        registry_error(e, "Peer not found", &info.cell_id)
    })?;
    if let Some(t) = &reg.takeover {
        warn!(
            cell_id = %info.cell_id,
            from = %t.from,
            to = %t.to,
            incarnation = reg.incarnation,
            replaced_incarnation = t.replaced_incarnation,
            "takeover: a live cell id was moved to another address without its secret"
        );
    }
    info!(
        cell_id = %info.cell_id,
        incarnation = reg.incarnation,
        replaced = reg.replaced,
        ip = %info.ip,
        port = info.port,
        "peer registered"
    );
    let answer = RegisterAnswer {
        status: "registered".to_owned(),
        cell_id: info.cell_id,
        incarnation: Some(reg.incarnation),
        secret: Some(hex::encode(secret)),
        replaced: Some(reg.replaced),
        ttl_ms: Some(state.config().ttl.as_millis() as u64),
    };
    Ok(Json(answer).into_response())
}

/// `POST /heartbeat`.
pub async fn heartbeat(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    // Takes the whole request to borrow its headers instead of cloning them (hot path).
    let (parts, body) = req.into_parts();
    let auth = authority(&state, &parts.headers)?;
    let body = read_body(body, &state).await?;
    let hb = validate::heartbeat(&body)?;
    let now = Instant::now();
    let result = state.registry().heartbeat(
        &hb.cell_id,
        hb.consciousness_level,
        hb.incarnation,
        auth,
        now,
        unix_micros_now(),
    );
    let ack = result.map_err(|e| {
        debug!(cell_id = %hb.cell_id, error = %e, "heartbeat refused");
        registry_error(
            e,
            "Peer ID not registered. Call /register first.",
            &hb.cell_id,
        )
    })?;
    let mut out = Vec::with_capacity(96 + hb.cell_id.len());
    out.extend_from_slice(b"{\"status\":\"ok\",\"cell_id\":\"");
    out.extend_from_slice(hb.cell_id.as_bytes()); // validated: no characters needing escapes
    out.extend_from_slice(b"\",\"peers_count\":");
    push_u64(&mut out, ack.peers_count as u64);
    out.extend_from_slice(b",\"incarnation\":");
    push_u64(&mut out, ack.incarnation);
    out.push(b'}');
    Ok(json_response(StatusCode::OK, out))
}

async fn do_deregister(
    state: &AppState,
    id: &str,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let auth = authority(state, headers)?;
    let inc = incarnation(uri, headers)?;
    let result = state.registry().deregister(id, inc, auth, Instant::now());
    result.map_err(|e| registry_error(e, "Peer not found", id))?;
    info!(cell_id = %id, reason = "deregistered", "peer evicted");
    Ok(())
}

/// `DELETE /peer/{cell_id}`.
pub async fn deregister(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    do_deregister(&state, &id, &uri, &headers).await?;
    Ok(Json(DeregisterAnswer {
        status: "deregistered".to_owned(),
        cell_id: Some(id),
    })
    .into_response())
}

/// `DELETE /unregister/{cell_id}`.
pub async fn unregister(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    do_deregister(&state, &id, &uri, &headers).await?;
    Ok(Json(DeregisterAnswer {
        status: "unregistered".to_owned(),
        cell_id: Some(id),
    })
    .into_response())
}
