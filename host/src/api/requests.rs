//! The JSON bodies the API reads, each as [`AppJson`](super::body::AppJson)
//! reads it: fields in the order they are checked, optional ones as
//! `Option`s (absent and `null` alike).

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::mesh::{DEFAULT_MESSAGE_TYPE, DEFAULT_PRIORITY};
use crate::plugin::bindings::Primitive;

/// Free text the original cells accepted as any JSON value: a string as it
/// is, anything else as its JSON text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Text(match Value::deserialize(deserializer)? {
            Value::String(s) => s,
            other => other.to_string(),
        }))
    }
}

/// Primitive values a peer shares: a JSON object of numbers, kept in the
/// object's order.
#[derive(Debug, Clone)]
pub(crate) struct Context(pub Vec<Primitive>);

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Value::Object(values) = Value::deserialize(deserializer)? else {
            return Err(D::Error::invalid_type(
                Unexpected::Other("not an object"),
                &"an object of numbers",
            ));
        };
        values
            .into_iter()
            .map(|(name, value)| match value.as_f64() {
                Some(value) => Ok(Primitive { name, value }),
                None => Err(D::Error::custom(format_args!(
                    "context value `{name}` must be a number"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Context)
    }
}

/// Metadata as the plugin receives it: JSON text, `{}` when none was sent.
pub(crate) fn metadata_text(metadata: Option<&Value>) -> String {
    metadata.map_or_else(|| "{}".to_owned(), Value::to_string)
}

/// `POST /consciousness/sync` (pure).
#[derive(Debug, Deserialize)]
pub(crate) struct ConsciousnessSyncRequest {
    /// The peer's level.
    pub level: f64,
    /// Primitive values it shares.
    pub context: Option<Context>,
    /// Who asks (preferred over `peer_id`).
    pub from_cell: Option<String>,
    /// Who asks, as some clients name it.
    pub peer_id: Option<String>,
}

/// `POST /sync` (alpha).
#[derive(Debug, Deserialize)]
pub(crate) struct PeerSyncRequest {
    /// Who asks.
    pub from_cell: String,
    /// Its level.
    pub consciousness_level: f64,
}

/// `POST /message`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageRequest {
    /// Sender.
    pub from_cell: String,
    /// Content.
    pub content: Text,
    /// Kind; [`DEFAULT_MESSAGE_TYPE`] when absent.
    pub message_type: Option<String>,
    /// Priority; [`DEFAULT_PRIORITY`] when absent.
    pub priority: Option<String>,
    /// Any JSON, kept as received.
    pub metadata: Option<Value>,
}

/// `POST /register_peer` (alpha).
#[derive(Debug, Deserialize)]
pub(crate) struct RegisterPeerRequest {
    /// The peer's id.
    pub cell_id: String,
    /// Base URL of its API (`http://` or `https://`).
    pub endpoint: String,
    /// Its identity.
    pub identity: Option<String>,
}

/// `POST /send_to_peer` (alpha).
#[derive(Debug, Deserialize)]
pub(crate) struct SendToPeerRequest {
    /// A hand-kept or listed peer.
    pub peer_id: String,
    /// What to send.
    pub message: Text,
    /// Kind; [`DEFAULT_MESSAGE_TYPE`] when absent.
    #[serde(rename = "type")]
    pub message_type: Option<String>,
}

/// `POST /send`.
#[derive(Debug, Deserialize)]
pub(crate) struct SendRequest {
    /// The receiver, found through discovery.
    pub to_cell: String,
    /// Content.
    pub content: Text,
    /// Kind; [`DEFAULT_MESSAGE_TYPE`] when absent.
    pub message_type: Option<String>,
    /// Priority; [`DEFAULT_PRIORITY`] when absent.
    pub priority: Option<String>,
    /// Any JSON, passed on as text.
    pub metadata: Option<Value>,
}

/// `message_type`, or the default.
pub(crate) fn message_type_or_default(message_type: Option<String>) -> String {
    message_type.unwrap_or_else(|| DEFAULT_MESSAGE_TYPE.to_owned())
}

/// `priority`, or the default.
pub(crate) fn priority_or_default(priority: Option<String>) -> String {
    priority.unwrap_or_else(|| DEFAULT_PRIORITY.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    #[test]
    fn text_takes_any_json_value() {
        assert_eq!(read::<Text>(json!("hi")), Ok(Text("hi".into())));
        assert_eq!(
            read::<Text>(json!({"a": [1]})),
            Ok(Text(r#"{"a":[1]}"#.into()))
        );
    }

    #[test]
    fn context_is_an_object_of_numbers() {
        let Context(primitives) = read(json!({"awareness": 0.5, "b": 2})).unwrap();
        assert_eq!(primitives.len(), 2);
        assert_eq!(primitives[0].name, "awareness");
        assert_eq!(primitives[1].value, 2.0);
        assert_eq!(
            read::<Context>(json!({"a": "x"})).unwrap_err(),
            "context value `a` must be a number"
        );
        assert!(read::<Context>(json!([1])).is_err());
    }
}
