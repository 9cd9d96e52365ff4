//! `GET /health`: whether the host's cells run. `ok` when all do,
//! `degraded` when some failed (200 both), `failed` when none runs (503,
//! so that a probe reading only the status sees it).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use super::AdminHost;

/// The answer of `GET /health`.
#[derive(Debug, Serialize)]
pub(super) struct HealthAnswer {
    /// `ok`, `degraded` or `failed`.
    status: &'static str,
    /// The host's failure-domain name.
    host_id: String,
    /// Cells the host was asked to run.
    cells: usize,
    /// Cells running.
    running: usize,
    /// Cells failed.
    failed: usize,
    /// Seconds since the host started.
    uptime_seconds: f64,
}

/// `GET /health`.
pub(super) async fn health(State(host): State<Arc<AdminHost>>) -> (StatusCode, Json<HealthAnswer>) {
    let failed = host.slots.iter().filter(|slot| slot.is_failed()).count();
    let running = host.slots.len() - failed;
    let (code, status) = if running == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "failed")
    } else if failed > 0 {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ok")
    };
    let answer = HealthAnswer {
        status,
        host_id: host.host_id.clone(),
        cells: host.slots.len(),
        running,
        failed,
        uptime_seconds: host.started.elapsed().as_secs_f64(),
    };
    (code, Json(answer))
}
