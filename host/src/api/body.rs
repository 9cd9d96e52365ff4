//! [`AppJson`]: a JSON request body read into a typed request, whose
//! rejection is an [`ApiError`] in the API's own format (400; 413 when too
//! large). A route that answers 422 instead, as the original pure did,
//! takes `Result<AppJson<T>, ApiError>` and maps the error with
//! [`ApiError::unprocessable`].
//!
//! serde's own messages do not say which field is at fault (`invalid type:
//! string "high", expected f64`); the API's do (`field
//! `consciousness_level` must be a number`). So the body is parsed as JSON
//! first, then handed to the request type one declared field at a time, in
//! the order the type declares them: the first field that is missing or
//! mistyped is the one named. A `null` counts as absent, as the original
//! cells treated it.
//!
//! Rules for request types: plain `#[derive(Deserialize)]` structs whose
//! optional fields are `Option`s (`#[serde(default)]` is not honoured: an
//! absent non-`Option` field is missing); unknown keys are ignored.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::value::{BorrowedStrDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;
use serde_json::{Map, Value};

use super::ApiError;

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BodyError {
    /// There is no body (or only white space).
    #[error("No data provided: the body must be a JSON object")]
    Empty,
    /// The body is not JSON, or was not sent as JSON.
    #[error("invalid JSON body: {0}")]
    Syntax(String),
    /// The body exceeds the limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The body is JSON but not an object.
    #[error("the body must be a JSON object")]
    NotAnObject,
    /// A required field is absent or `null` (the original alpha's words).
    #[error("Missing required field: {0}")]
    Missing(String),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    Mistyped {
        /// The field, by its wire name.
        field: String,
        /// What it must be (`a string`, `a number`).
        expected: String,
    },
    /// A field's value is refused for a reason its type states.
    #[error("{0}")]
    Invalid(String),
}

impl BodyError {
    /// Names `field` as the one at fault, unless a field is named already.
    fn in_field(self, field: &str) -> Self {
        match self {
            BodyError::Mistyped { field: f, expected } if f.is_empty() => BodyError::Mistyped {
                field: field.to_owned(),
                expected,
            },
            other => other,
        }
    }

    /// A short machine-readable kind, the `kind` of the error answer.
    pub fn kind(&self) -> &'static str {
        match self {
            BodyError::Empty => "empty_body",
            BodyError::Syntax(_) => "invalid_json",
            BodyError::TooLarge(_) => "body_too_large",
            BodyError::NotAnObject => "not_an_object",
            BodyError::Missing(_) => "missing_field",
            BodyError::Mistyped { .. } => "invalid_field",
            BodyError::Invalid(_) => "invalid_value",
        }
    }

    fn from_rejection(rejection: &BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge(rejection.body_text())
        } else {
            BodyError::Syntax(rejection.body_text())
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or
/// `application/*+json`, parameters allowed), as axum's `Json` requires.
fn declares_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl de::Error for BodyError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        BodyError::Invalid(msg.to_string())
    }

    fn invalid_type(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        // The field is named by `in_field` on the way out.
        let expected = match expected.to_string().as_str() {
            "f64" | "f32" | "u64" | "i64" | "u32" | "i32" | "u16" | "i16" | "u8" | "i8" => {
                "a number".to_owned()
            }
            other => other.to_owned(),
        };
        BodyError::Mistyped {
            field: String::new(),
            expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        BodyError::Missing(field.to_owned())
    }
}

/// A JSON object body read into `T`; a missing or malformed body answers
/// 400 (413 when too large) in the API's format.
#[derive(Debug)]
pub(crate) struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = declares_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| BodyError::from_rejection(&rejection))?;
        Ok(AppJson(read_body(&bytes, json)?))
    }
}

/// Reads `T` from a body: present, declared as JSON, a JSON object.
fn read_body<T: DeserializeOwned>(bytes: &[u8], declared_json: bool) -> Result<T, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    if !declared_json {
        return Err(BodyError::Syntax(
            "the request must say `Content-Type: application/json`".into(),
        ));
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(fields)) => from_fields(fields),
        Ok(_) => Err(BodyError::NotAnObject),
        Err(error) => Err(BodyError::Syntax(error.to_string())),
    }
}

/// Reads `T` from the fields of a JSON object, naming the first field at
/// fault in declaration order.
fn from_fields<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, BodyError> {
    T::deserialize(Fields(fields))
}

/// The body's fields, handed to a struct in its declared order.
struct Fields(Map<String, Value>);

