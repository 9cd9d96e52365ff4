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

/// Prometheus text being written, every series with the same labels, one
/// line at a time to `line` (with its metric family's name).
struct Exposition<'a> {
    labels: String,
    scratch: String,
    line: &'a mut dyn FnMut(&str, &str),
}

impl Exposition<'_> {
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let Self {
            labels,
            scratch,
            line,
        } = self;
        let mut emit = |text: std::fmt::Arguments<'_>| {
            scratch.clear();
            let _ = scratch.write_fmt(text);
            line(name, scratch);
        };
        emit(format_args!("# HELP {name} {help}"));
        emit(format_args!("# TYPE {name} gauge"));
        emit(format_args!("{name}{{{labels}}} {}", sample_value(value)));
    }
}

/// The metric family of a line of Prometheus text: the name after
/// `# HELP ` or `# TYPE `, else the sample's name.
fn family_of(line: &str) -> &str {
    let rest = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "));
    match rest {
        Some(rest) => rest.split(' ').next().unwrap_or(rest),
        None => line.split(['{', ' ']).next().unwrap_or(line),
    }
}

fn unix_time_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// An inherent impl here rather than in `cell.rs`: the rendering needs this
// module's helpers, and a method is reachable from the host's admin API
// (`crate::admin`), which shows every cell's series on one page, while this
// module stays private to `api`.
impl CellRuntime {
    /// The cell's series, exactly as its own `/metrics` writes them, handed
    /// over one line at a time (without the newline) to `line`, with the
    /// name of the line's metric family: `# HELP`, `# TYPE`, then the
    /// samples, family after family.
    ///
    /// Every label set is the cell's (see the module's documentation),
    /// followed by `extra_labels` when not empty (`key="value",...`, values
    /// already escaped): the host's admin page adds `cell="<id>"`.
    /// `peers_count` is what `aios_cell_peers_count` shows (peers known by
    /// hand or through discovery). Never waits on the plugin: answers from
    /// the last level and state it reported.
    pub(crate) fn metric_lines(
        &self,
        extra_labels: &str,
        peers_count: usize,
        line: &mut dyn FnMut(&str, &str),
    ) {
        let level = self.level();
        let primitives = self
            .plugin_view()
            .state
            .map(|state| state.primitives)
            .unwrap_or_default();
        let stats = self.sandbox.stats();
        let mut labels = series_labels(self);
        if !extra_labels.is_empty() {
            labels.push(',');
            labels.push_str(extra_labels);
        }
        let mut text = Exposition {
            labels,
            scratch: String::new(),
            line,
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
            peers_count as f64,
        );
        text.gauge(
            "aios_cell_messages_count",
            "Messages kept (the last 100).",
            self.messages.len() as f64,
        );
        text.gauge(
            "aios_cell_sync_count",
            "Syncs kept (the last 50).",
            self.syncs.len() as f64,
        );
        text.gauge(
            "aios_cell_messages_received_total",
            "Messages received since start.",
            self.messages.received() as f64,
        );
        text.gauge(
            "aios_cell_registered",
            "1 while registered with discovery.",
            f64::from(u8::from(self.is_registered())),
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
        let status = self.status_metrics(&text.labels);
        for status_line in status.lines() {
            (text.line)(family_of(status_line), status_line);
        }
    }
}

/// `GET /metrics` and `GET /metrics/prometheus`: Prometheus text. Answers
/// from the host's last known level (and no primitives) when the plugin
/// cannot be asked.
pub(crate) async fn metrics(State(cell): State<Arc<CellRuntime>>) -> impl IntoResponse {
    let mut out = String::new();
    cell.metric_lines("", known_peers_count(&cell), &mut |_, line| {
        out.push_str(line);
        out.push('\n');
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
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

    #[test]
    fn every_line_is_given_its_family() {
        assert_eq!(
            family_of("# HELP aios_cell_up 1 while the cell runs."),
            "aios_cell_up"
        );
        assert_eq!(family_of("# TYPE aios_cell_up gauge"), "aios_cell_up");
        assert_eq!(
            family_of("aios_cell_up{cell_id=\"a b\"} 1.0000"),
            "aios_cell_up"
        );
        assert_eq!(family_of("bare 1.0000"), "bare");
    }
}
