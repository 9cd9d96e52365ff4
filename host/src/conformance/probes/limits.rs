//! CM13, CM14 and CM18: every call the suite made (the prober's log),
//! judged against the CPU deadline, the memory cap and the wall-clock
//! bound.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::plugin::PluginError;

use crate::conformance::catalogue::CheckId;
use crate::conformance::format::{human_bytes, human_ms};
use crate::conformance::result::CheckResult;

use super::prober::CallRecord;

/// CM13: every recorded call against the CPU deadline.
pub(crate) fn cpu_deadline(calls: &[CallRecord], deadline: Duration) -> CheckResult {
    let id = CheckId::CpuDeadline;
    let timeouts: BTreeMap<(&'static str, &'static str), usize> =
        calls.iter().fold(BTreeMap::new(), |mut acc, c| {
            if let Some(PluginError::Timeout { .. }) = &c.failure {
                *acc.entry((c.export, c.check.id())).or_default() += 1;
            }
            acc
        });
    if !timeouts.is_empty() {
        let first = calls
            .iter()
            .find_map(|c| match &c.failure {
                Some(e @ PluginError::Timeout { .. }) => Some(e.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        let places: Vec<String> = timeouts
            .iter()
            .map(|((export, check), n)| format!("`{export}` in {check} ({n}x)"))
            .collect();
        return CheckResult::fail(id, format!("{first}; timed out: {}", places.join(", ")));
    }
    let slowest = calls.iter().max_by_key(|c| c.elapsed);
    let text = match slowest {
        Some(c) => format!(
            "{} calls; slowest `{}` ({}) took {} of the {} deadline",
            calls.len(),
            c.export,
            c.check.id(),
            human_ms(c.elapsed),
            human_ms(deadline)
        ),
        None => "no calls made".to_owned(),
    };
    match slowest {
        Some(c) if c.elapsed > deadline / 2 => CheckResult::warn(
            id,
            format!("{text}: over half the deadline"),
            "make that call cheaper: on a busier host it may hit the deadline",
        ),
        _ => CheckResult::pass(id, text),
    }
}

/// CM18: every recorded call against the wall-clock bound: a call that
/// ran past it (slept, waited, hung) or found the instance busy fails.
pub(crate) fn wall_clock(calls: &[CallRecord], bound: Duration) -> CheckResult {
    let id = CheckId::WallClock;
    let over = |c: &&CallRecord| {
        matches!(
            c.failure,
            Some(PluginError::WallTimeout { .. } | PluginError::Busy { .. })
        )
    };
    let stopped: BTreeMap<(&'static str, &'static str), usize> =
        calls
            .iter()
            .filter(over)
            .fold(BTreeMap::new(), |mut acc, c| {
                *acc.entry((c.export, c.check.id())).or_default() += 1;
                acc
            });
    if let Some(first) = calls.iter().find(over) {
        let places: Vec<String> = stopped
            .iter()
            .map(|((export, check), n)| format!("`{export}` in {check} ({n}x)"))
            .collect();
        let first = first
            .failure
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return CheckResult::fail(id, format!("{first}; stopped: {}", places.join(", ")));
    }
    let text = match calls.iter().max_by_key(|c| c.elapsed) {
        Some(c) => format!(
            "{} calls; slowest `{}` ({}) took {} of the {} wall-clock bound",
            calls.len(),
            c.export,
            c.check.id(),
            human_ms(c.elapsed),
            human_ms(bound)
        ),
        None => "no calls made".to_owned(),
    };
    CheckResult::pass(id, text)
}

/// CM14: every recorded call against the memory cap.
pub(crate) fn memory_cap(calls: &[CallRecord], peak_bytes: u64, cap_mib: u64) -> CheckResult {
    let id = CheckId::MemoryCap;
    let hits: Vec<&CallRecord> = calls
        .iter()
        .filter(|c| matches!(c.failure, Some(PluginError::MemoryExceeded { .. })))
        .collect();
    if let Some(first) = hits.first() {
        let mut places: Vec<String> = hits
            .iter()
            .map(|c| format!("`{}` in {}", c.export, c.check.id()))
            .collect();
        places.dedup();
        return CheckResult::fail(
            id,
            format!(
                "{}; {} calls hit the cap: {}",
                first
                    .failure
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
                hits.len(),
                places.join(", ")
            ),
        );
    }
    CheckResult::pass(
        id,
        format!(
            "largest instance memory (all linear memories) {} of the {cap_mib} MiB cap",
            human_bytes(peak_bytes)
        ),
    )
}
