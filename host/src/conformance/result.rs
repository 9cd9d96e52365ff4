//! One check's outcome: [`Status`] and [`CheckResult`], which every check
//! returns and the report collects.

use std::time::Duration;

use serde::Serialize;

use super::catalogue::CheckId;
use super::format::{one_line, round_ms};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The plugin meets the rule.
    Pass,
    /// Worth knowing, never a failure.
    Warn,
    /// The plugin breaks the rule.
    Fail,
    /// Not run because a check it depends on failed.
    Skip,
}

impl Status {
    /// `PASS`, `WARN`, `FAIL` or `SKIP`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Stable id, e.g. `CM08-messages`.
    pub id: &'static str,
    /// What the check verifies, in a few words.
    pub title: &'static str,
    /// Whether a failure fails the suite (advisory checks only warn).
    pub required: bool,
    /// The outcome.
    pub status: Status,
    /// One line saying why.
    pub message: String,
    /// For a failure or a warning: how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Time spent on the check, in milliseconds.
    pub duration_ms: f64,
}

impl CheckResult {
    fn new(id: CheckId, status: Status, message: String, fix: Option<String>) -> Self {
        let spec = id.spec();
        Self {
            id: spec.id,
            title: spec.title,
            required: spec.required,
            status,
            message: one_line(&message),
            fix,
            duration_ms: 0.0,
        }
    }

    /// A passed check.
    pub fn pass(id: CheckId, message: impl Into<String>) -> Self {
        Self::new(id, Status::Pass, message.into(), None)
    }

    /// A failed check, with the check's standard advice.
    pub fn fail(id: CheckId, message: impl Into<String>) -> Self {
        Self::new(id, Status::Fail, message.into(), Some(id.fix().to_owned()))
    }

    /// A warning, with specific advice.
    pub fn warn(id: CheckId, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(id, Status::Warn, message.into(), Some(fix.into()))
    }

    /// A check not run because `blocker` failed.
    pub fn skip(id: CheckId, blocker: CheckId, why: &str) -> Self {
        Self::new(
            id,
            Status::Skip,
            format!("not run: prerequisite {} failed ({why})", blocker.id()),
            None,
        )
    }

    /// Replaces the advice.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    /// Records how long the check took.
    pub fn timed(mut self, took: Duration) -> Self {
        self.duration_ms = round_ms(took);
        self
    }
}
