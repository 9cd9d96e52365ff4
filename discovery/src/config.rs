//! Server configuration and its documented defaults.
//!
//! # Memory: bounded by configuration
//!
//! Everything discovery keeps grows with a configured cap, never with what clients send or how
//! slowly they read. At the defaults the worst case is about 1.6 GiB (the reference machine has
//! 24 GiB; for a smaller container lower `--max-connections` first):
//!
//! | what | bound | at the defaults |
//! |---|---|---|
//! | registrations: every record alive, registered or still held by a reader or the watch history ([`crate::registry::Storage`]) | `max_peers` x (`registration_max_bytes` + [`PEER_OVERHEAD_BYTES`]) for the registered ones; 2 x `registry_max_bytes` for all | 10,000 x 17.5 KiB = 171 MiB <= 192 MiB registered (64 MiB with the byte budget); at most 128 MiB of records alive |
//! | watch history: the event texts of the last `watch_history` changes | `watch_history` x (`registration_max_bytes` + 0.5 KiB) | 1,024 x 16.5 KiB = 17 MiB |
//! | connections, each: hyper's read and write buffers, one answer batch, a request body, a pinned view | [`CONNECTION_MAX_BYTES`] at most, plus 8 bytes a peer | 4,096 x (256 KiB + 80 KiB) = 1.3 GiB |
//! | `/peers` answers rendered at once (the shared one included), while cached or still being sent | [`crate::listings::AT_ONCE_BYTES_MAX`] | 32 MiB |
//! | batch bodies (`POST /batch/...`) being read or handled, beyond a connection's own bound | [`BATCH_BODIES_IN_FLIGHT`] x 2 x [`cellmesh_wire::batch::BATCH_MAX_BYTES`] (the body, and at most as much again in checked cells) | 8 x 8 MiB = 64 MiB |
//!
//! No reader holds a listing or snapshot of its own beyond these bounds: `/peers` answers up to
//! 1 MiB are rendered at once and counted until sent (the unfiltered one shared between
//! readers), larger ones and watch snapshots are stitched batch by batch (64 KiB) from the
//! shared view as the client reads ([`crate::http::peers`]); a client that does not read for
//! `write_timeout` is disconnected; connections and watch streams beyond their caps are refused
//! at once with 503 and `Retry-After` instead of waiting.

use std::time::Duration;

