//! The intervals the cluster runs with and the time bounds the checks hold
//! it to.

use std::time::Duration;

/// Heartbeat interval the cells get in this test (`CELLMESH_HEARTBEAT_MS`).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Discovery's TTL in this test (`DISCOVERY_TTL`): three missed heartbeats,
/// the original's ratio (5 s and 15 s).
pub const TTL: Duration = Duration::from_secs(6);
/// Slack on "within one heartbeat interval" for the discovery restart: the
/// cells notice at their next heartbeat, then register at once; this covers
/// that request, the 404 before it and the poll period.
pub const JITTER: Duration = Duration::from_secs(1);
/// Slack on "within TTL" for expiry: the reaper's wake-up and the poll.
pub const EXPIRY_SLACK: Duration = Duration::from_secs(1);
/// cell-host's HTTP timeout to discovery (`DEFAULT_HTTP_TIMEOUT_MS`): a
/// heartbeat in flight across a partition can hang this long.
pub const CELL_HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// How much slower than its target a timed step may be before the test
/// fails: the verdict must not depend on machine speed (CI runs with both
/// cores busy), so every time bound is this many times its target. The
/// timing table still prints what was measured, against the target.
pub const SLACK_FACTOR: u32 = 5;

/// The bound a step is held to: `target` times [`SLACK_FACTOR`].
pub fn ci_bound(target: Duration) -> Duration {
    target * SLACK_FACTOR
}

/// The bound for "removed by expiry": not before the TTL (that is the
/// contract), and the slack on top of it [`SLACK_FACTOR`] times wider.
pub fn expiry_bound() -> Duration {
    TTL + EXPIRY_SLACK * SLACK_FACTOR
}

/// Replicas of pure in the scale step.
pub const REPLICAS: usize = 10;
/// Cells of the dense host (`DENSE_REPLICAS`): one container, one cell-host.
pub const DENSE_CELLS: usize = 50;
/// The dense host's ports in the network (`DENSE_PORT_RANGE`), one per cell.
pub const DENSE_PORTS: std::ops::RangeInclusive<u16> = 9100..=9149;
/// The dense host's admin API port in the network (`DENSE_ADMIN_PORT`).
pub const DENSE_ADMIN_PORT: u16 = 9000;
/// Budget of the checks from `compose up` to teardown (the 10
/// minutes). The image build is timed apart: on a clean machine it is a
/// release build of wasmtime for musl, which CI runs before the tests.
pub const BUDGET: Duration = Duration::from_secs(600);
