//! Size limits on every value a plugin returns, and the checks that hold
//! its answers to them. A value past a limit is refused with
//! [`PluginError::InvalidOutput`] naming the export, the field and the limit
//! (the instance is kept: it did nothing unsafe). The manifest's limits
//! (checked at load, see [`super::validate`]) are discovery's where the
//! field reaches discovery, and these elsewhere.
//!
//! A value can never be larger than the instance's memory cap in the
//! first place (it is copied out of the plugin's memory); these limits
//! keep what the host stores and serves far smaller than that.

use cellmesh_wire::limits::TEXT_MAX_LEN;

use super::bindings::{CapabilityError, CellState, Primitive, Reply, SyncOutcome};
use super::error::PluginError;

/// Largest `content` of a reply to a message, in bytes: as large as the
/// largest message the cell API accepts by default (256 KiB), so a plugin
/// may echo any message it is given; replies are kept with the last 100
/// messages, so this bounds what they hold.
pub const REPLY_CONTENT_MAX_BYTES: usize = 256 * 1024;
/// Largest output of `invoke`, in bytes.
pub const INVOKE_OUTPUT_MAX_BYTES: usize = 1024 * 1024;
/// Largest text of a capability error, in bytes.
pub const ERROR_TEXT_MAX_BYTES: usize = 4096;
/// Longest short text a plugin returns (message types, primitive and label
/// names, manifest text fields), in characters: discovery's text limit.
pub const SHORT_TEXT_MAX_CHARS: usize = TEXT_MAX_LEN;
/// Largest label value, in bytes.
pub const LABEL_VALUE_MAX_BYTES: usize = 1024;
/// Largest capability description, in bytes.
pub const DESCRIPTION_MAX_BYTES: usize = 1024;
/// Largest capability `example-input`, in bytes.
pub const EXAMPLE_INPUT_MAX_BYTES: usize = 64 * 1024;
/// Most primitives, labels or other list entries in one value.
pub const LIST_MAX: usize = 64;

/// The problem with one field, if it is too long.
pub(crate) fn too_long_bytes(field: &str, value: &str, max: usize) -> Option<String> {
    (value.len() > max).then(|| format!("{field} is {} bytes; the limit is {max}", value.len()))
}

/// The problem with one short text field, if it is too long.
pub(crate) fn too_long_chars(field: &str, value: &str) -> Option<String> {
    let chars = value.chars().count();
    (chars > SHORT_TEXT_MAX_CHARS)
        .then(|| format!("{field} is {chars} characters; the limit is {SHORT_TEXT_MAX_CHARS}"))
}

/// The problem with a list, if it has too many entries.
pub(crate) fn too_many(field: &str, len: usize, max: usize) -> Option<String> {
    (len > max).then(|| format!("{field} has {len} entries; the limit is {max}"))
}

/// Problems of a list of primitives (count and names).
pub(crate) fn primitive_problems(field: &str, primitives: &[Primitive]) -> Vec<String> {
    let mut problems: Vec<String> = too_many(field, primitives.len(), LIST_MAX)
        .into_iter()
        .collect();
    problems.extend(
        primitives.iter().filter_map(|p| {
            too_long_chars(&format!("the name of a primitive in {field}"), &p.name)
        }),
    );
    problems
}

/// Problems of a list of labels (count, names, values).
pub(crate) fn label_problems(field: &str, labels: &[(String, String)]) -> Vec<String> {
    let mut problems: Vec<String> = too_many(field, labels.len(), LIST_MAX)
        .into_iter()
        .collect();
    for (key, value) in labels {
        problems.extend(too_long_chars(&format!("label name in {field}"), key));
        problems.extend(too_long_bytes(
            &format!("the value of label {:?} in {field}", truncate(key)),
            value,
            LABEL_VALUE_MAX_BYTES,
        ));
    }
    problems
}

/// The first problem as an error of `export`.
fn refuse(export: &'static str, problems: Vec<String>) -> Result<(), PluginError> {
    match problems.into_iter().next() {
        None => Ok(()),
        Some(detail) => Err(PluginError::InvalidOutput { export, detail }),
    }
}

/// `handle-message`'s reply.
pub(crate) fn check_reply(reply: &Option<Reply>) -> Result<(), PluginError> {
    let Some(reply) = reply else { return Ok(()) };
    let problems = [
        too_long_bytes(
            "reply field `content`",
            &reply.content,
            REPLY_CONTENT_MAX_BYTES,
        ),
        too_long_chars("reply field `message-type`", &reply.message_type),
    ];
    refuse("handle-message", problems.into_iter().flatten().collect())
}

/// `sync`'s outcome.
pub(crate) fn check_sync(outcome: &SyncOutcome) -> Result<(), PluginError> {
    refuse(
        "sync",
        label_problems("sync-outcome field `labels`", &outcome.labels),
    )
}

/// `state`'s answer.
pub(crate) fn check_state(state: &CellState) -> Result<(), PluginError> {
    refuse(
        "state",
        primitive_problems("cell-state field `primitives`", &state.primitives),
    )
}

/// `invoke`'s answer.
pub(crate) fn check_invoke(output: &Result<String, CapabilityError>) -> Result<(), PluginError> {
    let problem = match output {
        Ok(text) => too_long_bytes("the output", text, INVOKE_OUTPUT_MAX_BYTES),
        Err(
            CapabilityError::UnknownCapability(text)
            | CapabilityError::InvalidInput(text)
            | CapabilityError::Failed(text),
        ) => too_long_bytes("the capability error's text", text, ERROR_TEXT_MAX_BYTES),
    };
    refuse("invoke", problem.into_iter().collect())
}

/// The first 32 characters of `text`, for messages.
fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding: replies, invoke output and state had no size limit.
    #[test]
    fn every_value_a_plugin_returns_has_a_size_limit_named_in_the_error() {
        let reply = Some(Reply {
            content: "x".repeat(REPLY_CONTENT_MAX_BYTES + 1),
            message_type: "ack".into(),
        });
        let error = check_reply(&reply).unwrap_err().to_string();
        assert_eq!(
            error,
            "plugin returned an invalid value from `handle-message`: reply field `content` is \
             262145 bytes; the limit is 262144"
        );
        assert!(check_reply(&None).is_ok());

        let output = Ok("x".repeat(INVOKE_OUTPUT_MAX_BYTES + 1));
        let error = check_invoke(&output).unwrap_err().to_string();
        assert!(
            error.contains("`invoke`") && error.contains("the limit is 1048576"),
            "{error}"
        );
        assert!(check_invoke(&Err(CapabilityError::Failed("no".into()))).is_ok());

        let state = CellState {
            consciousness_level: 1.0,
            primitives: (0..65)
                .map(|i| Primitive {
                    name: format!("p{i}"),
                    value: 0.0,
                })
                .collect(),
        };
        let error = check_state(&state).unwrap_err().to_string();
        assert!(
            error.contains("`state`") && error.contains("65 entries; the limit is 64"),
            "{error}"
        );

        let outcome = SyncOutcome {
            old_level: 0.0,
            new_level: 0.0,
            delta: 0.0,
            primitives_updated: false,
            labels: vec![("purity".into(), "x".repeat(LABEL_VALUE_MAX_BYTES + 1))],
        };
        let error = check_sync(&outcome).unwrap_err().to_string();
        assert!(error.contains("label \"purity\""), "{error}");
    }
}
