//! Health and observability: `/health`, `/readyz`, Prometheus `/metrics`, and the 404/405
//! fallbacks.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::time::Instant;

use crate::clock::{iso8601, unix_micros_now};
use crate::error::ApiError;
use crate::metrics::{BATCH_CALLS, metric};
use crate::registry_handle::RegistryGauges;
use crate::state::AppState;

/// Discovery's `branch` on `/health` (the original described itself as a cell).
pub const HEALTH_BRANCH: &str = "main";
/// Discovery's `consciousness_level` on `/health`.
pub const HEALTH_LEVEL: f64 = 0.0;
/// Discovery's `type` on `/health`.
pub const HEALTH_TYPE: &str = "discovery";
/// Discovery's `services` on `/health`.
pub const HEALTH_SERVICES: [&str; 1] = ["discovery"];

/// This machine's host name (as the original's `hostname`, from `HOSTNAME`): the `HOSTNAME`
/// environment variable, else the kernel's (`/proc/sys/kernel/hostname`, `/etc/hostname`),
/// else `""`. Read once.
pub fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let from_env = std::env::var("HOSTNAME").ok();
        let from_files = || {
            ["/proc/sys/kernel/hostname", "/etc/hostname"]
                .iter()
                .find_map(|p| std::fs::read_to_string(p).ok())
        };
        from_env
            .or_else(from_files)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// `GET /health`: the original's keys (discovery describes itself as a cell: `cell_id`,
