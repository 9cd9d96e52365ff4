//! Server configuration and its documented defaults.

use std::time::Duration;

/// Default TCP port (the original's `DISCOVERY_PORT`).
pub const DEFAULT_PORT: u16 = 8001;
/// Default name reported as `my_host` and in `/health` (the original's `CELL_ID`).
pub const DEFAULT_MY_HOST: &str = "primary";
/// Default time a peer stays listed after its last heartbeat.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Default share of peers whose expiry within one TTL window holds evictions.
pub const DEFAULT_MASS_EVICTION_SHARE: f64 = 0.5;
/// Default minimum population (live peers plus peers expired within the last TTL) for the
/// mass-eviction guard to apply; smaller meshes are never held.
pub const DEFAULT_MASS_EVICTION_MIN_PEERS: usize = 10;
/// Default longest time evictions are held by the mass-eviction guard.
pub const DEFAULT_MASS_EVICTION_HOLD: Duration = Duration::from_secs(15);
/// Default largest accepted request body (the contract's bound, which clients rely on).
pub const DEFAULT_BODY_LIMIT: usize = cellmesh_wire::limits::DISCOVERY_BODY_MAX_BYTES;
/// Default deadline for a whole request (headers excluded: see [`DEFAULT_HEADER_TIMEOUT`]).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for a client to send a request's headers (also bounds idle keep-alive).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default deadline for draining connections after shutdown is requested.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default interval between SSE keep-alive comments.
pub const DEFAULT_WATCH_KEEPALIVE: Duration = Duration::from_secs(15);
/// Default number of past watch events kept for `Last-Event-ID` resumption.
pub const DEFAULT_WATCH_HISTORY: usize = 1024;
/// Default cap on simultaneous watch streams.
pub const DEFAULT_MAX_WATCHERS: usize = 1024;
/// Default cap on registered peers.
pub const DEFAULT_MAX_PEERS: usize = 1_000_000;
/// Default runtime worker threads of the binary (`--worker-threads`; 0 = one per core).
///
/// One: a request is a few microseconds of work, so on the 2-core reference machine a second
/// worker cost about 30 % of heartbeat throughput in cross-thread wake-ups (see `BENCHMARKS.md`).
pub const DEFAULT_WORKER_THREADS: usize = 1;

/// Server configuration; [`Default`] gives the documented defaults (TTL 15 s, etc.).
#[derive(Debug, Clone)]
pub struct Config {
    /// A peer expires at its last heartbeat (or registration) plus this.
    pub ttl: Duration,
    /// Name reported as `my_host` in `/peers` and as `cell_id` in `/health` and `/metrics`.
    pub my_host: String,
    /// After start, nothing is evicted and `/readyz` answers 503 for this long (default: one TTL).
    pub startup_grace: Duration,
    /// Evictions are held when more than this share of the population would expire within one
    /// TTL window (0.0..=1.0; 1.0 disables the guard).
    pub mass_eviction_share: f64,
    /// The guard only applies when at least this many peers are (or were within one TTL) listed.
    pub mass_eviction_min_peers: usize,
    /// A hold ends by itself after this long, then the still-silent peers are evicted.
    pub mass_eviction_hold: Duration,
    /// Shared token that register, heartbeat and deregister must present as
    /// `Authorization: Bearer <token>`; `None` leaves them open (the original behaviour).
    pub token: Option<String>,
    /// Admin token: accepted wherever the shared token is, and may heartbeat or deregister any
    /// cell without its per-cell secret.
    pub admin_token: Option<String>,
    /// Largest accepted request body in bytes (413 beyond).
    pub body_limit: usize,
    /// Deadline for handling one request (408 beyond).
    pub request_timeout: Duration,
    /// Deadline for receiving a request's headers; also closes idle keep-alive connections.
    pub header_timeout: Duration,
    /// Cap on simultaneous connections; further connections wait in the listen backlog.
    pub max_connections: usize,
    /// Deadline for draining open connections on shutdown.
    pub drain_timeout: Duration,
    /// Interval between keep-alive comments on watch streams.
    pub watch_keepalive: Duration,
    /// Number of past events kept for `Last-Event-ID` resumption.
    pub watch_history: usize,
    /// Cap on simultaneous watch streams (503 beyond).
    pub max_watchers: usize,
    /// Cap on registered peers (503 for new ids beyond).
    pub max_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            my_host: DEFAULT_MY_HOST.to_owned(),
            startup_grace: DEFAULT_TTL,
            mass_eviction_share: DEFAULT_MASS_EVICTION_SHARE,
            mass_eviction_min_peers: DEFAULT_MASS_EVICTION_MIN_PEERS,
            mass_eviction_hold: DEFAULT_MASS_EVICTION_HOLD,
            token: None,
            admin_token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            watch_keepalive: DEFAULT_WATCH_KEEPALIVE,
            watch_history: DEFAULT_WATCH_HISTORY,
            max_watchers: DEFAULT_MAX_WATCHERS,
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

impl Config {
    /// Whether per-cell secrets are enforced (a shared or an admin token is configured).
    pub fn security_on(&self) -> bool {
        self.token.is_some() || self.admin_token.is_some()
    }
}
