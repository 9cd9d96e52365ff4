//! What a cell says about itself on `/health` and `/metrics`, read without
//! waiting on discovery or on the plugin:
//!
//! - [`RegistrationStatus`]: its standing with discovery, written by the
//!   lifecycle (`registering`, `registered`, `contested`, `given_up`);
//! - [`PluginView`]: the last state the plugin reported and whether it
//!   answers (`ok`, `busy`, `failing`), written by the plugin watch
//!   ([`crate::plugin_watch`]) and by API calls.
//!
//! Both serialise to the JSON objects `/health` shows under
//! `registration` and `plugin`; [`status_metrics`] renders their gauges.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::contest::{Contest, Verdict};
use crate::plugin::PluginError;
use crate::plugin::bindings::CellState;
use crate::plugin::stats::Resets;

/// A cell's standing with discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    /// Not (yet) accepted by discovery: the first registration, or again
    /// after discovery forgot the cell; retried with back-off.
    Registering,
    /// Accepted; heartbeats renew the lease.
    Registered,
    /// Another registration holds the id; the host re-claims it (at most
    /// once per TTL) or waits with back-off until discovery accepts it.
    Contested,
    /// Displaced too many times in a row: the host stays up unregistered
    /// and no longer re-claims its id, until restarted.
    GivenUp,
}

impl RegistrationState {
    /// The state's name as `/health` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registering => "registering",
            Self::Registered => "registered",
            Self::Contested => "contested",
            Self::GivenUp => "given_up",
        }
    }
}

/// A cell's standing with discovery, as `/health` shows it under
/// `registration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationStatus {
    /// The state.
    pub status: RegistrationState,
    /// `HOST:PORT` of the registration holding the id, when contested or
    /// given up (`null` when discovery did not say).
    pub by: Option<String>,
    /// Displacements in the current row (see [`crate::contest`]).
    pub displacements: u32,
    /// Displacements since the host started.
    pub displacements_total: u64,
    /// The lease id discovery issued, when registered with ours.
    pub incarnation: Option<u64>,
    /// One sentence for people (`"id contested by 10.0.0.9:8000; ..."`).
    pub detail: String,
}

/// What the host writes when discovery does not say who holds an id.
pub(crate) const UNKNOWN_HOLDER: &str = "an unknown address";

/// The transitions of a cell's standing, shared by the single-cell
/// lifecycle and the many-cell host's batch liveness (so both say the
/// same).
impl RegistrationStatus {
    /// Discovery accepted the registration (lease `incarnation`).
    pub fn registered(&mut self, incarnation: Option<u64>) {
        self.status = RegistrationState::Registered;
        self.incarnation = incarnation;
        self.detail = match &self.by {
            Some(by) if self.displacements > 0 => format!(
                "registered with discovery; re-claimed the id from {by} \
                 ({} displacement(s) in a row)",
                self.displacements
            ),
            _ => "registered with discovery".to_owned(),
        };
    }

    /// Discovery forgot the cell (a heartbeat's 404): registering again.
    pub fn forgotten(&mut self) {
        self.status = RegistrationState::Registering;
        self.detail = "discovery forgot this cell; registering again".to_owned();
    }

    /// Another registration took the id (held by `holder`, when discovery
    /// says), and `contest` (which counted it) gave `verdict`.
    pub fn displaced(&mut self, verdict: Verdict, holder: Option<String>, contest: &Contest) {
        let by = holder.as_deref().unwrap_or(UNKNOWN_HOLDER).to_owned();
        let in_a_row = contest.in_a_row();
        self.status = match verdict {
            Verdict::Reclaim { .. } => RegistrationState::Contested,
            Verdict::GiveUp => RegistrationState::GivenUp,
        };
        self.by = holder;
        self.displacements = in_a_row;
        self.displacements_total = contest.total();
        self.incarnation = None;
        self.detail = match verdict {
            Verdict::Reclaim { .. } => format!(
                "id contested by {by}; re-claiming it at most once per TTL ({} ms)",
                contest.ttl().as_millis()
            ),
            Verdict::GiveUp => format!(
                "id contested by {by}: displaced {in_a_row} times in a row; no longer re-claiming it \
                 (restart the host to try again, or give it another id)"
            ),
        };
    }

