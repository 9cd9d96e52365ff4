//! `/metrics` and `/metrics/prometheus`: the cell's figures as Prometheus
//! text in the original cells' format: every metric with its `# HELP` and
//! `# TYPE` lines, values with 4 decimals, and the labels of the cell's
//! [`ContractShape`] on every series: pure's `cell_id`, `branch`, `type`
//! (the cell type without `_cell`: `pure`), alpha's `cell_id`, `identity`
//! (spaces as `_`) and `stage`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::answers::{ContractShape, primitives_by_name};
use super::state_routes::{contract_shape, known_peers_count};
use crate::cell::CellRuntime;

/// Gauges the host writes itself under the `aios_cell_` prefix; a primitive
/// of the same name is left out rather than written twice.
const HOST_GAUGES: [&str; 8] = [
    "up",
    "consciousness_level",
    "scrape_timestamp_seconds",
    "peers_count",
    "messages_count",
    "sync_count",
    "messages_received_total",
    "registered",
];

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

/// A sample value as the original wrote it: 4 decimals (Prometheus's own
/// words for the non-finite ones).
fn sample_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value:.4}")
    }
}

/// The label set of every series: `key="value",...` for the cell's shape.
fn series_labels(cell: &CellRuntime) -> String {
    let manifest = cell.sandbox.manifest();
    let pairs: [(&str, String); 3] = match contract_shape(cell) {
        ContractShape::Pure => [
            ("cell_id", cell.cell_id().to_owned()),
            ("branch", cell.identity.branch.clone()),
            (
                "type",
                manifest
                    .cell_type
                    .strip_suffix("_cell")
                    .unwrap_or(&manifest.cell_type)
                    .to_owned(),
            ),
        ],
        ContractShape::Alpha => [
            ("cell_id", cell.cell_id().to_owned()),
            ("identity", manifest.identity.replace(' ', "_")),
            ("stage", manifest.evolutionary_stage.clone()),
        ],
    };
    pairs
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Prometheus text being written, every series with the same labels.
struct Exposition {
    labels: String,
    out: String,
}

impl Exposition {
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let _ = writeln!(
            self.out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{}}} {}",
            self.labels,
            sample_value(value)
        );
    }
}

fn unix_time_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `GET /metrics` and `GET /metrics/prometheus`: Prometheus text. Answers
/// from the host's last known level (and no primitives) when the plugin
/// cannot be asked.
pub(crate) async fn metrics(State(cell): State<Arc<CellRuntime>>) -> impl IntoResponse {
    // Never waits on the plugin: the last state it reported.
    let level = cell.level();
    let primitives = cell
        .plugin_view()
        .state
        .map(|state| state.primitives)
        .unwrap_or_default();
    let stats = cell.sandbox.stats();
    let mut text = Exposition {
        labels: series_labels(&cell),
        out: String::new(),
    };
    text.gauge(
        "aios_cell_consciousness_level",
        "Current consciousness level.",
        level,
    );
    let reserved: BTreeSet<&str> = HOST_GAUGES.into_iter().collect();
    for (name, value) in primitives_by_name(&primitives)
        .iter()
        .filter(|(name, _)| metric_safe(name) && !reserved.contains(name.as_str()))
    {
        text.gauge(
            &format!("aios_cell_{name}"),
            &format!("Consciousness primitive `{name}`."),
            *value,
        );
    }
    text.gauge("aios_cell_up", "1 while the cell runs.", 1.0);
    text.gauge(
        "aios_cell_scrape_timestamp_seconds",
        "Unix time of this scrape.",
        unix_time_seconds(),
    );
    text.gauge(
        "aios_cell_peers_count",
        "Peers known, by hand or through discovery.",
        known_peers_count(&cell) as f64,
    );
    text.gauge(
        "aios_cell_messages_count",
        "Messages kept (the last 100).",
        cell.messages.len() as f64,
    );
    text.gauge(
        "aios_cell_sync_count",
        "Syncs kept (the last 50).",
        cell.syncs.len() as f64,
    );
    text.gauge(
        "aios_cell_messages_received_total",
        "Messages received since start.",
        cell.messages.received() as f64,
    );
    text.gauge(
        "aios_cell_registered",
        "1 while registered with discovery.",
        f64::from(u8::from(cell.is_registered())),
    );
    text.gauge(
        "cellmesh_plugin_calls_total",
        "Plugin calls made.",
        stats.calls.load(Ordering::Relaxed) as f64,
    );
    text.gauge(
        "cellmesh_plugin_failures_total",
        "Plugin calls that trapped, timed out or ran out of memory.",
        stats.failures.load(Ordering::Relaxed) as f64,
    );
    text.gauge(
        "cellmesh_plugin_instances_total",
        "Plugin instances created.",
        stats.instances.load(Ordering::Relaxed) as f64,
    );
    text.out.push_str(&cell.status_metrics(&text.labels));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text.out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_four_decimals_and_labels_are_escaped() {
        assert_eq!(sample_value(1.0), "1.0000");
        assert_eq!(sample_value(0.123456), "0.1235");
        assert_eq!(sample_value(f64::NAN), "NaN");
        assert_eq!(sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert!(metric_safe("awareness") && !metric_safe("a-b") && !metric_safe(""));
    }
}
