//! Request metrics (latency histogram per route) and the Prometheus text rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Routes with their own latency series; anything else is `other`.
pub const ROUTES: [&str; 16] = [
    "/",
    "/register",
    "/heartbeat",
    "/batch/register",
    "/batch/heartbeat",
    "/batch/deregister",
    "/peers",
    "/peers/watch",
    "/peers/{cell_id}",
    "/peer/{cell_id}",
    "/unregister/{cell_id}",
    "/health",
    "/readyz",
    "/metrics",
    "/dashboard",
    "other",
];

/// The batch calls, as the `call` label of the batch metrics names them.
pub const BATCH_CALLS: [&str; 3] = ["register", "heartbeat", "deregister"];

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// Lock-free request counters.
#[derive(Default)]
pub struct RequestMetrics {
    routes: [Histogram; ROUTES.len()],
    /// Watch streams open now.
    pub watchers: AtomicU64,
    /// Requests refused by authentication (401/403).
    pub auth_failures: AtomicU64,
    /// Requests refused as invalid (4xx other than 401/403/404/409).
    pub bad_requests: AtomicU64,
    /// Requests answered 409 for a stale incarnation.
    pub stale_incarnations: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections refused (503 or closed) because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections dropped because a write made no progress for `write_timeout`.
    pub write_timeouts: AtomicU64,
    /// Batch requests accepted as a whole (well formed and authorised), per
    /// [`BATCH_CALLS`] entry.
    pub batch_requests: [AtomicU64; BATCH_CALLS.len()],
    /// Cells named by those batch requests (each cell's own outcome aside), per
    /// [`BATCH_CALLS`] entry.
    pub batch_cells: [AtomicU64; BATCH_CALLS.len()],
}

/// Index of `route` in [`ROUTES`].
pub fn route_index(route: &str) -> usize {
    ROUTES
        .iter()
        .position(|r| *r == route)
        .unwrap_or(ROUTES.len() - 1)
}

impl RequestMetrics {
    /// Counts one batch request of `call` (an index in [`BATCH_CALLS`]) naming `cells` cells.
    pub fn count_batch(&self, call: usize, cells: usize) {
        let call = call.min(BATCH_CALLS.len() - 1);
        self.batch_requests[call].fetch_add(1, Ordering::Relaxed);
        self.batch_cells[call].fetch_add(cells as u64, Ordering::Relaxed);
    }

    /// Records one request's latency.
    pub fn observe(&self, route: usize, elapsed: Duration) {
        let h = &self.routes[route.min(ROUTES.len() - 1)];
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Appends the latency histogram in Prometheus text format.
    pub fn render_histogram(&self, out: &mut String) {
        out.push_str(
            "# HELP discovery_request_duration_seconds Time to answer a request, by route.\n",
        );
        out.push_str("# TYPE discovery_request_duration_seconds histogram\n");
        for (name, h) in ROUTES.iter().zip(self.routes.iter()) {
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(h.buckets.iter()) {
                cumulative += c.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "discovery_request_duration_seconds_bucket{{route=\"{name}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "discovery_request_duration_seconds_bucket{{route=\"{name}\",le=\"+Inf\"}} {count}"
            );
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "discovery_request_duration_seconds_sum{{route=\"{name}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "discovery_request_duration_seconds_count{{route=\"{name}\"}} {count}"
            );
        }
    }
}

/// Appends one metric with HELP and TYPE lines.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}
