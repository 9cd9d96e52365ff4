//! [`SandboxStats`]: counters of a sandbox's life, and [`Resets`], every
//! replacement of its instance counted by [`ResetCause`] (an instance holds
//! the plugin's state, so a replacement is a state reset the operator
//! should see).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Why an instance was thrown away and replaced (its state lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResetCause {
    /// The call trapped (a panic, an `unreachable`, an out-of-bounds access).
    Trap,
    /// The call ran past its CPU deadline.
    CpuDeadline,
    /// The call ran past its wall-clock bound (it slept or waited).
    WallTimeout,
    /// The instance tried to grow its memory past the cap.
    Memory,
    /// The call's future was dropped mid-call (the runtime shutting down,
    /// or a caller of the crate-internal API giving up).
    Abandoned,
}

impl ResetCause {
    /// Every cause, in the order [`Resets::by_cause`] lists them.
    pub const ALL: [ResetCause; 5] = [
        ResetCause::Trap,
        ResetCause::CpuDeadline,
        ResetCause::WallTimeout,
        ResetCause::Memory,
        ResetCause::Abandoned,
    ];

    /// A short machine-readable name (a metric label value): `trap`,
    /// `cpu_deadline`, `wall_timeout`, `memory`, `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResetCause::Trap => "trap",
            ResetCause::CpuDeadline => "cpu_deadline",
            ResetCause::WallTimeout => "wall_timeout",
            ResetCause::Memory => "memory",
            ResetCause::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for ResetCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last reset: its cause, the export that was running, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastReset {
    /// Why the instance was replaced.
    pub cause: ResetCause,
    /// The export that was running (`instantiate` when it was the start).
    pub export: &'static str,
    /// When, as a UTC ISO-8601 string ending in `Z` (for display).
    pub at: String,
    /// When, on the monotonic clock (for ages: `at_instant.elapsed()`).
    pub at_instant: Instant,
}

/// A snapshot of a sandbox's resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resets {
    /// Every cause with its count, in [`ResetCause::ALL`] order.
    pub by_cause: [(ResetCause, u64); 5],
    /// The last reset, if there was one.
    pub last: Option<LastReset>,
}

impl Resets {
    /// All resets.
    pub fn total(&self) -> u64 {
        self.by_cause.iter().map(|(_, n)| n).sum()
    }

    /// The resets of one cause.
    pub fn count(&self, cause: ResetCause) -> u64 {
        self.by_cause[cause as usize].1
    }
}

/// Counters of a sandbox's life.
#[derive(Debug, Default)]
pub struct SandboxStats {
    /// Calls made (refused ones, [`Self::busy`], not included).
    pub calls: AtomicU64,
    /// Calls that failed: trap, CPU deadline, wall-clock bound, memory cap,
    /// instantiation, or a value the contract forbids.
    pub failures: AtomicU64,
    /// Instances created, the first included.
    pub instances: AtomicU64,
    /// The largest memory, in bytes, any instance has grown to: the sum of
    /// its linear memories, which is what the cap applies to.
    pub peak_memory_bytes: AtomicU64,
    /// Calls refused because the instance stayed busy past the wall-clock
    /// bound ([`PluginError::Busy`](super::PluginError::Busy)).
    pub busy: AtomicU64,
    /// `host.log` lines dropped by the rate limit.
    pub log_lines_dropped: AtomicU64,
    resets: [AtomicU64; 5],
    last_reset: Mutex<Option<LastReset>>,
}

impl SandboxStats {
    /// Every replacement of the instance so far, by cause, and the last.
    pub fn resets(&self) -> Resets {
        Resets {
            by_cause: ResetCause::ALL.map(|c| (c, self.resets[c as usize].load(Ordering::Relaxed))),
            last: self
                .last_reset
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Counts a replacement of the instance.
    pub(crate) fn record_reset(&self, cause: ResetCause, export: &'static str) {
        self.resets[cause as usize].fetch_add(1, Ordering::Relaxed);
        *self.last_reset.lock().unwrap_or_else(|p| p.into_inner()) = Some(LastReset {
            cause,
            export,
            at: now_iso(),
            at_instant: Instant::now(),
        });
    }
}

/// The current UTC time as the wire contract writes it
/// (`2026-01-02T12:21:45.755329Z`).
fn now_iso() -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(FORMAT)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_counted_by_cause_with_the_last_one() {
        let stats = SandboxStats::default();
        assert_eq!(stats.resets().total(), 0);
        assert_eq!(stats.resets().last, None);
        stats.record_reset(ResetCause::Trap, "sync");
        stats.record_reset(ResetCause::WallTimeout, "handle-message");
        let resets = stats.resets();
        assert_eq!(resets.total(), 2);
        assert_eq!(resets.count(ResetCause::Trap), 1);
        assert_eq!(resets.count(ResetCause::WallTimeout), 1);
        assert_eq!(resets.count(ResetCause::Memory), 0);
        let last = resets.last.expect("a last reset");
        assert_eq!(
            (last.cause, last.export),
            (ResetCause::WallTimeout, "handle-message")
        );
        assert!(
            last.at.ends_with('Z') && last.at.contains('T'),
            "{}",
            last.at
        );
        for (i, cause) in ResetCause::ALL.iter().enumerate() {
            assert_eq!(*cause as usize, i);
        }
    }
}
