//! The batch calls of a many-cell host: `POST /batch/register`, `POST /batch/heartbeat` and
//! `POST /batch/deregister` (wire types in [`cellmesh_wire::batch`]).
//!
//! Each is the single call, cell by cell, in one request:
//!
//! - the same authority: the bearer token is checked before a byte of the body is read (401),
//!   the admin token acts as on the single calls, and each cell's secret travels in the body
//!   instead of `X-Cell-Secret`;
//! - the same validation per cell ([`crate::validate::batch`]): a bad cell is that cell's 422
//!   (or 413), not a failed batch; a batch that is malformed as a whole (not JSON, no
//!   `host_id`, more than [`BATCH_MAX_CELLS`] cells, an id named twice) is a 422 naming what is
//!   wrong, and a body over [`BATCH_MAX_BYTES`] (the batch calls' own limit; the single calls
//!   keep theirs) a 413;
//! - the same registry state machine, events and counters, with the lock taken once per
//!   [`crate::registry_handle::BATCH_LOCK_CHUNK`] cells instead of once per cell;
//! - each cell's outcome is what the single call would have answered: status code and
//!   `detail`, counted in the refusal metrics as that request would have been.
//!
//! A batch registration puts its cells in the failure domain `host_id`
//! ([`crate::registry::domains`]). Per-cell lines are logged at debug (takeovers at warn, as
//! for the single call); each batch logs one info summary, so a host of 1,000 cells starting
//! is one line, not 1,000.
//!
//! At most [`crate::config::BATCH_BODIES_IN_FLIGHT`] batch bodies are read and handled at once;
//! further batch requests wait for a turn (bounded by the request timeout). A batch is
//! checked and applied on the blocking pool, so single calls are answered meanwhile.

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use cellmesh_wire::batch::{
    BATCH_MAX_BYTES, BatchDeregisterAnswer, BatchHeartbeatAnswer, BatchRegisterAnswer, CellOutcome,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::auth::{check_token, registry_error};
use super::body::read_body_up_to;
use super::track::count_refusal;
use crate::clock::unix_micros_now;
use crate::error::ApiError;
use crate::registry::{Authority, Claim, RegistryError};
use crate::registry_handle::{CellDeparture, CellHeartbeat, CellRegistration};
use crate::state::AppState;
use crate::validate::{self, BatchCell};

#[cfg(doc)]
use cellmesh_wire::batch::BATCH_MAX_CELLS;

/// Index of each call in [`crate::metrics::BATCH_CALLS`].
const REGISTER: usize = 0;
const HEARTBEAT: usize = 1;
const DEREGISTER: usize = 2;

/// The single heartbeat's sentence for an unknown id.
const HEARTBEAT_NOT_FOUND: &str = "Peer ID not registered. Call /register first.";
/// The single deregistration's sentence for an unknown id.
const PEER_NOT_FOUND: &str = "Peer not found";

/// `POST /batch/register`: registers every cell of one host, each as `POST /register` would
/// (its secret, if it renews a live registration, in the cell's `secret`).
pub async fn register(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let admin = check_token(&state, &parts.headers)?;
    let turn = turn(&state).await?;
    let body = read_body_up_to(body, BATCH_MAX_BYTES).await?;
    off_the_worker(&state, turn, move |state| {
        register_cells(state, admin, &body)
    })
    .await
}

fn register_cells(state: &AppState, admin: bool, body: &[u8]) -> Result<Response, ApiError> {
    let batch = validate::batch_registration(body, state.config().registration_max_bytes)?;
    state.inner.metrics.count_batch(REGISTER, batch.cells.len());
    let enforce = state.config().security_on();
    let mut outcomes: Vec<Option<CellOutcome>> = Vec::with_capacity(batch.cells.len());
    let mut valid = Vec::with_capacity(batch.cells.len());
    for (i, cell) in batch.cells.into_iter().enumerate() {
        outcomes.push(None);
        match checked(state, cell) {
            Ok(c) => valid.push((i, c)),
            Err(refusal) => outcomes[i] = Some(refusal),
        }
    }
    let items: Vec<CellRegistration<'_>> = valid
        .iter()
        .map(|(_, c)| CellRegistration {
            info: &c.info,
            secret: rand::random(),
            claim: Claim {
                enforce,
                admin,
                secret: c.secret.as_deref(),
            },
        })
        .collect();
    let results =
        state
            .registry()
            .register_batch(&batch.host_id, &items, Instant::now(), unix_micros_now());
    let (mut registered, mut replaced) = (0usize, 0usize);
    for (((i, cell), item), result) in valid.iter().zip(&items).zip(results) {
        let id = cell.info.cell_id.as_str();
        outcomes[*i] = Some(match result {
            Ok(reg) => {
                if let Some(t) = &reg.takeover {
                    warn!(
                        cell_id = %id,
                        host_id = %batch.host_id,
                        from = %t.from,
                        to = %t.to,
                        incarnation = reg.incarnation,
                        replaced_incarnation = t.replaced_incarnation,
                        "takeover: a live cell id was moved to another address without its secret"
                    );
                }
                debug!(cell_id = %id, host_id = %batch.host_id, incarnation = reg.incarnation,
                       replaced = reg.replaced, ip = %cell.info.ip, port = cell.info.port,
                       "peer registered");
                registered += 1;
                replaced += usize::from(reg.replaced);
                CellOutcome {
                    cell_id: id.to_owned(),
                    status: "registered".to_owned(),
                    incarnation: Some(reg.incarnation),
                    secret: Some(hex::encode(item.secret)),
                    replaced: Some(reg.replaced),
                    code: None,
                    detail: None,
                }
            }
            Err(e) => {
                if let RegistryError::Held { .. } = e {
                    debug!(cell_id = %id, host_id = %batch.host_id,
                           "registration refused: the id is held by a live registration under another secret");
                }
                refused(state, id, registry_error(e, PEER_NOT_FOUND, id))
            }
        });
    }
    let results: Vec<CellOutcome> = outcomes.into_iter().flatten().collect();
    info!(
        host_id = %batch.host_id,
        cells = results.len(),
        registered,
        replaced,
        refused = results.len() - registered,
        "batch registered"
    );
    Ok(Json(BatchRegisterAnswer {
        host_id: batch.host_id,
        ttl_ms: u64::try_from(state.config().ttl.as_millis()).unwrap_or(u64::MAX),
        results,
    })
    .into_response())
}

/// `POST /batch/heartbeat`: renews every named cell of one host, each as `POST /heartbeat`
/// with its incarnation and `X-Cell-Secret` would; every renewed cell gets the same deadline.
pub async fn heartbeat(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let admin = check_token(&state, &parts.headers)?;
    let turn = turn(&state).await?;
    let body = read_body_up_to(body, BATCH_MAX_BYTES).await?;
    off_the_worker(&state, turn, move |state| renew_cells(state, admin, &body)).await
}

fn renew_cells(state: &AppState, admin: bool, body: &[u8]) -> Result<Response, ApiError> {
    let batch = validate::batch_heartbeat(body)?;
    state
        .inner
        .metrics
        .count_batch(HEARTBEAT, batch.cells.len());
    let open = !state.config().security_on();
    let (valid, mut refusals) = split_checked(state, batch.cells);
    let items: Vec<CellHeartbeat<'_>> = valid
        .iter()
        .map(|(_, c)| CellHeartbeat {
            id: &c.cell_id,
            level: c.consciousness_level,
            incarnation: Some(c.incarnation),
            authority: authority(open, admin, &c.secret),
        })
        .collect();
    let (results, peers_count) =
        state
            .registry()
            .heartbeat_batch(&items, Instant::now(), unix_micros_now());
    let mut renewed = 0;
    for ((i, cell), result) in valid.iter().zip(results) {
        match result {
            Ok(_) => renewed += 1,
            Err(e) => {
                debug!(cell_id = %cell.cell_id, host_id = %batch.host_id, error = %e,
                       "heartbeat refused");
                let refusal = registry_error(e, HEARTBEAT_NOT_FOUND, &cell.cell_id);
                refusals.push((*i, refused(state, &cell.cell_id, refusal)));
            }
        }
    }
    refusals.sort_by_key(|(i, _)| *i);
    debug!(host_id = %batch.host_id, renewed, refused = refusals.len(), "batch heartbeat");
    Ok(Json(BatchHeartbeatAnswer {
        status: "ok".to_owned(),
        host_id: batch.host_id,
        renewed,
        peers_count,
        refused: refusals.into_iter().map(|(_, o)| o).collect(),
    })
    .into_response())
}

/// `POST /batch/deregister`: removes every named cell of one host, each as
/// `DELETE /peer/{id}?incarnation=N` with its `X-Cell-Secret` would.
pub async fn deregister(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let admin = check_token(&state, &parts.headers)?;
    let turn = turn(&state).await?;
    let body = read_body_up_to(body, BATCH_MAX_BYTES).await?;
    off_the_worker(&state, turn, move |state| {
        deregister_cells(state, admin, &body)
    })
    .await
}

fn deregister_cells(state: &AppState, admin: bool, body: &[u8]) -> Result<Response, ApiError> {
    let batch = validate::batch_deregistration(body)?;
    state
        .inner
        .metrics
        .count_batch(DEREGISTER, batch.cells.len());
    let open = !state.config().security_on();
    let (valid, mut refusals) = split_checked(state, batch.cells);
    let items: Vec<CellDeparture<'_>> = valid
        .iter()
        .map(|(_, c)| CellDeparture {
            id: &c.cell_id,
            incarnation: Some(c.incarnation),
            authority: authority(open, admin, &c.secret),
        })
        .collect();
    let results = state.registry().deregister_batch(&items, Instant::now());
    let mut deregistered = 0;
    for ((i, cell), result) in valid.iter().zip(results) {
        match result {
            Ok(()) => {
                deregistered += 1;
                debug!(cell_id = %cell.cell_id, host_id = %batch.host_id,
                       reason = "deregistered", "peer evicted");
            }
            Err(e) => {
                let refusal = registry_error(e, PEER_NOT_FOUND, &cell.cell_id);
                refusals.push((*i, refused(state, &cell.cell_id, refusal)));
            }
        }
    }
    refusals.sort_by_key(|(i, _)| *i);
    info!(host_id = %batch.host_id, deregistered, refused = refusals.len(),
          reason = "deregistered", "batch deregistered");
    Ok(Json(BatchDeregisterAnswer {
        status: "deregistered".to_owned(),
        host_id: batch.host_id,
        deregistered,
        refused: refusals.into_iter().map(|(_, o)| o).collect(),
    })
    .into_response())
}

/// Runs `work` (checking a batch and applying it to the registry: milliseconds for 1,000
/// cells) on the blocking pool, in the request's span, so the runtime's worker (one by
/// default) keeps answering single heartbeats meanwhile; the registry lock is still taken
/// per chunk, so they interleave with the batch there too.
///
/// The turn is held until the work is done, even when the request times out meanwhile.
async fn off_the_worker(
    state: &AppState,
    turn: OwnedSemaphorePermit,
    work: impl FnOnce(&AppState) -> Result<Response, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let state = state.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        span.in_scope(|| work(&state))
    })
    .await
    .unwrap_or_else(|e| {
        warn!(error = %e, "a batch call failed");
        Err(ApiError::Unavailable(
            "The batch could not be handled; try again.".into(),
        ))
    })
}

