//! [`SandboxLimits`]: every bound a sandbox's calls and instances run
//! under, each with its default as a named constant.
//!
//! | bound | default | what happens past it |
//! |---|---|---|
//! | CPU deadline of a call ([`SandboxLimits::call_timeout`]) | 500 ms | the call is interrupted: [`PluginError::Timeout`](super::PluginError::Timeout), the instance is replaced |
//! | sends per call ([`SandboxLimits::send_budget_count`]) | 8 | `send-message` answers `refused` ("send budget spent") |
//! | time in sends per call ([`SandboxLimits::send_budget_time`]) | 1 s | the same |
//! | wall-clock bound of a call ([`SandboxLimits::call_wall_timeout`]) | CPU deadline + send time + 250 ms = 1.75 s | the call is dropped: [`PluginError::WallTimeout`](super::PluginError::WallTimeout), the instance is replaced |
//! | wait for the instance | the wall-clock bound | [`PluginError::Busy`](super::PluginError::Busy) |
//! | memory of an instance, all linear memories together ([`SandboxLimits::memory_limit_bytes`]) | 64 MiB | the growth fails: [`PluginError::MemoryExceeded`](super::PluginError::MemoryExceeded) |
//! | core instances, tables, memories per instance | 64, 64, 8 | instantiation fails |
//! | `host.log` lines ([`SandboxLimits::log_lines_per_second`], [`SandboxLimits::log_burst`]) | 100/s, burst 200 | lines are dropped and counted, the count logged once per second |
//!
//! The sizes of values a plugin returns are bounded too, by constants in
//! [`super::output`].

use std::time::Duration;

/// Limits every call and instance of a sandbox runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// CPU deadline of one call: time the plugin spends running (time the
    /// host spends in `send-message` on its behalf is credited back).
    pub call_timeout: Duration,
    /// Wall-clock bound of one call, whatever the plugin does (runs,
    /// sleeps in `wasi:io/poll`, waits on `send-message`); also the bound
    /// on waiting for the instance. Past it the call is dropped and the
    /// instance replaced.
    pub call_wall_timeout: Duration,
    /// Most `send-message` calls one export call may make.
    pub send_budget_count: u32,
    /// Most time one export call may spend in `send-message`, all sends
    /// together.
    pub send_budget_time: Duration,
    /// Memory cap of one instance, in bytes: the sum of all its linear
    /// memories.
    pub memory_limit_bytes: usize,
    /// Most core instances one instance of the component may create.
    pub max_instances: usize,
    /// Most tables one instance of the component may create.
    pub max_tables: usize,
    /// Most linear memories one instance of the component may create.
    pub max_memories: usize,
    /// `host.log` lines per second one instance may write (the rate at
    /// which its token bucket refills).
    pub log_lines_per_second: u32,
    /// `host.log` lines one instance may write in a burst (the bucket's
    /// size).
    pub log_burst: u32,
}

impl SandboxLimits {
    /// Default CPU deadline of one call.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(500);
    /// Default memory cap of one instance, in MiB.
    pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 64;
    /// Default number of sends one call may make.
    pub const DEFAULT_SEND_BUDGET_COUNT: u32 = 8;
    /// Default time one call may spend sending.
    pub const DEFAULT_SEND_BUDGET_TIME: Duration = Duration::from_secs(1);
    /// What the wall-clock bound adds to the CPU deadline and the send
    /// time: instantiation, WASI calls and scheduling.
    pub const WALL_MARGIN: Duration = Duration::from_millis(250);
    /// Default wall-clock bound of one call: the default CPU deadline, send
    /// time and margin (1.75 s).
    pub const DEFAULT_CALL_WALL_TIMEOUT: Duration =
        Self::wall_timeout_for(Self::DEFAULT_CALL_TIMEOUT, Self::DEFAULT_SEND_BUDGET_TIME);
    /// Default bound on the core instances of one instance.
    pub const DEFAULT_MAX_INSTANCES: usize = 64;
    /// Default bound on the tables of one instance.
    pub const DEFAULT_MAX_TABLES: usize = 64;
    /// Default bound on the linear memories of one instance.
    pub const DEFAULT_MAX_MEMORIES: usize = 8;
    /// Default `host.log` lines per second.
    pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 100;
    /// Default `host.log` burst.
    pub const DEFAULT_LOG_BURST: u32 = 200;

