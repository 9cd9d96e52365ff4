//! `GET /cells` and `GET /cells/{cell_id}`: one JSON entry per cell of the
//! host, built in one pass over the slots from what each cell keeps (no
//! plugin call, no discovery call), so 10,000 cells list in milliseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::{AdminError, AdminHost};
use crate::fleet::{CellSlot, SlotState};
use crate::status::{PluginStatus, RegistrationState};

/// The query of `GET /cells`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CellsQuery {
    /// `running` or `failed`: only the cells in that state.
    state: Option<String>,
}

/// Whether a cell runs: its `state` on `/cells`, and what `?state=` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum RunState {
    Running,
    Failed,
}

impl RunState {
    /// The value of `?state=`.
    fn parse(value: &str) -> Result<Self, AdminError> {
        match value {
            "running" => Ok(Self::Running),
            "failed" => Ok(Self::Failed),
            other => Err(AdminError::BadRequest(format!(
                "unknown cell state `{other}` in ?state=: expected `running` or `failed`"
            ))),
        }
    }
}

/// One cell as `/cells` shows it. The figures of a running cell
/// (`registration` to `resets`) are `null` for a failed one.
#[derive(Debug, Serialize)]
pub(super) struct CellEntry {
    /// Position in the host's list of cells (0-based).
    index: usize,
    /// The cell id (a failed cell's may be its spec's name, `cell #3`).
    cell_id: String,
    /// `host:port` peers are given, once bound.
    address: Option<String>,
    /// The plugin file.
    plugin: String,
    /// SHA-256 of the plugin file (hex), when it could be read.
    digest: Option<String>,
    /// `running` or `failed`.
    state: RunState,
    /// Why the cell failed (failed cells only).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Standing with discovery: `registering`, `registered`, `contested`,
    /// `given_up`.
    registration: Option<RegistrationState>,
    /// The lease id discovery issued, when registered.
    incarnation: Option<u64>,
    /// Whether the plugin answers: `ok`, `busy`, `failing`.
    plugin_status: Option<PluginStatus>,
    /// Plugin calls made.
    calls: Option<u64>,
    /// Plugin calls that failed.
    failures: Option<u64>,
    /// Replacements of the plugin's instance (each lost its state).
    resets: Option<u64>,
}

impl CellEntry {
    fn of(slot: &CellSlot) -> Self {
        let mut entry = CellEntry {
            index: slot.index,
            cell_id: slot.name.clone(),
            address: slot.address.clone(),
            plugin: slot.plugin.display().to_string(),
            digest: slot.digest.clone(),
            state: RunState::Failed,
            reason: None,
            registration: None,
            incarnation: None,
            plugin_status: None,
            calls: None,
            failures: None,
            resets: None,
        };
        match slot.state() {
            SlotState::Failed(reason) => entry.reason = Some(reason),
            SlotState::Running(cell) => {
                let registration = cell.registration_status();
                let stats = cell.sandbox.stats();
                let load = |counter: &AtomicU64| Some(counter.load(Ordering::Relaxed));
                entry.cell_id = cell.cell_id().to_owned();
                entry.state = RunState::Running;
                entry.registration = Some(registration.status);
                entry.incarnation = registration.incarnation;
                entry.plugin_status = Some(cell.plugin.view().status);
                entry.calls = load(&stats.calls);
                entry.failures = load(&stats.failures);
                entry.resets = Some(stats.resets().total());
            }
        }
        entry
    }

    fn is_registered(&self) -> bool {
        self.registration == Some(RegistrationState::Registered)
    }
}

/// How many cells run, failed, and are registered: the whole host's,
/// whatever `?state=` kept.
#[derive(Debug, Default, Serialize)]
pub(super) struct Counts {
    running: usize,
    failed: usize,
    registered: usize,
}

/// The answer of `GET /cells`.
#[derive(Debug, Serialize)]
pub(super) struct CellsAnswer {
    host_id: String,
    cells: Vec<CellEntry>,
    counts: Counts,
}

/// Every cell's entry, those `filter` keeps, and the host's counts, in one
/// pass.
fn list_cells(host: &AdminHost, filter: Option<RunState>) -> CellsAnswer {
    let mut counts = Counts::default();
    let mut cells = Vec::with_capacity(host.slots.len());
    for slot in &host.slots {
        let entry = CellEntry::of(slot);
        match entry.state {
            RunState::Running => counts.running += 1,
            RunState::Failed => counts.failed += 1,
        }
        counts.registered += usize::from(entry.is_registered());
        if filter.is_none_or(|state| state == entry.state) {
            cells.push(entry);
        }
    }
    CellsAnswer {
        host_id: host.host_id.clone(),
        cells,
        counts,
    }
}

/// `GET /cells[?state=running|failed]`.
pub(super) async fn list(
    State(host): State<Arc<AdminHost>>,
    query: Result<Query<CellsQuery>, QueryRejection>,
) -> Result<Json<CellsAnswer>, AdminError> {
    let Query(query) = query.map_err(|rejection| {
        AdminError::BadRequest(format!(
            "{} (GET /cells takes only ?state=running|failed)",
            rejection.body_text()
        ))
    })?;
    let filter = query.state.as_deref().map(RunState::parse).transpose()?;
    Ok(Json(list_cells(&host, filter)))
}

/// `GET /cells/{cell_id}`: the cell's entry.
pub(super) async fn one(
    State(host): State<Arc<AdminHost>>,
    cell_id: Result<Path<String>, PathRejection>,
) -> Result<Json<CellEntry>, AdminError> {
    let Path(cell_id) =
        cell_id.map_err(|rejection| AdminError::BadRequest(rejection.body_text()))?;
    host.slots
        .iter()
        .find(|slot| match slot.runtime() {
            Some(cell) => cell.cell_id() == cell_id,
            None => slot.name == cell_id,
        })
        .map(|slot| Json(CellEntry::of(slot)))
        .ok_or_else(|| {
            AdminError::NotFound(format!(
                "no cell `{cell_id}` on this host (GET /cells lists them)"
            ))
        })
}
