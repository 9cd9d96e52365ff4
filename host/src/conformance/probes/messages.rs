//! CM08: `handle-message` with messages of many shapes: empty, 1 MiB,
//! unicode, control characters, metadata that is not JSON.

use crate::conformance::catalogue::CheckId;
use crate::conformance::result::CheckResult;
use crate::plugin::bindings::Message;

use super::failures::{Failures, stops_probing};
use super::prober::Prober;

/// A typical message.
pub(super) fn message(content: &str, metadata: &str) -> Message {
    Message {
        from_cell: "conformance".into(),
        content: content.into(),
        message_type: "text".into(),
        priority: "normal".into(),
        metadata: metadata.into(),
    }
}

/// The messages CM08 sends, by name.
fn message_shapes() -> Vec<(&'static str, Message)> {
    let mib: String = "cellmesh conformance 0123456789 "
        .chars()
        .cycle()
        .take(1 << 20)
        .collect();
    let control: String = (0u8..0x20)
        .chain([0x7f])
        .map(char::from)
        .collect::<String>();
    vec![
        (
            "an empty message (every field empty)",
            Message {
                from_cell: String::new(),
                content: String::new(),
                message_type: String::new(),
                priority: String::new(),
                metadata: String::new(),
            },
        ),
        ("a plain text message", message("hello", "{}")),
        ("a 1 MiB message", message(&mib, "{}")),
        (
            "a unicode message",
            message(
                "h\u{e9}llo \u{4e16}\u{754c} \u{1f30d} \u{202e}rtl\u{202c} e\u{301} \u{200d}\u{fe0f}",
                r#"{"lang":"\u00e9\u4e16"}"#,
            ),
        ),
        (
            "control characters in every field",
            Message {
                from_cell: control.clone(),
                content: format!("{control}\u{1b}[31mred\u{1b}[0m"),
                message_type: control.clone(),
                priority: control.clone(),
                metadata: control.clone(),
            },
        ),
        ("metadata that is not JSON", message("hi", "{not json")),
        ("truncated JSON metadata", message("hi", r#"{"a": [1, 2"#)),
        (
            "JSON content",
            message(r#"{"command":"status","n":1}"#, "null"),
        ),
        (
            "an unusual type and priority",
            Message {
                message_type: "\u{1f4a5}".repeat(256),
                priority: "urgent".into(),
                ..message("hi", "{}")
            },
        ),
    ]
}

/// CM08: `handle-message` with many shapes of message.
pub(crate) async fn messages(p: &Prober) -> CheckResult {
    let id = CheckId::Messages;
    let shapes = message_shapes();
    let total = shapes.len();
    let mut failures = Failures::default();
    for (name, msg) in &shapes {
        if let Err(e) = p
            .call(id, "handle-message", p.sandbox.handle_message(msg))
            .await
        {
            let stop = stops_probing(&e);
            failures.push(*name, e.to_string());
            if stop {
                break;
            }
        }
    }
    if failures.is_empty() {
        CheckResult::pass(
            id,
            format!(
                "{total} messages handled: empty, 1 MiB, unicode, control characters, metadata \
                 that is not JSON, ..."
            ),
        )
    } else {
        CheckResult::fail(id, failures.render(total, "messages"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn shapes_include_the_documented_ones() {
        let shapes = message_shapes();
        assert!(shapes.iter().any(|(_, m)| m.content.len() == 1 << 20));
        assert!(shapes.iter().any(|(_, m)| m.content.is_empty()));
        assert!(
            shapes
                .iter()
                .any(|(_, m)| serde_json::from_str::<Value>(&m.metadata).is_err())
        );
    }
}
