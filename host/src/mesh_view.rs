//! [`MeshView`]: the peers discovery last listed, kept with as little load
//! on discovery as the answers allow.
//!
//! - Refreshes are conditional: the `ETag` of the last listing goes back as
//!   `If-None-Match`, and a 304 keeps the view (our discovery tags its
//!   listings; the original service does not, and then each refresh is a
//!   whole listing).
//! - The lifecycle refreshes once per heartbeat ([`MeshView::refresh`]).
//! - Lookups of ids the view does not hold ([`MeshView::refresh_for_miss`])
//!   refresh at most once per [`ViewPolicy::miss_interval`] (1 s), all
//!   together; when discovery sends no `ETag`, no more than once per
//!   [`ViewPolicy::untagged_interval`] (the heartbeat interval) counting the
//!   lifecycle's refreshes too. Concurrent misses wait for one refresh and
//!   share it.

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::discovery_client::{DiscoveryClient, DiscoveryError, Listing, PeerInfo};

/// How often lookups of unknown ids may refresh the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewPolicy {
    /// Least time between two refreshes caused by misses, when discovery
    /// tags its listings.
    pub miss_interval: Duration,
    /// Least time between two refreshes caused by misses, when it does not
    /// (each refresh is then a whole listing).
    pub untagged_interval: Duration,
}

impl ViewPolicy {
    /// Default least time between refreshes caused by misses.
    pub const DEFAULT_MISS_INTERVAL: Duration = Duration::from_secs(1);
    /// Default least time between miss refreshes without tags: the default
    /// heartbeat interval (the host sets it to its own interval).
    pub const DEFAULT_UNTAGGED_INTERVAL: Duration = Duration::from_secs(5);
}

impl Default for ViewPolicy {
    /// One refresh per second for misses; one per 5 s (the default
    /// heartbeat) without tags.
    fn default() -> Self {
        Self {
            miss_interval: Self::DEFAULT_MISS_INTERVAL,
            untagged_interval: Self::DEFAULT_UNTAGGED_INTERVAL,
        }
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    peers: Vec<PeerInfo>,
    refreshed: Option<Instant>,
    etag: Option<String>,
}

/// The cached listing, its tag, and the gate misses go through.
#[derive(Debug, Default)]
pub struct MeshView {
    snapshot: RwLock<Snapshot>,
    policy: Mutex<ViewPolicy>,
    /// Held while a miss refreshes; holds when misses last tried.
    misses: tokio::sync::Mutex<Option<Instant>>,
}

impl MeshView {
    /// Sets how often misses may refresh.
    pub fn set_policy(&self, policy: ViewPolicy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Refreshes the view with a (conditional) `GET /peers`, leaving out
    /// `self_id`; answers how many peers it holds.
    pub async fn refresh(
        &self,
        discovery: &DiscoveryClient,
        self_id: &str,
    ) -> Result<usize, DiscoveryError> {
        let etag = self.read().etag.clone();
        let listing = discovery.peers_if_changed(etag.as_deref()).await?;
        let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
        snapshot.refreshed = Some(Instant::now());
        if let Listing::Changed { peers, etag } = listing {
            snapshot.peers = peers.into_iter().filter(|p| p.cell_id != self_id).collect();
            snapshot.etag = etag;
        }
        Ok(snapshot.peers.len())
    }

    /// After a lookup missed: refreshes unless a miss tried within the
    /// policy's interval (or, without tags, the view was refreshed within
    /// it); concurrent misses share one refresh. Answers whether it asked
    /// discovery.
    pub async fn refresh_for_miss(
        &self,
        discovery: &DiscoveryClient,
        self_id: &str,
    ) -> Result<bool, DiscoveryError> {
        let mut last_try = self.misses.lock().await;
        let policy = *self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let (refreshed, tagged) = {
            let snapshot = self.read();
            (snapshot.refreshed, snapshot.etag.is_some())
        };
        let interval = if tagged {
            policy.miss_interval
        } else {
            policy.miss_interval.max(policy.untagged_interval)
        };
        let recent = |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < interval);
        // With tags a refresh is a 304 when nothing changed: only misses
        // count. Without, every refresh is a whole listing: all count.
        if recent(*last_try) || (!tagged && recent(refreshed)) {
            return Ok(false);
        }
        *last_try = Some(Instant::now());
        self.refresh(discovery, self_id).await.map(|_| true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The peers discovery last listed.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.read().peers.clone()
    }

    /// The listed peer `cell_id`.
    pub fn find(&self, cell_id: &str) -> Option<PeerInfo> {
        self.read()
            .peers
            .iter()
            .find(|p| p.cell_id == cell_id)
            .cloned()
    }

    /// How long ago the view was refreshed.
    pub fn age(&self) -> Option<Duration> {
        self.read().refreshed.map(|t| t.elapsed())
    }
}