    /// The wall-clock bound derived from a CPU deadline and a send time:
    /// their sum plus [`Self::WALL_MARGIN`].
    pub const fn wall_timeout_for(call_timeout: Duration, send_time: Duration) -> Duration {
        call_timeout
            .saturating_add(send_time)
            .saturating_add(Self::WALL_MARGIN)
    }

    /// Limits from a CPU deadline and a memory cap in MiB (a cap too large
    /// for this machine's address space saturates); the wall-clock bound is
    /// derived ([`Self::wall_timeout_for`]), the rest are the defaults.
    pub fn new(call_timeout: Duration, memory_limit_mib: u64) -> Self {
        Self {
            call_timeout,
            call_wall_timeout: Self::wall_timeout_for(call_timeout, Self::DEFAULT_SEND_BUDGET_TIME),
            send_budget_count: Self::DEFAULT_SEND_BUDGET_COUNT,
            send_budget_time: Self::DEFAULT_SEND_BUDGET_TIME,
            memory_limit_bytes: usize::try_from(memory_limit_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_instances: Self::DEFAULT_MAX_INSTANCES,
            max_tables: Self::DEFAULT_MAX_TABLES,
            max_memories: Self::DEFAULT_MAX_MEMORIES,
            log_lines_per_second: Self::DEFAULT_LOG_LINES_PER_SECOND,
            log_burst: Self::DEFAULT_LOG_BURST,
        }
    }

    /// The same limits with another send budget; the wall-clock bound is
    /// derived again from the CPU deadline and `time` (set it afterwards
    /// with [`Self::with_wall_timeout`] to choose it).
    #[must_use]
    pub fn with_send_budget(mut self, count: u32, time: Duration) -> Self {
        self.send_budget_count = count;
        self.send_budget_time = time;
        self.call_wall_timeout = Self::wall_timeout_for(self.call_timeout, time);
        self
    }

    /// The same limits with the wall-clock bound `timeout` (`None` keeps
    /// the derived one).
    #[must_use]
    pub fn with_wall_timeout(mut self, timeout: Option<Duration>) -> Self {
        if let Some(timeout) = timeout {
            self.call_wall_timeout = timeout;
        }
        self
    }

    /// The memory cap in MiB, for messages.
    pub fn memory_limit_mib(&self) -> u64 {
        (self.memory_limit_bytes / (1024 * 1024)) as u64
    }
}

impl Default for SandboxLimits {
    /// 500 ms CPU and 1.75 s wall clock per call, 8 sends in 1 s, 64 MiB
    /// per instance.
    fn default() -> Self {
        Self::new(Self::DEFAULT_CALL_TIMEOUT, Self::DEFAULT_MEMORY_LIMIT_MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_wall_clock_bound_is_cpu_plus_sends_plus_margin() {
        let limits = SandboxLimits::default();
        assert_eq!(limits.call_wall_timeout, Duration::from_millis(1_750));
        assert_eq!(
            limits.call_wall_timeout,
            SandboxLimits::DEFAULT_CALL_WALL_TIMEOUT
        );
        let limits = SandboxLimits::new(Duration::from_secs(2), 16)
            .with_send_budget(3, Duration::from_millis(500));
        assert_eq!(limits.call_wall_timeout, Duration::from_millis(2_750));
        let limits = limits.with_wall_timeout(Some(Duration::from_secs(9)));
        assert_eq!(limits.call_wall_timeout, Duration::from_secs(9));
        assert_eq!(limits.with_wall_timeout(None), limits);
    }
}
