//! The whole run, [`Report`], and its three forms: a readable summary,
//! JSON and JUnit XML.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use super::catalogue::CheckId;
use super::format::round_ms;
use super::result::{CheckResult, Status};

/// Counts of each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passed checks.
    pub pass: usize,
    /// Warnings.
    pub warn: usize,
    /// Failed checks.
    pub fail: usize,
    /// Skipped checks.
    pub skip: usize,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The plugin file checked.
    pub plugin: PathBuf,
    /// The tool that checked it (`cell-host 0.1.0`).
    pub tool: String,
    /// The contract versions this host runs (`cellmesh:cell@0.1.x`).
    pub contract: String,
    /// CPU deadline of one call, in milliseconds.
    pub call_timeout_ms: u64,
    /// Memory cap of one instance, in MiB.
    pub memory_limit_mb: u64,
    /// Whether every required check passed (warnings allowed).
    pub passed: bool,
    /// How many checks ended in each status.
    pub counts: Counts,
    /// Wall time of the run, in milliseconds.
    pub duration_ms: f64,
    /// Every check, in id order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Builds the report; `checks` are sorted by id.
    pub(crate) fn new(
        plugin: PathBuf,
        call_timeout_ms: u64,
        memory_limit_mb: u64,
        mut checks: Vec<CheckResult>,
        took: Duration,
    ) -> Self {
        checks.sort_by_key(|c| c.id);
        let mut counts = Counts::default();
        for check in &checks {
            match check.status {
                Status::Pass => counts.pass += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
                Status::Skip => counts.skip += 1,
            }
        }
        let passed = checks
            .iter()
            .all(|c| matches!(c.status, Status::Pass | Status::Warn) || !c.required);
        Self {
            plugin,
            tool: format!("cell-host {}", env!("CARGO_PKG_VERSION")),
            contract: format!(
                "cellmesh:cell@{}",
                crate::plugin::validate::SUPPORTED_VERSIONS
            ),
            call_timeout_ms,
            memory_limit_mb,
            passed,
            counts,
            duration_ms: round_ms(took),
            checks,
        }
    }

    /// The result of check `id`, if it is in the report.
    pub fn check(&self, id: CheckId) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id.id())
    }

    /// The readable summary printed by `cell-host conformance`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: conformance of {} to {}",
            self.tool,
            self.plugin.display(),
            self.contract
        );
        let _ = writeln!(
            out,
            "limits: CPU deadline {} ms per call, memory cap {} MiB per instance\n",
            self.call_timeout_ms, self.memory_limit_mb
        );
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{}  {:width$}  {}",
                check.status.label(),
                check.id,
                check.message
            );
            if let Some(fix) = check.fix.as_ref().filter(|_| check.status != Status::Pass) {
                let _ = writeln!(out, "      {:width$}  fix: {fix}", "");
            }
        }
        let c = self.counts;
        let _ = writeln!(
            out,
            "\nresult: {} - {} passed, {} warnings, {} failed, {} skipped ({} checks in {:.1} s)",
            if self.passed { "PASS" } else { "FAIL" },
            c.pass,
            c.warn,
            c.fail,
            c.skip,
            self.checks.len(),
            self.duration_ms / 1e3
        );
        out
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report as JUnit XML: one `<testsuite>` named after the plugin
    /// file, one `<testcase>` per check (named by its id); failures are
    /// `<failure>`, skips `<skipped>`, warnings pass with their text in
    /// `<system-out>`.
    pub fn to_junit(&self) -> Result<String, quick_junit::SerializeError> {
        let name = self
            .plugin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.plugin.display().to_string());
        let mut suite = TestSuite::new(name.clone());
        suite.set_time(Duration::from_secs_f64(self.duration_ms / 1e3));
        suite.add_properties([
            Property::new("plugin", self.plugin.display().to_string()),
            Property::new("tool", self.tool.clone()),
            Property::new("contract", self.contract.clone()),
            Property::new("call-timeout-ms", self.call_timeout_ms.to_string()),
            Property::new("memory-limit-mb", self.memory_limit_mb.to_string()),
        ]);
        for check in &self.checks {
            let advice = check
                .fix
                .as_deref()
                .map(|fix| format!("\nfix: {fix}"))
                .unwrap_or_default();
            let status = match check.status {
                Status::Pass | Status::Warn => TestCaseStatus::success(),
                Status::Fail => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(check.message.clone())
                        .set_type(check.id)
                        .set_description(format!("{}{advice}", check.message));
                    status
                }
                Status::Skip => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(check.message.clone());
                    status
                }
            };
            let mut case = TestCase::new(check.id, status);
            case.set_classname("cellmesh.conformance")
                .set_time(Duration::from_secs_f64(check.duration_ms / 1e3));
            if check.status == Status::Warn {
                case.set_system_out(format!("WARN: {}{advice}", check.message));
            } else if check.status == Status::Pass {
                case.set_system_out(check.message.clone());
            }
            suite.add_test_case(case);
        }
        let mut report = quick_junit::Report::new("cell-host conformance");
        report
            .set_time(Duration::from_secs_f64(self.duration_ms / 1e3))
            .add_test_suite(suite);
        report.to_string()
    }
}
