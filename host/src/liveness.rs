//! Liveness of a many-cell host: every cell of the host registered,
//! renewed and deregistered with discovery, at the cost of one batch
//! request per heartbeat interval for the whole host (`POST /batch/*`, see
//! `cellmesh_wire::batch`), and one refresh of the mesh view the cells
//! share.
//!
//! Each cell keeps the single lifecycle's rules ([`crate::lifecycle`]):
//! the same standing and texts on `/health` (the transitions are the
//! lifecycle's own functions), the contest rules of [`crate::contest`]
//! when another registration takes an id (a heartbeat's 409 or 403), a
//! new registration when discovery forgets a cell (404), back-off with full
//! jitter when discovery cannot take a registration (unreachable, 5xx, 429,
//! a full registry), a random initial heartbeat phase (one for the host).
//! Discovery refusing a cell's first registration itself (400, 413, 422)
//! marks that cell's slot failed ([`CellSlot::fail`]); the other cells run
//! on. [`run_liveness`] ends by itself only when every cell was refused.
//!
//! **One request per cell instead** ([`lifecycle::run_lifecycle`] per
//! cell, the shared view refreshed once per interval) with
//! [`BatchMode::Off`], or when discovery has no batch calls. The rule is
//! decided by discovery's answers, never re-probed:
//! - the first batch registration answered 200 decides batch calls;
//! - answered 404 or 405 (the original service: `{"detail":"Not Found"}`),
//!   or refused as a whole (400, 413, 422: a discovery whose batch calls
//!   are not ours), decides one request per cell, logged once;
//! - no answer (unreachable), 5xx, 429 or 401 decide nothing: the batch
//!   registration is retried with back-off;
//! - once batch calls are decided, a batch call answered 404 or 405
//!   (discovery replaced by one without them) switches to one request per
//!   cell for the rest of the process. A discovery upgraded meanwhile is
//!   used per cell until the host restarts.
//!
//! [`deregister_all`] removes every registered cell at shutdown, in
//! batches (or per cell), bounded by one timeout overall.

mod batch;
mod chunks;
mod deregister;

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cell::CellRuntime;
use crate::discovery_client::DiscoveryClient;
use crate::fleet::CellSlot;
use crate::lifecycle::{self, LifecycleEnd, LifecycleSettings};

pub use deregister::deregister_all;

/// One running cell of the host, as its liveness sees it: the slot (marked
/// failed when discovery refuses the cell) and the cell.
#[derive(Debug, Clone)]
pub struct LiveCell {
    /// The cell's slot in the host.
    pub slot: Arc<CellSlot>,
    /// The running cell.
    pub cell: Arc<CellRuntime>,
}

/// Whether the host uses discovery's batch calls (`--batch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchMode {
    /// Batch calls when discovery offers them, else one request per cell.
    #[default]
    Auto,
    /// One request per cell, always.
    Off,
}

/// Why [`run_liveness`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessEnd {
    /// Cancelled by shutdown.
    Cancelled,
    /// Discovery refused the first registration of every cell (each slot
    /// is marked failed with discovery's reason).
    AllRefused,
}

/// What a refused cell's slot says.
fn refusal_reason(detail: &str) -> String {
    format!("discovery refused the registration: {detail}")
}

/// Registers every cell of `cells` with `discovery` as host `host_id`, then
/// keeps them registered until `cancel` (see the module docs); cells whose
/// slot already failed are left out. With no cell to keep, waits for
/// `cancel`.
pub async fn run_liveness(
    cells: Vec<LiveCell>,
    discovery: DiscoveryClient,
    host_id: String,
    settings: LifecycleSettings,
    batch: BatchMode,
    cancel: CancellationToken,
) -> LivenessEnd {
    let cells: Vec<LiveCell> = cells
        .into_iter()
        .filter(|live| !live.slot.is_failed())
        .collect();
    if cells.is_empty() {
        cancel.cancelled().await;
        return LivenessEnd::Cancelled;
    }
    if batch == BatchMode::Off {
        tracing::info!(
            cells = cells.len(),
            "batch calls off (--batch off); one request per cell"
        );
        return per_cell(&cells, settings, &cancel).await;
    }
    let ended = tokio::select! {
        ended = batch::run(&cells, &discovery, &host_id, settings) => ended,
        () = cancel.cancelled() => return LivenessEnd::Cancelled,
    };
    match ended {
        batch::BatchEnd::AllRefused => LivenessEnd::AllRefused,
        batch::BatchEnd::Fallback => {
            // The batch path already waited the start-up delay.
            let settings = LifecycleSettings {
                startup_delay: std::time::Duration::ZERO,
                ..settings
            };
            per_cell(&cells, settings, &cancel).await
        }
    }
}

/// One lifecycle per cell (one request per cell), the shared mesh view
/// refreshed once per interval for all of them, until `cancel` or until
/// every cell was refused.
async fn per_cell(
    cells: &[LiveCell],
    settings: LifecycleSettings,
    cancel: &CancellationToken,
) -> LivenessEnd {
    let mut lifecycles = JoinSet::new();
    for (index, live) in cells.iter().enumerate() {
        let (cell, cancel) = (live.cell.clone(), cancel.clone());
        lifecycles.spawn(async move {
            let end = lifecycle::run_lifecycle_sharing_view(cell, settings, cancel).await;
            (index, end)
        });
    }
    let ends = async {
        let mut refused = 0;
        while let Some(joined) = lifecycles.join_next().await {
            match joined {
                Ok((index, LifecycleEnd::Refused(detail))) => {
                    let live = &cells[index];
                    live.cell.update_registration(|s| s.refused(&detail));
                    live.slot.fail(refusal_reason(&detail));
                    refused += 1;
                }
                Ok((_, LifecycleEnd::Cancelled)) => {}
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(error) => tracing::warn!(%error, "a cell's lifecycle task was cancelled"),
            }
        }
        refused
    };
    tokio::select! {
        refused = ends => if refused == cells.len() {
            LivenessEnd::AllRefused
        } else {
            LivenessEnd::Cancelled
        },
        () = refresh_view_every(&cells[0].cell, settings.heartbeat) => LivenessEnd::Cancelled,
    }
}

/// Refreshes the mesh view every cell of the host shares, through `cell`
/// (any of them), now and every `interval`; never ends.
async fn refresh_view_every(cell: &CellRuntime, interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval.max(std::time::Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        lifecycle::refresh_mesh(cell).await;
    }
}
