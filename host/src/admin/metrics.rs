//! `GET /metrics`: the host's gauges, then every running cell's series as
//! its own `/metrics` writes them ([`CellRuntime::metric_lines`], the one
//! rendering both pages use) with a `cell="<id>"` label added.
//!
//! The exposition format wants each metric family's `# HELP`, `# TYPE` and
//! samples together, once: the page groups the lines by family (in the
//! order families first appear), keeping the first cell's `# HELP` and
//! `# TYPE` lines and every cell's samples.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AdminHost;
use crate::cell::CellRuntime;
use crate::mesh_view::MeshView;
use crate::status::RegistrationState;

/// Escapes a Prometheus label value (as the cells' pages do).
pub(super) fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family of the page: its `# HELP`/`# TYPE` lines and its
/// samples, each line ending in a newline.
#[derive(Debug)]
struct Family {
    name: String,
    meta: String,
    samples: String,
    /// The source (host, or cell) whose meta lines the family keeps.
    owner: usize,
}

/// Prometheus text from many sources, grouped by family.
#[derive(Debug, Default)]
struct Page {
    families: Vec<Family>,
    index: std::collections::HashMap<String, usize>,
    /// The family of the previous line: a source writes a family's lines
    /// together, so most lines skip the map.
    last: Option<usize>,
}

impl Page {
    /// Adds `line` of `family` written by `source`.
    fn line(&mut self, source: usize, family: &str, line: &str) {
        let at = match self.last {
            Some(at) if self.families[at].name == family => at,
            _ => match self.index.get(family) {
                Some(&at) => at,
                None => {
                    self.families.push(Family {
                        name: family.to_owned(),
                        meta: String::new(),
                        samples: String::new(),
                        owner: source,
                    });
                    self.index
                        .insert(family.to_owned(), self.families.len() - 1);
                    self.families.len() - 1
                }
            },
        };
        self.last = Some(at);
        let family = &mut self.families[at];
        let into = if !line.starts_with('#') {
            &mut family.samples
        } else if family.owner == source {
            &mut family.meta
        } else {
            return;
        };
        into.push_str(line);
        into.push('\n');
    }

    /// A gauge of the host's: `samples` are `(labels, value)`.
    fn host_gauge(&mut self, name: &str, help: &str, samples: &[(String, f64)]) {
        self.line(HOST, name, &format!("# HELP {name} {help}"));
        self.line(HOST, name, &format!("# TYPE {name} gauge"));
        for (labels, value) in samples {
            let sample = if labels.is_empty() {
                format!("{name} {value:.4}")
            } else {
                format!("{name}{{{labels}}} {value:.4}")
            };
            self.line(HOST, name, &sample);
        }
    }

    fn finish(self) -> String {
        let size = self
            .families
            .iter()
            .map(|f| f.meta.len() + f.samples.len())
            .sum();
        let mut out = String::with_capacity(size);
        for family in self.families {
            out.push_str(&family.meta);
            out.push_str(&family.samples);
        }
        out
    }
}

/// The source number of the host's own gauges (cells are 1, 2, ...).
const HOST: usize = 0;

/// Counts the peers each cell knows, as its own `/metrics` does (hand-kept
/// peers and discovery's listing, each id once, the cell itself left out of
/// the listing), reading each distinct mesh view once: the cells of a host
/// share one, and copying a listing of 10,000 peers per cell would cost
/// 10,000 times more.
#[derive(Debug, Default)]
struct PeerCounter {
    view: Option<*const MeshView>,
    listed: HashSet<String>,
}

impl PeerCounter {
    fn known_peers(&mut self, cell: &CellRuntime) -> usize {
        let view: &MeshView = cell.mesh.view();
        if self.view != Some(std::ptr::from_ref(view)) {
            self.listed = view.peers().into_iter().map(|p| p.cell_id).collect();
            self.view = Some(std::ptr::from_ref(view));
        }
        let self_id = cell.cell_id();
        let listed = self.listed.len() - usize::from(self.listed.contains(self_id));
        let by_hand = cell
            .mesh
            .manual_peers()
            .iter()
            .filter(|p| p.cell_id == self_id || !self.listed.contains(&p.cell_id))
            .count();
        listed + by_hand
    }
}

/// The whole page.
pub(super) fn render(host: &AdminHost) -> String {
    let mut page = Page::default();
    let (mut running, mut registered) = (0usize, 0usize);
    let mut each = Vec::with_capacity(host.slots.len());
    let cells: Vec<_> = host
        .slots
        .iter()
        .map(|slot| {
            let cell = slot.runtime();
            if let Some(cell) = &cell {
                running += 1;
                registered +=
                    usize::from(cell.registration_status().status == RegistrationState::Registered);
            }
            let name = cell.as_ref().map_or(slot.name.as_str(), |c| c.cell_id());
            each.push((
                format!("cell=\"{}\",index=\"{}\"", label_value(name), slot.index),
                f64::from(u8::from(cell.is_some())),
            ));
            cell
        })
        .collect();
    let failed = host.slots.len() - running;
    page.host_gauge(
        "cellmesh_host_info",
        "Always 1; names the host's failure domain.",
        &[(format!("host_id=\"{}\"", label_value(&host.host_id)), 1.0)],
    );
    page.host_gauge(
        "cellmesh_host_uptime_seconds",
        "Seconds since the host started.",
        &[(String::new(), host.started.elapsed().as_secs_f64())],
    );
    page.host_gauge(
        "cellmesh_host_cells",
        "Cells of the host, by state (running, failed).",
        &[
            ("state=\"running\"".to_owned(), running as f64),
            ("state=\"failed\"".to_owned(), failed as f64),
        ],
    );
    page.host_gauge(
        "cellmesh_host_cells_registered",
        "Running cells discovery accepts.",
        &[(String::new(), registered as f64)],
    );
    page.host_gauge(
        "cellmesh_host_cell_running",
        "1 while the cell runs, 0 once it failed (see GET /cells for why).",
        &each,
    );
    let mut peers = PeerCounter::default();
    for (source, cell) in cells.iter().flatten().enumerate() {
        let extra = format!("cell=\"{}\"", label_value(cell.cell_id()));
        cell.metric_lines(&extra, peers.known_peers(cell), &mut |family, line| {
            page.line(source + 1, family, line);
        });
    }
    page.finish()
}

/// `GET /metrics`: Prometheus text. Built off the async workers: 10,000
/// cells are tens of megabytes of text.
pub(super) async fn metrics(State(host): State<Arc<AdminHost>>) -> impl IntoResponse {
    let text = match tokio::task::spawn_blocking(move || render(&host)).await {
        Ok(text) => text,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
