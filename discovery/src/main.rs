//! The `discovery` binary: parses flags (each with an environment variable), starts tracing,
//! binds the listener and runs [`discovery::serve`] until Ctrl-C or SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use discovery::config::{self, Config};
use tracing_subscriber::EnvFilter;

/// The cellmesh discovery server.
///
/// Speaks the original discovery JSON contract unchanged (POST /register, GET /peers,
/// POST /heartbeat, DELETE /peer/{id}, DELETE /unregister/{id}, GET /health, GET /metrics) and
/// adds: GET /peers filters (service, type, branch, min_level) with a weak ETag, GET
/// /peers/{id}, GET /peers/watch (Server-Sent Events: join, update, leave, snapshot; resumable
/// with Last-Event-ID), GET /readyz, and a dashboard at /.
///
/// Added JSON fields: register answers carry `incarnation` (lease id), `secret` (per-cell
/// secret), `replaced` and `ttl_ms`; heartbeats may send `incarnation`; deregistrations may send
/// `?incarnation=N` or `X-Cell-Incarnation`; a stale incarnation gets 409. Peers carry
/// `incarnation` and `age_ms`. With --token, register/heartbeat/deregister need
/// `Authorization: Bearer TOKEN`; with --token or --admin-token, heartbeat/deregister also need
/// the cell's `X-Cell-Secret` (or the admin token).
///
/// Memory is bounded by the caps below (--max-peers, --registration-max-bytes,
/// --registry-max-bytes, --max-connections, --max-watchers, --watch-history): a registration
/// over its byte budget gets 413 (or 422 naming the field), one past the registry's caps 503;
/// connections and watch streams past their caps get 503 with Retry-After; a client that does
/// not read for --write-timeout is dropped.
#[derive(Debug, Parser)]
#[command(name = "discovery", version, about, long_about)]
struct Args {
    /// Address to listen on (overrides --port when it includes a port).
    #[arg(long, env = "DISCOVERY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Interface to listen on when --listen is not given.
    #[arg(long, env = "DISCOVERY_HOST", default_value = "0.0.0.0")]
    host: IpAddr,
    /// Port to listen on when --listen is not given.
    #[arg(long, env = "DISCOVERY_PORT", default_value_t = config::DEFAULT_PORT)]
    port: u16,
    /// Name reported as `my_host` and in /health and /metrics.
    #[arg(long = "cell-id", env = "CELL_ID", default_value = config::DEFAULT_MY_HOST)]
    cell_id: String,
    /// Time to live after the last heartbeat (e.g. 15s, 500ms).
    #[arg(long, env = "DISCOVERY_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Start-up grace window with no evictions (default: one TTL).
    #[arg(long, env = "DISCOVERY_STARTUP_GRACE", value_parser = humantime::parse_duration)]
    startup_grace: Option<Duration>,
    /// Hold evictions when more than this share of failure domains (a batch-registered host
    /// and its cells count one; any other peer one) would lose a peer to expiry within one
    /// TTL (0..1).
    #[arg(long, env = "DISCOVERY_MASS_EVICTION_SHARE", default_value_t = config::DEFAULT_MASS_EVICTION_SHARE)]
    mass_eviction_share: f64,
    /// Smallest population (in failure domains) the mass-eviction guard applies to.
    #[arg(long, env = "DISCOVERY_MASS_EVICTION_MIN_PEERS", default_value_t = config::DEFAULT_MASS_EVICTION_MIN_PEERS)]
    mass_eviction_min_peers: usize,
    /// Longest mass-eviction hold.
    #[arg(long, env = "DISCOVERY_MASS_EVICTION_HOLD", default_value = "15s", value_parser = humantime::parse_duration)]
    mass_eviction_hold: Duration,
    /// Shared token required (as a bearer token) by register, heartbeat and deregister.
    #[arg(long, env = "DISCOVERY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Admin token: may heartbeat or deregister any cell.
    #[arg(long, env = "DISCOVERY_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "DISCOVERY_BODY_LIMIT", default_value_t = config::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Most one registration may cost as stored, in bytes (413, or 422 naming the field,
    /// beyond).
    #[arg(long, env = "DISCOVERY_REGISTRATION_MAX_BYTES", default_value_t = config::DEFAULT_REGISTRATION_MAX_BYTES)]
    registration_max_bytes: usize,
    /// Most all registrations may cost together, in bytes (503 for registrations beyond).
    #[arg(long, env = "DISCOVERY_REGISTRY_MAX_BYTES", default_value_t = config::DEFAULT_REGISTRY_MAX_BYTES)]
    registry_max_bytes: usize,
    /// A connection whose writes make no progress for this long (a client that does not read)
    /// is dropped.
    #[arg(long, env = "DISCOVERY_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// Deadline for one request.
    #[arg(long, env = "DISCOVERY_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Deadline for a request's headers; also closes idle keep-alive connections.
    #[arg(long, env = "DISCOVERY_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Cap on simultaneous connections.
    #[arg(long, env = "DISCOVERY_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Deadline for draining connections on shutdown.
    #[arg(long, env = "DISCOVERY_DRAIN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// Interval between keep-alive comments on watch streams.
    #[arg(long, env = "DISCOVERY_WATCH_KEEPALIVE", default_value = "15s", value_parser = humantime::parse_duration)]
    watch_keepalive: Duration,
    /// Events kept for Last-Event-ID resumption.
    #[arg(long, env = "DISCOVERY_WATCH_HISTORY", default_value_t = config::DEFAULT_WATCH_HISTORY)]
    watch_history: usize,
    /// Cap on simultaneous watch streams.
    #[arg(long, env = "DISCOVERY_MAX_WATCHERS", default_value_t = config::DEFAULT_MAX_WATCHERS)]
    max_watchers: usize,
    /// Cap on registered peers.
    #[arg(long, env = "DISCOVERY_MAX_PEERS", default_value_t = config::DEFAULT_MAX_PEERS)]
    max_peers: usize,
    /// Runtime worker threads (0: one per CPU core). One is the default: a request is a few
    /// microseconds of work, so a second worker mostly adds cross-thread wake-ups; large
    /// listings are rendered on the blocking pool.
    #[arg(long, env = "DISCOVERY_WORKER_THREADS", default_value_t = config::DEFAULT_WORKER_THREADS)]
    worker_threads: usize,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    runtime(args.worker_threads)?.block_on(run(args))
}

/// The tokio runtime for `workers` worker threads (see `--worker-threads`).
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

async fn run(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("bad --log filter")?)
        .init();
    let addr = args
        .listen
        .unwrap_or_else(|| SocketAddr::new(args.host, args.port));
    let config = Config {
        ttl: args.ttl,
        my_host: args.cell_id,
        startup_grace: args.startup_grace.unwrap_or(args.ttl),
        mass_eviction_share: args.mass_eviction_share,
        mass_eviction_min_peers: args.mass_eviction_min_peers,
        mass_eviction_hold: args.mass_eviction_hold,
        token: args.token.filter(|t| !t.is_empty()),
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        body_limit: args.body_limit,
        registration_max_bytes: args.registration_max_bytes,
        registry_max_bytes: args.registry_max_bytes,
        write_timeout: args.write_timeout,
        request_timeout: args.request_timeout,
        header_timeout: args.header_timeout,
        max_connections: args.max_connections,
        drain_timeout: args.drain_timeout,
        watch_keepalive: args.watch_keepalive,
        watch_history: args.watch_history,
        max_watchers: args.max_watchers,
        max_peers: args.max_peers,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    discovery::serve(listener, config, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