/// `branch`, `consciousness_level`, `services`, `type`, `hostname`) plus our additions.
pub async fn health(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let reg = state.registry().status(now);
    Json(json!({
        "status": "healthy",
        "cell_id": state.config().my_host,
        "branch": HEALTH_BRANCH,
        "consciousness_level": HEALTH_LEVEL,
        "services": HEALTH_SERVICES,
        "type": HEALTH_TYPE,
        "hostname": hostname(),
        "service": "discovery",
        "my_host": state.config().my_host,
        "peers_count": reg.peers,
        "revision": reg.revision,
        "ready": !reg.in_grace,
        "uptime_seconds": now.duration_since(state.inner.started).as_secs_f64(),
        "timestamp": iso8601(unix_micros_now()),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// `GET /readyz`: 503 during the start-up grace window.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let grace_left = state
        .registry()
        .status(now)
        .in_grace
        .then(|| state.inner.started + state.config().startup_grace - now);
    match grace_left {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(left) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "starting",
                "detail": format!(
                    "Start-up grace window: cells are still re-registering ({} ms left).",
                    left.as_millis()
                ),
            })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let now = Instant::now();
    let RegistryGauges {
        peers: count,
        revision,
        in_grace: grace,
        stats,
        held,
        holding,
        failure_domains,
    } = state.registry().gauges(now);
    let host = &state.config().my_host;
    let cell = format!(
        "cell_id=\"{}\"",
        host.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let m = &state.inner.metrics;
    let mut out = String::with_capacity(8192);
    let f = |v: u64| v as f64;
    metric(
        &mut out,
        "aios_cell_peers_count",
        "gauge",
        "Registered peers.",
        &[(&cell, count as f64)],
    );
    metric(
        &mut out,
        "discovery_peers",
        "gauge",
        "Registered peers.",
        &[("", count as f64)],
    );
    metric(
        &mut out,
        "discovery_registry_revision",
        "gauge",
        "Registry revision (membership and level changes).",
        &[("", f(revision))],
    );
    metric(
        &mut out,
        "discovery_registrations_total",
        "counter",
        "Registrations of new cell ids.",
        &[("", f(stats.registrations))],
    );
    metric(
        &mut out,
        "discovery_reregistrations_total",
        "counter",
        "Registrations that replaced a live incarnation.",
        &[("", f(stats.reregistrations))],
    );
    metric(
        &mut out,
        "discovery_heartbeats_total",
        "counter",
        "Accepted heartbeats.",
        &[("", f(stats.heartbeats))],
    );
    metric(
        &mut out,
        "discovery_evictions_total",
        "counter",
        "Peers removed, by reason.",
        &[
            ("reason=\"deregistered\"", f(stats.evicted_deregistered)),
            ("reason=\"expired\"", f(stats.evicted_expired)),
            ("reason=\"replaced\"", f(stats.evicted_replaced)),
        ],
    );
    metric(
        &mut out,
        "discovery_evictions_held",
        "gauge",
        "Peers past their deadline whose eviction is held (grace window or mass-eviction guard).",
        &[("", held as f64)],
    );
    metric(
        &mut out,
        "discovery_eviction_hold_active",
        "gauge",
        "1 while the mass-eviction guard holds evictions.",
        &[("", f(u64::from(holding)))],
    );
    metric(
        &mut out,
        "discovery_eviction_holds_total",
        "counter",
        "Mass-eviction holds started.",
        &[("", f(stats.holds))],
    );
    metric(
        &mut out,
        "discovery_eviction_holds_ended_early_total",
        "counter",
        "Mass-eviction holds that ended early because the share of silent peers fell back under the threshold.",
        &[("", f(stats.holds_ended_early))],
    );
    metric(
        &mut out,
        "discovery_takeovers_total",
        "counter",
        "Live cell ids moved to another address by a registration without their secret (open mode, or the admin token).",
        &[("", f(stats.takeovers))],
    );
    metric(
        &mut out,
        "discovery_takeovers_refused_total",
        "counter",
        "Registrations refused (409) because the id is held by a live registration under another secret.",
        &[("", f(stats.takeovers_refused))],
    );
    metric(
        &mut out,
        "discovery_failure_domains",
        "gauge",
        "Distinct failure domains among registered peers (the cells a batch registered for one host are one domain; a peer registered by the single call is its own). The mass-eviction guard counts these.",
        &[("", failure_domains as f64)],
    );
    let per_call = |counters: &[std::sync::atomic::AtomicU64]| -> Vec<(String, f64)> {
        BATCH_CALLS
            .iter()
            .zip(counters)
            .map(|(call, c)| (format!("call=\"{call}\""), f(c.load(Ordering::Relaxed))))
            .collect()
    };
    let requests = per_call(&m.batch_requests);
    let cells = per_call(&m.batch_cells);
    metric(
        &mut out,
        "discovery_batch_requests_total",
        "counter",
        "Batch requests accepted as a whole (well formed and authorised), by call.",
        &labelled(&requests),
    );
    metric(
        &mut out,
        "discovery_batch_cells_total",
        "counter",
        "Cells named by accepted batch requests, by call (each cell's own outcome aside: renewals also count in discovery_heartbeats_total, registrations in discovery_registrations_total).",
        &labelled(&cells),
    );
    metric(
        &mut out,
        "discovery_startup_grace",
        "gauge",
        "1 during the start-up grace window.",
        &[("", f(u64::from(grace)))],
    );
    metric(
        &mut out,
        "discovery_watchers",
        "gauge",
        "Open watch streams.",
        &[("", f(m.watchers.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_auth_failures_total",
        "counter",
        "Requests refused for a missing or wrong token or secret.",
        &[("", f(m.auth_failures.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_stale_incarnations_total",
        "counter",
        "Requests refused with 409 for a stale incarnation.",
        &[("", f(m.stale_incarnations.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_bad_requests_total",
        "counter",
        "Requests refused as invalid.",
        &[("", f(m.bad_requests.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_connections",
        "gauge",
        "Open connections.",
        &[("", f(m.connections.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_connections_refused_total",
        "counter",
        "Connections refused (503 with Retry-After, or closed) because max_connections were open.",
        &[("", f(m.connections_refused.load(Ordering::Relaxed)))],
    );
    metric(
        &mut out,
        "discovery_write_timeouts_total",
        "counter",
        "Connections dropped because the client did not read for the write timeout.",
        &[("", f(m.write_timeouts.load(Ordering::Relaxed)))],
    );
    let (registered, alive) = {
        let reg = state.registry().lock();
        (reg.storage().bytes(), reg.storage().alive_bytes())
    };
    metric(
        &mut out,
        "discovery_registry_bytes",
        "gauge",
        "What the records cost against the registry's byte budget (registry_max_bytes): the registered ones, and every one alive (also those still held by readers or the watch history).",
        &[
            ("kind=\"registered\"", registered as f64),
            ("kind=\"alive\"", alive as f64),
        ],
    );
    m.render_histogram(&mut out);
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

fn labelled(samples: &[(String, f64)]) -> Vec<(&str, f64)> {
    samples.iter().map(|(l, x)| (l.as_str(), *x)).collect()
}

/// 404 for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found")
}

/// 405 for known paths with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
