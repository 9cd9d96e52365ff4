//! The batch path of a host's liveness: one scheduler for all the cells,
//! each cell tracked as the single lifecycle tracks it (to register at
//! some instant, registered, given up, failed), its transitions made by
//! the lifecycle's own functions.
//!
//! The scheduler wakes at the earlier of the host's next heartbeat and the
//! earliest registration due. Registrations due together go in one batch
//! (split in chunks); a chunk that fails as a whole, or cells discovery
//! cannot take yet (503, 409), wait one back-off delay drawn for them
//! together, so they stay together in the next batch. A heartbeat renews
//! every registered cell in one batch; the cells discovery forgot (404)
//! are registered again at once, the displaced ones (409, 403) follow the
//! contest rules. The shared mesh view is refreshed once per heartbeat
//! (and after a registration round that registered cells).

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::{Duration, Instant};

use cellmesh_wire::batch::{BatchHeartbeatRequest, BatchRegisterRequest};

use super::chunks::{CONCURRENT_BATCHES, batch_requests, in_parallel};
use super::{LiveCell, refusal_reason};
use crate::cell::CellRuntime;
use crate::contest::Contest;
use crate::discovery_client::{
    BatchRegistration, CellBeat, DiscoveryClient, DiscoveryError, Lease,
};
use crate::lifecycle::{
    self, Displaced, LifecycleSettings, REFUSED_ATTEMPT, address, log_retry, next_beat,
    on_displaced, on_forgotten, on_registered, on_registration_failed,
};

/// Why the batch path ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchEnd {
    /// Every cell's first registration was refused (each slot failed).
    AllRefused,
    /// Discovery has no batch calls (or refused the first batch as a
    /// whole): one request per cell from now on.
    Fallback,
}

/// Where one cell stands with the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Track {
    /// To register (again), not before this instant.
    Due(Instant),
    /// Registered: renewed by every heartbeat.
    Registered,
    /// Displaced too many times in a row: stays unregistered.
    GivenUp,
    /// Discovery refused its first registration: its slot failed.
    Failed,
}

/// One cell and its state.
struct Tracked<'a> {
    live: &'a LiveCell,
    contest: Contest,
    track: Track,
    /// Whether discovery ever accepted it (a refusal then no longer fails
    /// the cell: it is retried at the capped back-off).
    registered_once: bool,
    /// Failed registration tries since the last success.
    attempt: u32,
}

impl Tracked<'_> {
    fn cell(&self) -> &CellRuntime {
        &self.live.cell
    }
}

/// The scheduler of one host's batch liveness.
struct Scheduler<'a> {
    cells: Vec<Tracked<'a>>,
    discovery: &'a DiscoveryClient,
    host_id: &'a str,
    settings: LifecycleSettings,
    rng: StdRng,
    /// Whether discovery answered a batch call (batch calls decided).
    decided: bool,
}

/// A registration round's cells to try again after one shared delay, and
/// the failure to report.
struct Retry {
    cells: Vec<usize>,
    error: String,
}

/// Runs the batch path until every cell was refused or discovery turns out
/// to have no batch calls (cancellation is the caller's).
pub(super) async fn run(
    cells: &[LiveCell],
    discovery: &DiscoveryClient,
    host_id: &str,
    settings: LifecycleSettings,
) -> BatchEnd {
    if !settings.startup_delay.is_zero() {
        tokio::time::sleep(settings.startup_delay).await;
    }
    let start = Instant::now();
    let mut scheduler = Scheduler {
        cells: cells
            .iter()
            .map(|live| Tracked {
                live,
                contest: Contest::new(settings.contest),
                track: Track::Due(start),
                registered_once: false,
                attempt: 0,
            })
            .collect(),
        discovery,
        host_id,
        settings,
        rng: StdRng::from_os_rng(),
        decided: false,
    };
    scheduler.run().await
}

