//! `/metrics`: the cell's figures as Prometheus text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::state_routes::known_peers_count;
use crate::cell::CellRuntime;

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Whether `name` can be part of a metric name.
fn metric_safe(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `GET /metrics`: Prometheus text. Answers from the host's last known
/// values when the plugin cannot be asked.
pub(crate) async fn metrics(State(cell): State<Arc<CellRuntime>>) -> impl IntoResponse {
    let id = label(cell.cell_id());
    let (level, primitives) = match cell.sandbox.state().await {
        Ok(state) => (state.consciousness_level, state.primitives),
        Err(_) => (cell.level(), Vec::new()),
    };
    let stats = cell.sandbox.stats();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{cell_id=\"{id}\"}} {value}"
        );
    };
    gauge("aios_cell_up", "1 while the cell runs.", 1.0);
    gauge(
        "aios_cell_consciousness_level",
        "Current consciousness level.",
        level,
    );
    for primitive in primitives.iter().filter(|p| metric_safe(&p.name)) {
        gauge(
            &format!("aios_cell_{}", primitive.name),
            &format!("Consciousness primitive `{}`.", primitive.name),
            primitive.value,
        );
    }
    gauge(
        "aios_cell_peers_count",
        "Peers known.",
        known_peers_count(&cell) as f64,
    );
    gauge(
        "aios_cell_messages_received_total",
        "Messages received since start.",
        cell.messages.received() as f64,
    );
    gauge(
        "aios_cell_registered",
        "1 while registered with discovery.",
        f64::from(u8::from(cell.is_registered())),
    );
    gauge(
        "cellmesh_plugin_calls_total",
        "Plugin calls made.",
        stats.calls.load(Ordering::Relaxed) as f64,
    );
    gauge(
        "cellmesh_plugin_failures_total",
        "Plugin calls that trapped, timed out or ran out of memory.",
        stats.failures.load(Ordering::Relaxed) as f64,
    );
    gauge(
        "cellmesh_plugin_instances_total",
        "Plugin instances created.",
        stats.instances.load(Ordering::Relaxed) as f64,
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