    /// A registration was answered 409: discovery holds the id under
    /// another secret (held by `holder`, when discovery says); retrying.
    pub fn held(&mut self, holder: Option<String>, in_a_row: u32) {
        let by = holder.as_deref().unwrap_or(UNKNOWN_HOLDER).to_owned();
        self.status = RegistrationState::Contested;
        self.by = holder;
        self.displacements = in_a_row;
        self.detail = format!(
            "id contested by {by}: discovery holds it under another secret until that \
             registration expires; retrying"
        );
    }

    /// A registration failed with `error` (unreachable, 5xx...): retrying.
    /// A contested cell stays contested.
    pub fn registering_failed(&mut self, error: &dyn std::fmt::Display) {
        if self.status != RegistrationState::Contested {
            self.status = RegistrationState::Registering;
            self.detail = format!("registering with discovery: {error}");
        }
    }

    /// Discovery refused the cell's first registration itself (400, 413,
    /// 422): no retry can cure it; the cell stops.
    pub fn refused(&mut self, detail: &str) {
        self.status = RegistrationState::Registering;
        self.incarnation = None;
        self.detail = format!("discovery refused the registration: {detail}");
    }
}

impl Default for RegistrationStatus {
    fn default() -> Self {
        Self {
            status: RegistrationState::Registering,
            by: None,
            displacements: 0,
            displacements_total: 0,
            incarnation: None,
            detail: "registering with discovery".to_owned(),
        }
    }
}

/// Whether the plugin answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginStatus {
    /// Its last call answered.
    Ok,
    /// A call has held the instance longer than the busy threshold (the
    /// host's probe is waiting for it).
    Busy,
    /// Its last call failed (trap, deadline, memory cap...).
    Failing,
}

/// The plugin as `/health` shows it under `plugin`, from the last state it
/// reported: never waits on a plugin call.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    /// Whether it answers.
    pub status: PluginStatus,
    /// Milliseconds since `state` last answered (`null`: never).
    pub state_age_ms: Option<u64>,
    /// Milliseconds the host's pending probe has waited, when busy.
    pub busy_ms: Option<u64>,
    /// Kind of the last failure (`timeout`, `trap`...), when failing.
    pub last_error_kind: Option<String>,
    /// The last failure, when failing.
    pub last_error: Option<String>,
    /// The last state the plugin reported (its level may be older than
    /// [`crate::cell::CellRuntime::level`], which every call updates).
    #[serde(skip)]
    pub state: Option<CellState>,
    /// Replacements of the plugin's instance (each loses the plugin's
    /// in-memory state), by cause; filled in by
    /// [`crate::cell::CellRuntime::plugin_view`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets: Option<ResetsView>,
}

/// The plugin's state resets as `/health` shows them under
/// `plugin.resets`: every replacement of its instance (trap, CPU deadline,
/// wall-clock timeout, memory cap, abandoned call) loses what the plugin
/// kept in memory, so it is counted, never silent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResetsView {
    /// Resets since start, all causes.
    pub total: u64,
    /// Resets by cause (`trap`, `cpu_deadline`, `wall_timeout`, `memory`,
    /// `abandoned`), every cause present.
    pub by_cause: std::collections::BTreeMap<&'static str, u64>,
    /// The last reset, `null` when there was none.
    pub last: Option<LastResetView>,
}

/// The last reset of the plugin's instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastResetView {
    /// Why the instance was replaced.
    pub cause: &'static str,
    /// The export that was running.
    pub export: &'static str,
    /// When (UTC, ISO 8601).
    pub at: String,
    /// Milliseconds ago.
    pub age_ms: u64,
}

impl From<&Resets> for ResetsView {
    fn from(resets: &Resets) -> Self {
        ResetsView {
            total: resets.total(),
            by_cause: resets
                .by_cause
                .iter()
                .map(|(cause, n)| (cause.as_str(), *n))
                .collect(),
            last: resets.last.as_ref().map(|last| LastResetView {
                cause: last.cause.as_str(),
                export: last.export,
                at: last.at.clone(),
                age_ms: millis(last.at_instant.elapsed()),
            }),
        }
    }
}

