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
//! - One view may serve every cell of a host ([`crate::mesh::Mesh::with_view`]):
//!   it holds the whole listing, and each cell leaves itself out when it
//!   reads. Then [`ViewPolicy::refresh_interval`] makes the refreshes of
//!   all the cells one per interval: concurrent ones share one request,
//!   later ones within the interval keep the view.

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
    /// Least time between two refreshes of any kind ([`MeshView::refresh`]
    /// keeps a view younger than this); zero: every refresh asks discovery
    /// (a host of one cell). A host of many cells sets it so that one view
    /// refreshed by every cell's lifecycle costs one request per interval.
    pub refresh_interval: Duration,
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
    /// heartbeat) without tags; no bound on the others.
    fn default() -> Self {
        Self {
            miss_interval: Self::DEFAULT_MISS_INTERVAL,
            untagged_interval: Self::DEFAULT_UNTAGGED_INTERVAL,
            refresh_interval: Duration::ZERO,
        }
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    peers: Vec<PeerInfo>,
    refreshed: Option<Instant>,
    etag: Option<String>,
}

/// The cached listing (every peer discovery lists: readers leave
/// themselves out), its tag, and the gates refreshes go through.
#[derive(Debug, Default)]
pub struct MeshView {
    snapshot: RwLock<Snapshot>,
    policy: Mutex<ViewPolicy>,
    /// Held while a miss refreshes; holds when misses last tried.
    misses: tokio::sync::Mutex<Option<Instant>>,
    /// Held while a refresh bounded by [`ViewPolicy::refresh_interval`]
    /// runs, so that concurrent ones share it.
    refreshing: tokio::sync::Mutex<()>,
}

impl MeshView {
    /// Sets how often misses may refresh.
    pub fn set_policy(&self, policy: ViewPolicy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn policy(&self) -> ViewPolicy {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes the view with a (conditional) `GET /peers`; answers how
    /// many peers it holds other than `self_id`. With a
    /// [`ViewPolicy::refresh_interval`], a view younger than that is kept
    /// and concurrent calls share one request.
    pub async fn refresh(
        &self,
        discovery: &DiscoveryClient,
        self_id: &str,
    ) -> Result<usize, DiscoveryError> {
        let interval = self.policy().refresh_interval;
        if interval.is_zero() {
            return self.fetch(discovery, self_id).await;
        }
        let _one_at_a_time = self.refreshing.lock().await;
        if self.age().is_some_and(|age| age < interval) {
            return Ok(self.count_except(self_id));
        }
        self.fetch(discovery, self_id).await
    }

    /// Asks discovery now.
    async fn fetch(
        &self,
        discovery: &DiscoveryClient,
        self_id: &str,
    ) -> Result<usize, DiscoveryError> {
        let etag = self.read().etag.clone();
        let listing = discovery.peers_if_changed(etag.as_deref()).await?;
        {
            let mut snapshot = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            snapshot.refreshed = Some(Instant::now());
            if let Listing::Changed { peers, etag } = listing {
                snapshot.peers = peers;
                snapshot.etag = etag;
            }
        }
        Ok(self.count_except(self_id))
    }

    /// Peers held other than `self_id`.
    fn count_except(&self, self_id: &str) -> usize {
        let snapshot = self.read();
        let listed = snapshot.peers.iter().any(|p| p.cell_id == self_id);
        snapshot.peers.len() - usize::from(listed)
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
        let policy = self.policy();
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
        self.fetch(discovery, self_id).await.map(|_| true)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The peers discovery last listed (every one).
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.read().peers.clone()
    }

    /// The peers discovery last listed, but `self_id`.
    pub fn peers_except(&self, self_id: &str) -> Vec<PeerInfo> {
        self.read()
            .peers
            .iter()
            .filter(|p| p.cell_id != self_id)
            .cloned()
            .collect()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::get;

    use super::*;
    use crate::discovery_client::http_client;

    /// A discovery answering `GET /peers` with cells `a` and `b`, counting
    /// the requests.
    async fn discovery() -> (DiscoveryClient, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let app = Router::new().route(
            "/peers",
            get(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    axum::Json(serde_json::json!({
                        "peers": [
                            {"cell_id": "a", "ip": "127.0.0.1", "port": 1},
                            {"cell_id": "b", "ip": "127.0.0.1", "port": 2}
                        ],
                        "count": 2,
                        "my_host": "test"
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = DiscoveryClient::new(
            http_client(Duration::from_secs(5)),
            &format!("http://{addr}"),
        );
        (client, asked)
    }

    /// Guards the many-cell host: one view serves every cell (each leaves
    /// itself out), and a refresh interval makes the refreshes of all the
    /// cells one request, however many ask at once.
    #[tokio::test]
    async fn a_shared_view_leaves_each_reader_out_and_refreshes_once_per_interval() {
        let (discovery, asked) = discovery().await;
        let view = Arc::new(MeshView::default());
        view.set_policy(ViewPolicy {
            refresh_interval: Duration::from_secs(3600),
            ..ViewPolicy::default()
        });
        let refreshes = (0..20).map(|i| {
            let (view, discovery) = (view.clone(), discovery.clone());
            let me = if i % 2 == 0 { "a" } else { "c" };
            tokio::spawn(async move { view.refresh(&discovery, me).await.unwrap() })
        });
        let mut counts = Vec::new();
        for refresh in refreshes {
            counts.push(refresh.await.unwrap());
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one request for all");
        assert!(
            counts
                .iter()
                .enumerate()
                .all(|(i, &n)| n == if i % 2 == 0 { 1 } else { 2 })
        );
        let ids = |peers: Vec<PeerInfo>| peers.into_iter().map(|p| p.cell_id).collect::<Vec<_>>();
        assert_eq!(ids(view.peers_except("a")), vec!["b"]);
        assert_eq!(ids(view.peers_except("c")), vec!["a", "b"]);
        assert_eq!(ids(view.peers()), vec!["a", "b"]);

        // Without an interval (a host of one cell) every refresh asks.
        let view = MeshView::default();
        view.refresh(&discovery, "a").await.unwrap();
        view.refresh(&discovery, "a").await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }
}