impl Scheduler<'_> {
    async fn run(&mut self) -> BatchEnd {
        let interval = self.settings.heartbeat;
        let mut beat_at: Option<Instant> = None;
        loop {
            self.drop_failed_slots();
            if self.earliest_due().is_some_and(|due| due <= Instant::now()) {
                let registered = match self.register_due().await {
                    Ok(registered) => registered,
                    Err(end) => return end,
                };
                if self.cells.iter().all(|t| t.track == Track::Failed) {
                    tracing::error!(
                        cells = self.cells.len(),
                        "discovery refused the registration of every cell"
                    );
                    return BatchEnd::AllRefused;
                }
                if registered > 0 {
                    self.refresh_view().await;
                }
            }
            if beat_at.is_none() && self.decided {
                // Random initial phase, so hosts started together spread out.
                let phase_ms = self.rng.random_range(0..=interval.as_millis() as u64);
                beat_at = Some(Instant::now() + Duration::from_millis(phase_ms));
            }
            if let Some(due) = beat_at.filter(|due| *due <= Instant::now()) {
                if let Err(end) = self.beat().await {
                    return end;
                }
                self.refresh_view().await;
                beat_at = Some(next_beat(due, interval, Instant::now()));
            }
            let wake = match (beat_at, self.earliest_due()) {
                (Some(beat), Some(due)) => beat.min(due),
                (Some(at), None) | (None, Some(at)) => at,
                // Not reached: undecided, every cell is still due.
                (None, None) => Instant::now() + interval,
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Stops tracking the cells whose slot failed meanwhile (for any
    /// reason): they are neither registered nor renewed any more.
    fn drop_failed_slots(&mut self) {
        for tracked in &mut self.cells {
            if tracked.track != Track::Failed && tracked.live.slot.is_failed() {
                tracked.track = Track::Failed;
            }
        }
    }

    /// The earliest registration due, if any.
    fn earliest_due(&self) -> Option<Instant> {
        self.cells
            .iter()
            .filter_map(|t| match t.track {
                Track::Due(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Refreshes the mesh view all the cells share (through any of them).
    async fn refresh_view(&self) {
        if let Some(first) = self.cells.first() {
            lifecycle::refresh_mesh(first.cell()).await;
        }
    }

    /// Registers every cell due, in batches; answers how many discovery
    /// accepted.
    async fn register_due(&mut self) -> Result<usize, BatchEnd> {
        let now = Instant::now();
        let entries: Vec<(usize, BatchRegistration)> = self
            .cells
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(t.track, Track::Due(at) if at <= now))
            .map(|(index, t)| {
                let cell = t.cell();
                let entry = BatchRegistration {
                    registration: cell.registration(),
                    secret: cell.lease().and_then(|lease| lease.secret),
                };
                (index, entry)
            })
            .collect();
        let (indices, requests) = batch_requests(entries, self.host_id, |host_id, cells| {
            BatchRegisterRequest { host_id, cells }
        });
        let discovery = self.discovery.clone();
        let answers = in_parallel(requests, CONCURRENT_BATCHES, move |request| {
            let discovery = discovery.clone();
            async move { discovery.batch_register(&request).await }
        })
        .await;

        let mut registered = 0;
        let mut held: Vec<(usize, DiscoveryError)> = Vec::new();
        let mut retry = Retry {
            cells: Vec::new(),
            error: String::new(),
        };
        for (indices, answer) in indices.into_iter().zip(answers) {
            let results = match answer {
                Ok(answer) => {
                    self.decided = true;
                    answer.results
                }
                Err(error) => {
                    self.chunk_failed(&indices, error)?;
                    continue;
                }
            };
            for (index, result) in indices.into_iter().zip(results) {
                match result {
                    Ok(lease) => {
                        self.registered(index, lease);
                        registered += 1;
                    }
                    Err(DiscoveryError::Refused { detail, .. })
                        if !self.cells[index].registered_once =>
                    {
                        self.refused(index, &detail);
                    }
                    Err(error @ DiscoveryError::Conflict(_)) => held.push((index, error)),
                    Err(error) => {
                        let tracked = &mut self.cells[index];
                        if matches!(error, DiscoveryError::Refused { .. }) {
                            tracing::error!(cell_id = %tracked.cell().cell_id(), %error, "discovery refuses this cell's registration");
                            tracked.attempt = tracked.attempt.max(REFUSED_ATTEMPT);
                        }
                        on_registration_failed(tracked.cell(), &tracked.contest, &error, None);
                        retry.note(index, &error);
                    }
                }
            }
        }
        if !held.is_empty() {
            let cells: Vec<&CellRuntime> =
                held.iter().map(|(i, _)| self.cells[*i].cell()).collect();
            let holders = holders(self.discovery, &cells).await;
            for ((index, error), holder) in held.into_iter().zip(holders) {
                let tracked = &self.cells[index];
                on_registration_failed(tracked.cell(), &tracked.contest, &error, holder);
                retry.note(index, &error);
            }
        }
        if !retry.cells.is_empty() {
            let what = format!(
                "registration of {} cell(s) with discovery",
                retry.cells.len()
            );
            self.retry_later(&retry.cells, &what, &retry.error);
        }
        if registered > 0 {
            tracing::info!(
                cells = registered,
                host_id = self.host_id,
                discovery = self.discovery.base_url(),
                "registered with discovery (batch)"
            );
        }
        Ok(registered)
    }

    /// A batch registration failed as a whole: decides one request per
    /// cell (no batch calls; refused before batch calls were decided), or
    /// retries its cells later.
    fn chunk_failed(&mut self, indices: &[usize], error: DiscoveryError) -> Result<(), BatchEnd> {
        match &error {
            DiscoveryError::NoBatchCalls { .. } => {
                if self.decided {
                    tracing::info!(%error, "discovery no longer offers batch calls (replaced by the original service?); one request per cell");
                } else {
                    tracing::info!(%error, "discovery does not offer batch calls (the original service?); one request per cell");
                }
                return Err(BatchEnd::Fallback);
            }
            DiscoveryError::Refused { .. } if !self.decided => {
                tracing::warn!(%error, "discovery refuses the batch registration as a whole (batch calls unlike ours?); one request per cell");
                return Err(BatchEnd::Fallback);
            }
            DiscoveryError::Refused { .. } => {
                tracing::error!(%error, cells = indices.len(), "discovery refuses a batch registration as a whole");
                for &index in indices {
                    let tracked = &mut self.cells[index];
                    tracked.attempt = tracked.attempt.max(REFUSED_ATTEMPT);
                }
            }
            _ => {}
        }
        for &index in indices {
            let tracked = &self.cells[index];
            on_registration_failed(tracked.cell(), &tracked.contest, &error, None);
        }
        let what = format!(
            "batch registration of {} cell(s) with discovery",
            indices.len()
        );
        self.retry_later(indices, &what, &error.to_string());
        Ok(())
    }

    /// Discovery accepted cell `index`'s registration.
    fn registered(&mut self, index: usize, lease: Lease) {
        let tracked = &mut self.cells[index];
        tracing::debug!(
            cell_id = %tracked.cell().cell_id(),
            incarnation = ?lease.incarnation,
            "registered with discovery"
        );
        on_registered(&tracked.live.cell, &mut tracked.contest, lease);
        tracked.track = Track::Registered;
        tracked.registered_once = true;
        tracked.attempt = 0;
    }

    /// Discovery refused cell `index`'s first registration itself: its slot
    /// fails.
    fn refused(&mut self, index: usize, detail: &str) {
        let tracked = &mut self.cells[index];
        tracing::error!(cell_id = %tracked.cell().cell_id(), %detail, "discovery refuses this cell's registration");
        tracked.cell().update_registration(|s| s.refused(detail));
        tracked.live.slot.fail(refusal_reason(detail));
        tracked.track = Track::Failed;
    }

    /// Cells `indices` register again after one delay drawn for them
    /// together (the largest of their attempts), so they stay in one batch.
    fn retry_later(&mut self, indices: &[usize], what: &str, error: &str) {
        let policy = self.settings.backoff;
        let attempt = indices
            .iter()
            .map(|&i| self.cells[i].attempt)
            .max()
            .unwrap_or(0);
        let wait = policy.delay(attempt, &mut self.rng);
        log_retry(policy, what, attempt.saturating_add(1), &error, wait);
        let due = Instant::now() + wait;
        for &index in indices {
            let tracked = &mut self.cells[index];
            tracked.attempt = tracked.attempt.saturating_add(1);
            tracked.track = Track::Due(due);
        }
    }

    /// One heartbeat of every registered cell, in batches.
    async fn beat(&mut self) -> Result<(), BatchEnd> {
        let now = Instant::now();
        let mut entries: Vec<(usize, CellBeat)> = Vec::new();
        for (index, tracked) in self.cells.iter_mut().enumerate() {
            if tracked.track != Track::Registered {
                continue;
            }
            let cell = &tracked.live.cell;
            match cell.lease() {
                Some(Lease {
                    incarnation: Some(incarnation),
                    secret: Some(secret),
                    ..
                }) => entries.push((
                    index,
                    CellBeat {
                        cell_id: cell.cell_id().to_owned(),
                        consciousness_level: cell.level(),
                        incarnation,
                        secret,
                    },
                )),
                // A batch beat names a lease: without one, register again.
                _ => tracked.track = Track::Due(now),
            }
        }
        if entries.is_empty() {
            return Ok(());
        }
        let (indices, requests) = batch_requests(entries, self.host_id, |host_id, cells| {
            BatchHeartbeatRequest { host_id, cells }
        });
        let discovery = self.discovery.clone();
        let answers = in_parallel(requests, CONCURRENT_BATCHES, move |request| {
            let discovery = discovery.clone();
            async move { discovery.batch_heartbeat(&request).await }
        })
        .await;

        let mut displaced: Vec<(usize, String)> = Vec::new();
        for (indices, answer) in indices.into_iter().zip(answers) {
            let renewed = match answer {
                Ok(renewed) => renewed,
                Err(error @ DiscoveryError::NoBatchCalls { .. }) => {
                    tracing::info!(%error, "discovery no longer offers batch calls (replaced by the original service?); one request per cell");
                    return Err(BatchEnd::Fallback);
                }
                Err(error) => {
                    tracing::warn!(cells = indices.len(), %error, "batch heartbeat failed");
                    continue;
                }
            };
            let by_id: HashMap<&str, usize> = indices
                .iter()
                .map(|&i| (self.cells[i].live.cell.cell_id(), i))
                .collect();
            let mut refused: HashMap<usize, DiscoveryError> = HashMap::new();
            for refusal in renewed.refused {
                match by_id.get(refusal.cell_id.as_str()) {
                    Some(&index) => {
                        refused.insert(index, refusal.error);
                    }
                    None => {
                        tracing::debug!(cell_id = %refusal.cell_id, "a batch heartbeat refused a cell it was not asked for")
                    }
                }
            }
            for &index in &indices {
                let tracked = &mut self.cells[index];
                let cell = &tracked.live.cell;
                match refused.remove(&index) {
                    None => cell.set_peers_count(renewed.peers_count),
                    Some(DiscoveryError::NotRegistered(detail)) => {
                        on_forgotten(cell, &detail);
                        tracked.track = Track::Due(Instant::now());
                    }
                    Some(DiscoveryError::Conflict(detail) | DiscoveryError::Forbidden(detail)) => {
                        displaced.push((index, detail));
                    }
                    Some(error) => {
                        tracing::warn!(cell_id = %cell.cell_id(), %error, "heartbeat failed");
                    }
                }
            }
        }
        if !displaced.is_empty() {
            let cells: Vec<&CellRuntime> = displaced
                .iter()
                .map(|(i, _)| self.cells[*i].cell())
                .collect();
            let holders = holders(self.discovery, &cells).await;
            for ((index, detail), holder) in displaced.into_iter().zip(holders) {
                let tracked = &mut self.cells[index];
                tracked.track =
                    match on_displaced(&tracked.live.cell, &mut tracked.contest, holder, &detail) {
                        Displaced::RegisterNow => Track::Due(Instant::now()),
                        Displaced::Reclaim(not_before) => Track::Due(not_before),
                        Displaced::GiveUp => Track::GivenUp,
                    };
            }
        }
        Ok(())
    }
}

impl Retry {
    /// Cell `index` is to be tried again, having failed with `error`.
    fn note(&mut self, index: usize, error: &DiscoveryError) {
        if self.cells.is_empty() {
            self.error = error.to_string();
        }
        self.cells.push(index);
    }
}

/// `HOST:PORT` of the registrations now holding the ids of `cells`, when
/// discovery says: one lookup for one cell, one listing for more.
async fn holders(discovery: &DiscoveryClient, cells: &[&CellRuntime]) -> Vec<Option<String>> {
    match cells {
        [] => Vec::new(),
        [cell] => vec![lifecycle::holder(discovery, cell.cell_id()).await],
        _ => {
            let listing = discovery.peers().await.unwrap_or_default();
            let by_id: HashMap<&str, String> = listing
                .iter()
                .map(|p| (p.cell_id.as_str(), address(&p.ip, p.port)))
                .collect();
            cells
                .iter()
                .map(|cell| by_id.get(cell.cell_id()).cloned())
                .collect()
        }
    }
}
