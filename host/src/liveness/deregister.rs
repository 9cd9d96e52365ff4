//! Deregistering every cell of a host at shutdown: in batches when the
//! host uses them, else (and for leases a batch cannot name) one request
//! per cell, a few dozen at a time; bounded by one timeout overall.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cellmesh_wire::batch::BatchDeregisterRequest;

use super::LiveCell;
use super::chunks::{CONCURRENT_BATCHES, batch_requests, in_parallel};
use crate::cell::CellRuntime;
use crate::discovery_client::{CellLeave, DiscoveryClient, DiscoveryError, Lease};

/// Single deregistrations in flight at once, when not batched.
pub(crate) const CONCURRENT_SINGLE_CALLS: usize = 64;

/// Deregisters every registered cell of `cells` from `discovery`, within
/// `timeout` overall, and logs how many it removed. With `batch`, cells
/// whose lease names an incarnation and a secret go in batches
/// (`POST /batch/deregister`, chunked, a few at a time); the others, and
/// all of them when `batch` is false or discovery has no batch calls, one
/// request per cell (64 at a time). A cell discovery no longer knows (404)
/// counts as removed. Each removed cell's lease is cleared.
pub async fn deregister_all(
    cells: &[LiveCell],
    discovery: &DiscoveryClient,
    host_id: &str,
    batch: bool,
    timeout: Duration,
) {
    let registered: Vec<Arc<CellRuntime>> = cells
        .iter()
        .filter(|live| live.cell.is_registered())
        .map(|live| live.cell.clone())
        .collect();
    let total = registered.len();
    if total == 0 {
        tracing::info!("no cell is registered; nothing to deregister");
        return;
    }
    let work = deregister(registered, discovery, host_id, batch);
    if tokio::time::timeout(timeout, work).await.is_err() {
        tracing::warn!(
            timeout_ms = timeout.as_millis() as u64,
            "deregistration timed out"
        );
    }
    let left = cells
        .iter()
        .filter(|live| live.cell.is_registered())
        .count();
    if left == 0 {
        tracing::info!(cells = total, "deregistered from discovery");
    } else {
        tracing::warn!(
            deregistered = total - left,
            left,
            "{left} of {total} cells are still registered with discovery (they expire at its TTL)"
        );
    }
}

async fn deregister(
    cells: Vec<Arc<CellRuntime>>,
    discovery: &DiscoveryClient,
    host_id: &str,
    batch: bool,
) {
    let mut batched: Vec<(Arc<CellRuntime>, CellLeave)> = Vec::new();
    let mut single: Vec<Arc<CellRuntime>> = Vec::new();
    for cell in cells {
        match cell.lease() {
            Some(Lease {
                incarnation: Some(incarnation),
                secret: Some(secret),
                ..
            }) if batch => {
                let leave = CellLeave {
                    cell_id: cell.cell_id().to_owned(),
                    incarnation,
                    secret,
                };
                batched.push((cell, leave));
            }
            _ => single.push(cell),
        }
    }
    if !batched.is_empty() {
        single.extend(in_batches(batched, discovery, host_id).await);
    }
    if !single.is_empty() {
        one_by_one(single, discovery).await;
    }
}

/// Deregisters `cells` in batches; answers the cells to deregister one by
/// one (discovery has no batch calls).
async fn in_batches(
    cells: Vec<(Arc<CellRuntime>, CellLeave)>,
    discovery: &DiscoveryClient,
    host_id: &str,
) -> Vec<Arc<CellRuntime>> {
    let (chunks, requests) = batch_requests(cells, host_id, |host_id, cells| {
        BatchDeregisterRequest { host_id, cells }
    });
    let client = discovery.clone();
    let answers = in_parallel(requests, CONCURRENT_BATCHES, move |request| {
        let discovery = client.clone();
        async move { discovery.batch_deregister(&request).await }
    })
    .await;
    let mut left = Vec::new();
    for (cells, answer) in chunks.into_iter().zip(answers) {
        match answer {
            Ok(answer) => {
                let refused: HashMap<String, DiscoveryError> = answer
                    .refused
                    .into_iter()
                    .map(|r| (r.cell_id, r.error))
                    .collect();
                for cell in cells {
                    match refused.get(cell.cell_id()) {
                        None | Some(DiscoveryError::NotRegistered(_)) => cell.set_lease(None),
                        Some(error) => {
                            tracing::warn!(cell_id = %cell.cell_id(), %error, "deregistration failed")
                        }
                    }
                }
            }
            Err(DiscoveryError::NoBatchCalls { .. }) => left.extend(cells),
            Err(error) => {
                tracing::warn!(cells = cells.len(), %error, "batch deregistration failed")
            }
        }
    }
    left
}

/// Deregisters `cells` one request each, a few dozen at a time.
async fn one_by_one(cells: Vec<Arc<CellRuntime>>, discovery: &DiscoveryClient) {
    let client = discovery.clone();
    in_parallel(cells, CONCURRENT_SINGLE_CALLS, move |cell| {
        let discovery = client.clone();
        async move {
            let Some(lease) = cell.lease() else { return };
            match discovery.deregister(cell.cell_id(), &lease).await {
                Ok(()) | Err(DiscoveryError::NotRegistered(_)) => {
                    cell.set_lease(None);
                    tracing::debug!(cell_id = %cell.cell_id(), "deregistered from discovery");
                }
                Err(error) => {
                    tracing::warn!(cell_id = %cell.cell_id(), %error, "deregistration failed")
                }
            }
        }
    })
    .await;
}
