//! The JSON bodies the API reads, each as [`AppJson`](super::body::AppJson)
//! reads it: fields in the order they are checked, optional ones as
//! `Option`s (absent and `null` alike).

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::answers::ContractShape;
use crate::mesh::DEFAULT_PRIORITY;
use crate::plugin::bindings::Primitive;

/// `message_type` of a message that names none, on the HTTP API: the
/// original's `general`.
pub(crate) const DEFAULT_MESSAGE_TYPE: &str = "general";
/// `from_cell` of a `/sync` that names none (the original alpha's).
pub(crate) const UNKNOWN_PEER: &str = "unknown";

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

/// Metadata as a message is stored: as received, `{}` when none was sent
/// (the original's default).
pub(crate) fn metadata_or_default(metadata: Option<Value>) -> Value {
    metadata.unwrap_or_else(|| Value::Object(serde_json::Map::new()))
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

/// `POST /sync` (alpha): both fields optional, as the original's.
#[derive(Debug, Deserialize)]
pub(crate) struct PeerSyncRequest {
    /// Who asks; [`UNKNOWN_PEER`] when absent.
    pub from_cell: Option<String>,
    /// Its level; 0.0 when absent.
    pub consciousness_level: Option<f64>,
}

/// `POST /message`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageRequest {
    /// Sender.
    pub from_cell: String,
    /// Content.
    pub content: Text,
    /// Kind, as pure and cellmesh's hosts send it.
    pub message_type: Option<String>,
    /// Kind, as the original alpha read it (`/send_to_peer` sends it).
    #[serde(rename = "type")]
    pub sender_type: Option<String>,
    /// Priority; [`DEFAULT_PRIORITY`] when absent.
    pub priority: Option<String>,
    /// Any JSON, kept as received.
    pub metadata: Option<Value>,
}

impl MessageRequest {
    /// The message's kind: a pure-shaped cell reads `message_type` first, an
    /// alpha-shaped one the sender's `type` first (each as its original
    /// did), then the other; [`DEFAULT_MESSAGE_TYPE`] when neither is sent.
    pub(crate) fn take_message_type(&mut self, shape: ContractShape) -> String {
        let (first, second) = match shape {
            ContractShape::Pure => (&mut self.message_type, &mut self.sender_type),
            ContractShape::Alpha => (&mut self.sender_type, &mut self.message_type),
        };
        message_type_or_default(first.take().or_else(|| second.take()))
    }
}

/// `POST /register_peer` (alpha).
#[derive(Debug, Deserialize)]
pub(crate) struct RegisterPeerRequest {
    /// The peer's id.
    pub cell_id: String,
    /// Base URL of its API (a plain `http://` URL).
    pub endpoint: String,
    /// Its identity; `Cell ID` when absent (the original's).
    pub identity: Option<String>,
}

/// `POST /send_to_peer` (alpha).
#[derive(Debug, Deserialize)]
pub(crate) struct SendToPeerRequest {
    /// A hand-kept peer (`/register_peer`).
    pub peer_id: String,
    /// What to send: any JSON, passed on as it was sent (as the original).
    pub message: Value,
    /// Kind; `forwarded` when absent (the original's).
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
    fn each_shape_reads_its_originals_kind_field_first() {
        let request = |body: Value| read::<MessageRequest>(body).unwrap();
        let both = json!({"from_cell": "a", "content": "c",
                          "message_type": "mine", "type": "alphas"});
        assert_eq!(
            request(both.clone()).take_message_type(ContractShape::Pure),
            "mine"
        );
        assert_eq!(
            request(both).take_message_type(ContractShape::Alpha),
            "alphas"
        );
        let only_type = json!({"from_cell": "a", "content": "c", "type": "forwarded"});
        assert_eq!(
            request(only_type).take_message_type(ContractShape::Pure),
            "forwarded"
        );
        let neither = json!({"from_cell": "a", "content": "c"});
        assert_eq!(
            request(neither).take_message_type(ContractShape::Alpha),
            "general"
        );
        assert_eq!(metadata_or_default(None), json!({}));
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
