//! [`Failures`]: what a probe gathers while it tries many inputs, and when
//! it stops trying.

use crate::plugin::PluginError;

/// Failures gathered by a check, rendered as one line: the first in full,
/// the rest by the input that caused them.
#[derive(Default)]
pub(super) struct Failures(Vec<(String, String)>);

impl Failures {
    /// Records that `input` failed with `what`.
    pub(super) fn push(&mut self, input: impl Into<String>, what: impl Into<String>) {
        self.0.push((input.into(), what.into()));
    }

    /// Whether nothing failed.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `N of TOTAL NOUN failed; first input: what; also: other inputs`.
    pub(super) fn render(&self, total: usize, noun: &str) -> String {
        let (first_input, first_what) = &self.0[0];
        let mut text = format!(
            "{} of {total} {noun} failed; {first_input}: {first_what}",
            self.0.len()
        );
        if self.0.len() > 1 {
            let rest: Vec<&str> = self.0[1..].iter().map(|(i, _)| i.as_str()).collect();
            text.push_str(&format!("; also: {}", rest.join(", ")));
        }
        text
    }
}

/// Whether the suite should stop calling an export after this failure: a
/// timed-out export costs a whole deadline (or wall-clock bound) per call.
pub(super) fn stops_probing(error: &PluginError) -> bool {
    matches!(
        error,
        PluginError::Timeout { .. } | PluginError::WallTimeout { .. } | PluginError::Busy { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_is_given_in_full_the_rest_by_input() {
        let mut failures = Failures::default();
        failures.push("a", "broke");
        assert_eq!(
            failures.render(3, "inputs"),
            "1 of 3 inputs failed; a: broke"
        );
        failures.push("b", "broke too");
        failures.push("c", "broke as well");
        assert_eq!(
            failures.render(3, "inputs"),
            "3 of 3 inputs failed; a: broke; also: b, c"
        );
    }
}