/// Waits for a turn to read and handle a batch body (see the module docs).
async fn turn(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state
        .inner
        .batch_turns
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Unavailable("The server is shutting down.".into()))
}

/// The authority a cell of a batch carries, as [`super::auth::authority`] derives it from a
/// single call's headers.
fn authority(open: bool, admin: bool, secret: &str) -> Authority<'_> {
    if open {
        Authority::Open
    } else if admin {
        Authority::Admin
    } else {
        Authority::Secret(Some(secret))
    }
}

/// Refused cells, each with its position in the request.
type Refusals = Vec<(usize, CellOutcome)>;

/// The cells that passed validation and the refusals (counted) of the others, each with its
/// position in the request.
fn split_checked<T>(state: &AppState, cells: Vec<BatchCell<T>>) -> (Vec<(usize, T)>, Refusals) {
    let mut refusals = Vec::new();
    let mut valid = Vec::with_capacity(cells.len());
    for (i, cell) in cells.into_iter().enumerate() {
        match checked(state, cell) {
            Ok(c) => valid.push((i, c)),
            Err(refusal) => refusals.push((i, refusal)),
        }
    }
    (valid, refusals)
}

/// A cell that passed validation, or its refusal (counted).
fn checked<T>(state: &AppState, cell: BatchCell<T>) -> Result<T, CellOutcome> {
    cell.checked
        .map_err(|e| refused(state, &cell.cell_id, ApiError::from(e)))
}

/// The outcome of a refused cell: the status and detail the single call would have
/// answered, counted as that request's refusal would have been.
fn refused(state: &AppState, cell_id: &str, error: ApiError) -> CellOutcome {
    let status = error.status();
    count_refusal(state, status);
    CellOutcome {
        cell_id: cell_id.to_owned(),
        status: "refused".to_owned(),
        incarnation: None,
        secret: None,
        replaced: None,
        code: Some(status.as_u16()),
        detail: Some(error.detail_text()),
    }
}