impl<'de> de::Deserializer<'de> for Fields {
    type Error = BodyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        JsonValue(Value::Object(self.0)).deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, BodyError> {
        visitor.visit_map(DeclaredFields {
            names: fields.iter(),
            body: self.0,
            current: None,
        })
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Every declared field in order, present or not, so that the first field
/// at fault is the one reported (serde reports missing fields last).
struct DeclaredFields {
    names: std::slice::Iter<'static, &'static str>,
    body: Map<String, Value>,
    current: Option<Field>,
}

impl<'de> MapAccess<'de> for DeclaredFields {
    type Error = BodyError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, BodyError> {
        let Some(&name) = self.names.next() else {
            return Ok(None);
        };
        self.current = Some(Field {
            name,
            value: self.body.remove(name).filter(|v| !v.is_null()),
        });
        seed.deserialize(BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, BodyError> {
        match self.current.take() {
            Some(field) => seed.deserialize(field),
            None => Err(BodyError::Invalid("a value was read before its key".into())),
        }
    }
}

/// One declared field: its value, or `None` when absent or `null`.
struct Field {
    name: &'static str,
    value: Option<Value>,
}

impl<'de> de::Deserializer<'de> for Field {
    type Error = BodyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        match self.value {
            None => Err(BodyError::Missing(self.name.to_owned())),
            Some(value) => JsonValue(value)
                .deserialize_any(visitor)
                .map_err(|e| e.in_field(self.name)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        match self.value {
            None => visitor.visit_none(),
            Some(value) => visitor
                .visit_some(JsonValue(value))
                .map_err(|e| e.in_field(self.name)),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// A JSON value as a deserializer whose type errors come through
/// [`BodyError`] (serde_json's own deserializer reports them as text).
struct JsonValue(Value);

impl<'de> IntoDeserializer<'de, BodyError> for JsonValue {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for JsonValue {
    type Error = BodyError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, Some(f)) => visitor.visit_f64(f),
                (None, None, None) => Err(BodyError::Invalid(format!("unreadable number {n}"))),
            },
            Value::String(s) => visitor.visit_string(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(JsonValue));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Value::Object(map) => {
                let mut entries =
                    MapDeserializer::new(map.into_iter().map(|(k, v)| (k, JsonValue(v))));
                let value = visitor.visit_map(&mut entries)?;
                entries.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, BodyError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            value => visitor.visit_some(JsonValue(value)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, BodyError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Probe {
        name: String,
        level: f64,
        #[serde(rename = "type")]
        kind: Option<String>,
        extra: Option<Value>,
    }

    fn read(body: Value) -> Result<Probe, String> {
        let Value::Object(fields) = body else {
            unreachable!("tests pass objects")
        };
        from_fields(fields).map_err(|e| e.to_string())
    }

    #[test]
    fn a_well_formed_body_reads_and_ignores_unknown_keys() {
        let probe = read(json!({"name": "a", "level": 2, "type": null, "other": [1],
                                "extra": {"k": [1, -2, 1.5, "s", null, true]}}))
        .unwrap();
        assert_eq!(
            probe,
            Probe {
                name: "a".into(),
                level: 2.0,
                kind: None,
                extra: Some(json!({"k": [1, -2, 1.5, "s", null, true]})),
            }
        );
    }

    #[test]
    fn errors_name_the_first_field_at_fault_in_declaration_order() {
        assert_eq!(
            read(json!({"level": 1})),
            Err("Missing required field: name".into())
        );
        assert_eq!(
            read(json!({"name": null, "level": 1})),
            Err("Missing required field: name".into())
        );
        assert_eq!(
            read(json!({"name": "a", "level": "high"})),
            Err("field `level` must be a number".into())
        );
        assert_eq!(
            read(json!({"name": "a", "level": 1, "type": 3})),
            Err("field `type` must be a string".into())
        );
        // A missing field declared first wins over a mistyped one after it,
        // though serde alone would report the mistyped one.
        assert_eq!(
            read(json!({"level": 1, "type": 3})),
            Err("Missing required field: name".into())
        );
        assert_eq!(
            read(json!({"name": 7, "type": 3})),
            Err("field `name` must be a string".into())
        );
    }

    #[test]
    fn a_body_must_be_present_declared_as_json_and_an_object() {
        let body = |bytes: &[u8], json: bool| read_body::<Probe>(bytes, json).map_err(|e| e.kind());
        assert_eq!(body(b"", true), Err("empty_body"));
        assert_eq!(body(b" \n", false), Err("empty_body"));
        assert_eq!(
            body(br#"{"name":"a","level":1}"#, false),
            Err("invalid_json")
        );
        assert_eq!(body(b"{nope", true), Err("invalid_json"));
        assert_eq!(body(b"[1]", true), Err("not_an_object"));
        assert!(body(br#"{"name":"a","level":1}"#, true).is_ok());
        let mut headers = HeaderMap::new();
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(declares_json(&headers), json, "{value}");
        }
    }
}