/// Default time a probe of the plugin may wait before the plugin counts as
/// busy: far above a well-behaved call (microseconds to milliseconds).
pub const DEFAULT_BUSY_AFTER: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct CacheInner {
    state: Option<CellState>,
    read_at: Option<Instant>,
    probe_since: Option<Instant>,
    last_error: Option<(&'static str, String)>,
}

/// The last state the plugin reported and the outcome of the last call
/// the host made for itself, behind a lock never held across `.await`.
/// Owns the wake-up of the task that refreshes it ([`Self::wake`]).
#[derive(Debug)]
pub struct PluginCache {
    inner: Mutex<CacheInner>,
    busy_after: Duration,
    wake: Notify,
}

impl Default for PluginCache {
    fn default() -> Self {
        Self::new(DEFAULT_BUSY_AFTER)
    }
}

impl PluginCache {
    /// An empty cache; a probe pending longer than `busy_after` makes the
    /// plugin `busy`.
    pub fn new(busy_after: Duration) -> Self {
        Self {
            inner: Mutex::new(CacheInner::default()),
            busy_after,
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A probe (a call the host makes for itself) starts now.
    pub fn probe_started(&self) {
        self.lock().probe_since = Some(Instant::now());
    }

    /// The plugin answered `state` with `state`.
    pub fn record_state(&self, state: CellState) {
        let mut inner = self.lock();
        inner.state = Some(state);
        inner.read_at = Some(Instant::now());
        inner.probe_since = None;
        inner.last_error = None;
    }

    /// A probe answered (other than `state`).
    pub fn record_ok(&self) {
        let mut inner = self.lock();
        inner.probe_since = None;
        inner.last_error = None;
    }

    /// A probe failed with `error`.
    pub fn record_failure(&self, error: &PluginError) {
        let mut inner = self.lock();
        inner.probe_since = None;
        inner.last_error = Some((error.kind(), error.to_string()));
    }

    /// The plugin as `/health` shows it; never waits.
    pub fn view(&self) -> PluginView {
        let inner = self.lock();
        let now = Instant::now();
        let busy_for = inner
            .probe_since
            .map(|since| now.saturating_duration_since(since))
            .filter(|waited| *waited >= self.busy_after);
        let status = match (&busy_for, &inner.last_error) {
            (Some(_), _) => PluginStatus::Busy,
            (None, Some(("busy", _))) => PluginStatus::Busy,
            (None, Some(_)) => PluginStatus::Failing,
            (None, None) => PluginStatus::Ok,
        };
        let failing = status == PluginStatus::Failing;
        PluginView {
            status,
            state_age_ms: inner
                .read_at
                .map(|at| millis(now.saturating_duration_since(at))),
            busy_ms: busy_for.map(millis),
            last_error_kind: inner
                .last_error
                .as_ref()
                .filter(|_| failing)
                .map(|(kind, _)| (*kind).to_owned()),
            last_error: inner
                .last_error
                .as_ref()
                .filter(|_| failing)
                .map(|(_, text)| text.clone()),
            state: inner.state.clone(),
            resets: None,
        }
    }

    /// Asks the refreshing task to read the state again soon (after a call
    /// that may have changed it). Never waits.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves after the next [`Self::wake`] (or at once if one is
    /// pending).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

/// Milliseconds of `duration`, saturated.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The gauges of the registration and plugin status, as Prometheus text
/// (`# HELP`, `# TYPE`, one sample each with the label set `labels`, as
/// `key="value",...`, values with 4 decimals as the cells' other series):
/// `cellmesh_registration_registered`, `cellmesh_registration_contested`,
/// `cellmesh_registration_given_up`,
/// `cellmesh_registration_displacements_total` (a counter),
/// `cellmesh_plugin_busy`, `cellmesh_plugin_failing` and
/// `cellmesh_plugin_state_age_seconds`.
pub fn status_metrics(
    labels: &str,
    registration: &RegistrationStatus,
    plugin: &PluginView,
) -> String {
    let mut out = String::new();
    let mut sample = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value:.4}"
        );
    };
    let flag = |yes: bool| f64::from(u8::from(yes));
    let state = registration.status;
    sample(
        "cellmesh_registration_registered",
        "gauge",
        "1 while discovery accepts this cell's registration.",
        flag(state == RegistrationState::Registered),
    );
    sample(
        "cellmesh_registration_contested",
        "gauge",
        "1 while another registration holds this cell's id.",
        flag(state == RegistrationState::Contested),
    );
    sample(
        "cellmesh_registration_given_up",
        "gauge",
        "1 once the host stopped re-claiming its contested id (restart to retry).",
        flag(state == RegistrationState::GivenUp),
    );
    sample(
        "cellmesh_registration_displacements_total",
        "counter",
        "Times another registration took this cell's id.",
        registration.displacements_total as f64,
    );
    sample(
        "cellmesh_plugin_busy",
        "gauge",
        "1 while a plugin call holds the instance past the busy threshold.",
        flag(plugin.status == PluginStatus::Busy),
    );
    sample(
        "cellmesh_plugin_failing",
        "gauge",
        "1 while the plugin's last call failed.",
        flag(plugin.status == PluginStatus::Failing),
    );
    sample(
        "cellmesh_plugin_state_age_seconds",
        "gauge",
        "Seconds since the plugin's state was last read (-1: never).",
        plugin.state_age_ms.map_or(-1.0, |ms| ms as f64 / 1000.0),
    );
    if let Some(resets) = &plugin.resets {
        let name = "cellmesh_plugin_resets_total";
        let _ = writeln!(
            out,
            "# HELP {name} Replacements of the plugin's instance (its in-memory state lost), by cause.\n# TYPE {name} counter"
        );
        for (cause, n) in &resets.by_cause {
            let _ = writeln!(out, "{name}{{{labels},cause=\"{cause}\"}} {:.4}", *n as f64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_status_serialises_as_health_shows_it() {
        let status = RegistrationStatus {
            status: RegistrationState::GivenUp,
            by: Some("10.66.66.66:9".into()),
            displacements: 3,
            displacements_total: 3,
            incarnation: None,
            detail: "id contested by 10.66.66.66:9".into(),
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["status"], "given_up");
        assert_eq!(json["by"], "10.66.66.66:9");
        assert_eq!(json["displacements"], 3);
    }

    /// The transitions both liveness paths share say what the single
    /// lifecycle always said.
    #[test]
    fn transitions_keep_the_lifecycle_texts() {
        use crate::contest::ContestPolicy;
        let mut status = RegistrationStatus::default();
        status.registered(Some(4));
        assert_eq!(status.status, RegistrationState::Registered);
        assert_eq!(status.detail, "registered with discovery");
        assert_eq!(status.incarnation, Some(4));

        status.forgotten();
        assert_eq!(status.status, RegistrationState::Registering);
        assert_eq!(
            status.detail,
            "discovery forgot this cell; registering again"
        );

        let now = Instant::now();
        let mut contest = Contest::new(ContestPolicy::default());
        contest.claimed(now, Some(Duration::from_millis(1500)));
        let verdict = contest.displaced(now);
        status.displaced(verdict, Some("10.0.0.9:8000".into()), &contest);
        assert_eq!(status.status, RegistrationState::Contested);
        assert_eq!(
            status.detail,
            "id contested by 10.0.0.9:8000; re-claiming it at most once per TTL (1500 ms)"
        );
        assert_eq!((status.displacements, status.displacements_total), (1, 1));
        assert_eq!(status.incarnation, None);

        // A failed registration leaves a contested cell contested.
        status.registering_failed(&"unreachable");
        assert_eq!(status.status, RegistrationState::Contested);

        status.registered(Some(5));
        assert_eq!(
            status.detail,
            "registered with discovery; re-claimed the id from 10.0.0.9:8000 (1 displacement(s) in a row)"
        );

        status.held(None, 1);
        assert_eq!(
            status.detail,
            "id contested by an unknown address: discovery holds it under another secret until \
             that registration expires; retrying"
        );

        contest.displaced(now);
        let verdict = contest.displaced(now);
        status.displaced(verdict, None, &contest);
        assert_eq!(status.status, RegistrationState::GivenUp);
        assert!(
            status.detail.starts_with(
                "id contested by an unknown address: displaced 3 times in a row; no longer re-claiming it"
            ),
            "{}",
            status.detail
        );

        let mut fresh = RegistrationStatus::default();
        fresh.registering_failed(&"discovery answered 503");
        assert_eq!(
            fresh.detail,
            "registering with discovery: discovery answered 503"
        );
        fresh.refused("branch: too long");
        assert_eq!(
            fresh.detail,
            "discovery refused the registration: branch: too long"
        );
    }

    #[test]
    fn metrics_carry_help_type_and_the_cell_label() {
        let plugin = PluginView {
            status: PluginStatus::Busy,
            state_age_ms: Some(1500),
            busy_ms: Some(300),
            last_error_kind: None,
            last_error: None,
            state: None,
            resets: None,
        };
        let text = status_metrics("cell_id=\"a\"", &RegistrationStatus::default(), &plugin);
        assert!(
            text.contains("cellmesh_plugin_busy{cell_id=\"a\"} 1.0000"),
            "{text}"
        );
        assert!(text.contains("# TYPE cellmesh_registration_displacements_total counter"));
        assert!(text.contains("cellmesh_plugin_state_age_seconds{cell_id=\"a\"} 1.5000"));
    }
}