/// Default TCP port (the original's `DISCOVERY_PORT`).
pub const DEFAULT_PORT: u16 = 8001;
/// Default name reported as `my_host` and in `/health` (the original's `CELL_ID`).
pub const DEFAULT_MY_HOST: &str = "primary";
/// Default time a peer stays listed after its last heartbeat.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Default share of the population (failure domains) whose expiry within one TTL window holds
/// evictions.
pub const DEFAULT_MASS_EVICTION_SHARE: f64 = 0.5;
/// Default minimum population (failure domains of live peers and of peers expired within the
/// last TTL) for the mass-eviction guard to apply; smaller meshes are never held.
pub const DEFAULT_MASS_EVICTION_MIN_PEERS: usize = 10;
/// Default longest time evictions are held by the mass-eviction guard.
pub const DEFAULT_MASS_EVICTION_HOLD: Duration = Duration::from_secs(15);
/// Default largest accepted request body (the contract's bound, which clients rely on).
pub const DEFAULT_BODY_LIMIT: usize = cellmesh_wire::limits::DISCOVERY_BODY_MAX_BYTES;
/// Default per-registration byte budget: what one registration may cost as stored
/// ([`cellmesh_wire::limits::registration_cost`]); a `/register` body over it is refused with
/// 413, or 422 naming the field when one field is what makes it too big.
pub const DEFAULT_REGISTRATION_MAX_BYTES: usize = cellmesh_wire::limits::REGISTRATION_MAX_BYTES;
/// Default byte budget of the whole registry: what every record alive may cost together
/// (registered ones, and ones that left but are still held by a reader or the watch history).
/// A registration past it is refused with 503 `{"detail"}`, like one past
/// [`DEFAULT_MAX_PEERS`] (507 was not chosen: it is WebDAV's, and clients of the original
/// already retry on 503).
pub const DEFAULT_REGISTRY_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Upper bound of what one peer takes besides its registration's cost: its record, id, map and
/// deadline-index entries, address, view slot and (unshared) shape.
pub const PEER_OVERHEAD_BYTES: usize = 1536;
/// Upper bound of what one connection takes besides the view it may pin (8 bytes a peer):
/// hyper's read buffer and write queue (64 KiB each, see [`crate::server`]), one answer batch
/// (64 KiB plus one peer) and a request body (`body_limit`, 64 KiB).
pub const CONNECTION_MAX_BYTES: usize = 256 * 1024;
/// Default time a connection may go without making progress on a write (a client that does
/// not read its answer) before it is dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for a whole request (headers excluded: see [`DEFAULT_HEADER_TIMEOUT`]).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for a client to send a request's headers (also bounds idle keep-alive).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on simultaneous connections; beyond it a connection is answered 503 with
/// `Retry-After` and closed. Each cell keeps about one keep-alive connection: raise it with
/// `max_peers` (see the module docs for the memory it costs).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Batch bodies (`POST /batch/...`, up to [`cellmesh_wire::batch::BATCH_MAX_BYTES`] each)
/// read and handled at the same time; further batch requests wait for a turn (within the
/// request timeout) before their body is read. Bounds what batches take besides connections:
/// 8 x (4 MiB of body + at most as much again in checked cells) = 64 MiB.
pub const BATCH_BODIES_IN_FLIGHT: usize = 8;
/// Default deadline for draining connections after shutdown is requested.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Default interval between SSE keep-alive comments.
pub const DEFAULT_WATCH_KEEPALIVE: Duration = Duration::from_secs(15);
/// Default number of past watch events kept for `Last-Event-ID` resumption.
pub const DEFAULT_WATCH_HISTORY: usize = 1024;
/// Default cap on simultaneous watch streams.
pub const DEFAULT_MAX_WATCHERS: usize = 1024;
/// Default cap on registered peers: 10,000 x (16 KiB + 1.5 KiB) = 171 MiB <= 192 MiB in the
/// worst case even without the registry's byte budget (see the module docs). Larger meshes
/// raise it with `--max-peers` (and `--max-connections`); the module docs give the cost.
pub const DEFAULT_MAX_PEERS: usize = 10_000;
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
    /// TTL window (0.0..=1.0; 1.0 disables the guard). Counted in failure domains (see
    /// [`crate::registry::domains`]): a batch-registered host and its cells are one, any other
    /// peer is one.
    pub mass_eviction_share: f64,
    /// The guard only applies when at least this many failure domains are (or were within one
    /// TTL) listed.
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
    /// Most one registration may cost as stored, in bytes
    /// ([`cellmesh_wire::limits::registration_cost`]; 413 or 422 beyond).
    pub registration_max_bytes: usize,
    /// Most every record alive may cost together, in bytes (503 for registrations beyond).
    pub registry_max_bytes: usize,
    /// A connection whose writes make no progress for this long is dropped.
    pub write_timeout: Duration,
    /// Deadline for handling one request (408 beyond).
    pub request_timeout: Duration,
    /// Deadline for receiving a request's headers; also closes idle keep-alive connections.
    pub header_timeout: Duration,
    /// Cap on simultaneous connections; further connections get 503 with `Retry-After`.
    pub max_connections: usize,
    /// Deadline for draining open connections on shutdown.
    pub drain_timeout: Duration,
    /// Interval between keep-alive comments on watch streams.
    pub watch_keepalive: Duration,
    /// Number of past events kept for `Last-Event-ID` resumption.
    pub watch_history: usize,
    /// Cap on simultaneous watch streams (503 with `Retry-After` beyond).
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
            registration_max_bytes: DEFAULT_REGISTRATION_MAX_BYTES,
            registry_max_bytes: DEFAULT_REGISTRY_MAX_BYTES,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
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
