//! The cellmesh discovery server: cells register, heartbeat and leave; silent cells are reaped.
//!
//! It speaks the original Python service's JSON contract unchanged (described in
//! `docs/contract.md`; header names, limits and body types live in the `cellmesh-wire` crate)
//! and adds liveness on a monotonic clock, leases, a watch stream, security and a dashboard.
//!
//! # Modules
//!
//! - [`config`]: [`Config`] and its documented defaults.
//! - [`validate`]: body and query validation with FastAPI/pydantic-shaped 422 errors.
//! - [`registry`]: the [`PeerRegistry`] state machine (time passed in explicitly).
//! - [`registry_handle`]: [`Registry`], the shared handle: the state machine behind its lock
//!   plus the reaper's wake-up; its methods lock, call, unlock and wake the reaper.
//! - [`reaper`]: the expiry task over a [`Registry`] (one task sleeping until the earliest
//!   deadline).
//! - [`state`]: [`AppState`], what the handlers share (config, registry, metrics, shutdown).
//! - [`listings`]: the `/peers` answers rendered once and shared between readers, counted.
//! - [`http`]: handlers and the router ([`app`]), including the SSE stream ([`http::watch`]);
//!   [`dashboard`]: the HTML page; [`metrics`]: Prometheus text.
//! - [`server`]: the accept loop ([`serve`]); [`error`]: [`Error`] and HTTP errors.
//! - [`clock`]: ISO-8601 wall-clock strings for the wire.
//!
//! # HTTP API
//!
//! The original calls, unchanged:
//!
//! | call | answer |
//! |---|---|
//! | `POST /register` CellInfo | `{"status":"registered","cell_id"}` + additions below |
//! | `GET /peers` | `{"peers":[..],"count","my_host"}`; every peer has `last_seen` |
//! | `POST /heartbeat` `{"cell_id","consciousness_level"?}` | `{"status":"ok","cell_id","peers_count"}`; 404 `{"detail":"Peer ID not registered. Call /register first."}` |
//! | `DELETE /peer/{id}` | `{"status":"deregistered","cell_id"}`; 404 `{"detail":"Peer not found"}` |
//! | `DELETE /unregister/{id}` | `{"status":"unregistered"}`; 404 as above |
//! | `GET /health` | `{"status":"healthy","cell_id","branch","consciousness_level","services","type","hostname"}` + additions below |
//! | `GET /metrics` | Prometheus text incl. `aios_cell_peers_count{cell_id="primary"} N` |
//!
//! Validation errors are 422 in pydantic's shape:
//! `{"detail":[{"type":"missing","loc":["body","cell_id"],"msg":"cell_id: Field required","input":..}]}`
//! (`msg` is pydantic's sentence prefixed with the field's path). Malformed JSON is a 422
//! `json_invalid`. Other errors are `{"detail":"sentence"}` (401, 403, 404, 405, 408, 409, 413, 503).
//!
//! # Additions (new fields and calls; nothing removed or renamed)
//!
//! - Register answer: `incarnation` (lease id: `max(wall-clock µs, previous + 1)`, so unique
//!   and increasing, also across restarts; see [`registry::lease`]), `secret` (32 hex digits,
//!   always issued, enforced only when a token is configured), `replaced` (bool: an earlier
//!   incarnation was replaced), `ttl_ms`.
//! - `/health` adds `service`, `my_host`, `peers_count`, `revision`, `ready`,
//!   `uptime_seconds`, `timestamp`, `version`; discovery describes itself as a cell like the
//!   original (`branch` "main", `consciousness_level` 0.0, `services` `["discovery"]`, `type`
//!   "discovery", `hostname` this machine's).
//! - Heartbeat body: optional `incarnation`; answer adds `incarnation`.
//! - Deregister (`/peer/{id}`, `/unregister/{id}`): optional `?incarnation=N` or header
//!   `X-Cell-Incarnation`; `/unregister` answer adds `cell_id`.
//!   A heartbeat or deregistration naming another incarnation than the current one gets 409
//!   and changes nothing; one that names none keeps the original behaviour.
//! - Security: with a shared token, register/heartbeat/deregister need
//!   `Authorization: Bearer <token>` (401 otherwise; checked before the body is read, compared
//!   as SHA-256 digests in constant time); with a shared or admin token, heartbeat and
//!   deregister also need the cell's `X-Cell-Secret` (403 otherwise) unless the bearer is the
//!   admin token, and a registration of a *live* id (deadline not passed) must present that
//!   registration's `X-Cell-Secret` or the admin token: otherwise 409 `{"detail"}` (the id is
//!   held under another secret) until the lease expires. Reads (`/peers`, `/health`, ...) stay
//!   open.
//! - Open mode (no token; for trusted networks only): re-registering replaces, as in the
//!   original, but a *takeover* (a live id moved to another `ip:port` by a registration
//!   without its `X-Cell-Secret`) is logged at warn (`cell_id`, `from`, `to`), counted
//!   (`discovery_takeovers_total`), published as a `takeover` watch event and shown on the
//!   dashboard.
//! - Peers carry `incarnation` and `age_ms` (milliseconds since the last heartbeat, at answer
//!   time). `/peers` also carries `revision`, a weak `ETag` (`W/"BOOT-REVISION"`) and
//!   `X-Registry-Revision`; `If-None-Match` gives 304. The revision moves with membership and
//!   level changes only.
//! - Batch calls of a many-cell host (types in [`cellmesh_wire::batch`]; see [`http::batch`]):
//!   `POST /batch/register`, `POST /batch/heartbeat`, `POST /batch/deregister`, each the
//!   single call for up to 1,000 cells of one `host_id` in one request (body up to 4 MiB,
//!   the single calls keep their limit): the same token rules (per-cell secrets in the body),
//!   each cell's outcome with the code and detail the single call would have answered, one
//!   watch event per cell. The cells a batch registers form one failure domain (below).
//! - `GET /peers` filters: `service`, `type`, `branch`, `min_level` (AND). `GET /peers/{id}`.
//! - `GET /peers/watch`: SSE, see [`http::watch`]; a `takeover` event
//!   `{"revision","type":"takeover","cell_id","from","to","incarnation","replaced_incarnation"}`
//!   follows the `leave` and `join` of a takeover. `GET /readyz`: 503 during the start-up grace
//!   window.
//! - `GET /`: the dashboard.
//!
//! # Liveness
//!
//! A peer expires at its last heartbeat + TTL on the monotonic clock; the reaper sleeps until
//! the earliest deadline. After start, nothing is evicted for `startup_grace` (default one
//! TTL). The mass-eviction guard counts *failure domains*: the cells a batch registered for one
//! host are one domain, a peer registered by the single call is its own (so without batch calls
//! it counts peers, as before). If more than `mass_eviction_share` of the population (the
//! domains of live peers and of peers expired within the last TTL, when at least
//! `mass_eviction_min_peers`) would have lost a peer to expiry within one TTL, evictions are
//! held for at most `mass_eviction_hold`; then peers still silent are evicted.
//! The hold ends early once that share is back under the threshold (checked every TTL/10,
//! 50 ms to 1 s): peers still silent then get one more TTL. See [`registry::guard`].

pub mod clock;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod http;
pub mod listings;
pub mod metrics;
pub mod reaper;
pub mod registry;
pub mod registry_handle;
pub mod server;
pub mod state;
pub mod validate;

pub use config::Config;
pub use error::{ApiError, Error};
pub use http::app;
pub use registry::PeerRegistry;
pub use registry_handle::Registry;
pub use server::{serve, serve_with_state};
pub use state::AppState;
