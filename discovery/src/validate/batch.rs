//! The batch bodies of a many-cell host: `POST /batch/register` ([`batch_registration`]),
//! `POST /batch/heartbeat` ([`batch_heartbeat`]) and `POST /batch/deregister`
//! ([`batch_deregistration`]); the wire types are in [`cellmesh_wire::batch`].
//!
//! A batch is checked at two levels:
//!
//! - **as a whole** (a 422 for the request, in pydantic's shape, naming what is wrong): JSON,
//!   an object with `host_id` (the cell-id alphabet, 1 to [`cellmesh_wire::batch::HOST_ID_MAX_LEN`] bytes) and
//!   `cells` (a list of at most [`BATCH_MAX_CELLS`]), no `cell_id` named twice;
//! - **cell by cell**, with the single call's rules ([`super::registration`] for a
//!   registration): a cell that breaks one is refused on its own (its 422 or 413 is that
//!   cell's outcome in the answer) and the others go ahead.
//!
//! The body is read as a stream: each cell is parsed, checked and dropped before the next, so
//! a 4 MiB batch never becomes a 4 MiB tree of JSON values; past [`BATCH_MAX_CELLS`] the rest
//! of the list is only counted (to say how many there were).

use std::collections::HashMap;
use std::fmt;

use cellmesh_wire::batch::BATCH_MAX_CELLS;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};

use super::bodies::{CellInfo, incarnation_field, required_cell_id};
use super::budget::{RegistrationError, registration_value};
use super::fields::check_host_id;
use super::pydantic::{
    Checker, FieldError, check_string, json_invalid, lax_float, loc, missing_body, object,
};

/// A batch that is well formed as a whole: its host and each cell's own verdict, in request
/// order.
#[derive(Debug)]
pub struct Batch<T> {
    /// The host (failure domain) the batch speaks for.
    pub host_id: String,
    /// One entry per cell of the request, same order.
    pub cells: Vec<BatchCell<T>>,
}

/// One cell of a batch and whether it passed the single call's checks (a refused cell is
/// answered with the 422 or 413 the single call would have given it).
#[derive(Debug)]
pub struct BatchCell<T> {
    /// The cell's `cell_id` as sent (empty when it was not a string), to name it in the answer.
    pub cell_id: String,
    /// The checked cell, or why it is refused.
    pub checked: Result<T, RegistrationError>,
}

/// One cell of `POST /batch/register`: the single call's body plus the secret it presents.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterCell {
    /// The registration.
    pub info: CellInfo,
    /// The secret of the live registration it replaces (the single call's `X-Cell-Secret`).
    pub secret: Option<String>,
}

/// One cell of `POST /batch/heartbeat`.
#[derive(Debug, Clone, PartialEq)]
pub struct BeatCell {
    /// Cell id.
    pub cell_id: String,
    /// Its level now.
    pub consciousness_level: f64,
    /// The incarnation it renews.
    pub incarnation: u64,
    /// Its secret.
    pub secret: String,
}

/// One cell of `POST /batch/deregister`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaveCell {
    /// Cell id.
    pub cell_id: String,
    /// The incarnation it ends.
    pub incarnation: u64,
    /// Its secret.
    pub secret: String,
}

/// Validates a `POST /batch/register` body; each registration is held to `budget` bytes as
/// stored, as the single call's is.
pub fn batch_registration(
    body: &[u8],
    budget: usize,
) -> Result<Batch<RegisterCell>, Vec<FieldError>> {
    parse_batch(body, |cell| {
        let info = registration_value(cell, budget);
        let secret = optional_secret(cell);
        match (info, secret) {
            (Ok(info), Ok(secret)) => Ok(RegisterCell { info, secret }),
            (Err(RegistrationError::Invalid(mut errors)), Err(e)) => {
                errors.push(e);
                Err(RegistrationError::Invalid(errors))
            }
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(RegistrationError::Invalid(vec![e])),
        }
    })
}

/// Validates a `POST /batch/heartbeat` body: every cell needs `cell_id`,
/// `consciousness_level` (a finite number), `incarnation` and `secret`.
pub fn batch_heartbeat(body: &[u8]) -> Result<Batch<BeatCell>, Vec<FieldError>> {
    parse_batch(body, |cell| {
        let mut c = checker(cell)?;
        let cell_id = required_cell_id(&mut c);
        let level = c.get("consciousness_level", true).and_then(|v| {
            lax_float(v, loc("body", "consciousness_level"))
                .map_err(|e| c.errors.push(e))
                .ok()
        });
        let incarnation = incarnation_field(&mut c, true);
        let secret = c.string("secret", true, usize::MAX);
        match (cell_id, level, incarnation, secret) {
            (Some(cell_id), Some(consciousness_level), Some(incarnation), Some(secret))
                if c.errors.is_empty() =>
            {
                Ok(BeatCell {
                    cell_id,
                    consciousness_level,
                    incarnation,
                    secret,
                })
            }
            _ => Err(RegistrationError::Invalid(c.errors)),
        }
    })
}

/// Validates a `POST /batch/deregister` body: every cell needs `cell_id`, `incarnation` and
/// `secret`.
pub fn batch_deregistration(body: &[u8]) -> Result<Batch<LeaveCell>, Vec<FieldError>> {
    parse_batch(body, |cell| {
        let mut c = checker(cell)?;
        let cell_id = required_cell_id(&mut c);
        let incarnation = incarnation_field(&mut c, true);
        let secret = c.string("secret", true, usize::MAX);
        match (cell_id, incarnation, secret) {
            (Some(cell_id), Some(incarnation), Some(secret)) if c.errors.is_empty() => {
                Ok(LeaveCell {
                    cell_id,
                    incarnation,
                    secret,
                })
            }
            _ => Err(RegistrationError::Invalid(c.errors)),
        }
    })
}

fn checker(cell: &Value) -> Result<Checker<'_>, RegistrationError> {
    Ok(Checker {
        obj: object(cell)?,
        whole: cell,
        errors: Vec::new(),
    })
}

/// A registration's `secret`: absent or null, or a string.
fn optional_secret(cell: &Value) -> Result<Option<String>, FieldError> {
    match cell.get("secret") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => check_string(v, loc("body", "secret"), usize::MAX).map(Some),
    }
}

/// What the stream parser saw at the top of the body.
struct Raw<T> {
    host_id: Option<Value>,
    cells: Option<Vec<BatchCell<T>>>,
    /// Elements of `cells` (also those past the limit, which are only counted).
    cells_seen: usize,
    /// `cells` was there but not a list: what it was.
    cells_not_list: Option<Value>,
    /// The body was JSON but not an object: what it was.
    not_object: Option<Value>,
}

/// Parses a batch body, checking each cell with `check` as it arrives (see the module docs),
/// then checks the batch as a whole.
fn parse_batch<T>(
    body: &[u8],
    mut check: impl FnMut(&Value) -> Result<T, RegistrationError>,
) -> Result<Batch<T>, Vec<FieldError>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![missing_body()]);
    }
    let mut raw = Raw {
        host_id: None,
        cells: None,
        cells_seen: 0,
        cells_not_list: None,
        not_object: None,
    };
    let mut per_cell = |cell: &Value| BatchCell {
        cell_id: cell
            .get("cell_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        checked: check(cell),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Top {
        raw: &mut raw,
        check: &mut per_cell,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Err(e) = parsed {
        return Err(vec![json_invalid(body, &e)]);
    }
    if let Some(input) = raw.not_object {
        return Err(object(&input).err().unwrap_or_default());
    }
    let mut errors = Vec::new();
    let host_id = match raw.host_id {
        None => {
            errors.push(missing("host_id"));
            None
        }
        Some(v) => check_string(&v, loc("body", "host_id"), usize::MAX)
            .and_then(|id| check_host_id(&id, loc("body", "host_id")).map(|()| id))
            .map_err(|e| errors.push(e))
            .ok(),
    };
    let cells = match (raw.cells, raw.cells_not_list) {
        (_, Some(input)) => {
            errors.push(FieldError::new(
                "list_type",
                loc("body", "cells"),
                "Input should be a valid list",
                input,
            ));
            None
        }
        (None, None) => {
            errors.push(missing("cells"));
            None
        }
        (Some(_), None) if raw.cells_seen > BATCH_MAX_CELLS => {
            errors.push(
                FieldError::new(
                    "too_long",
                    loc("body", "cells"),
                    &format!(
                        "List should have at most {BATCH_MAX_CELLS} items after validation, not {}; split the batch",
                        raw.cells_seen
                    ),
                    Value::Null,
                )
                .with_ctx(json!({
                    "field_type": "List",
                    "max_length": BATCH_MAX_CELLS,
                    "actual_length": raw.cells_seen,
                })),
            );
            None
        }
        (Some(cells), None) => {
            errors.extend(duplicates(&cells));
            Some(cells)
        }
    };
    match (host_id, cells) {
        (Some(host_id), Some(cells)) if errors.is_empty() => Ok(Batch { host_id, cells }),
        _ => Err(errors),
    }
}

fn missing(field: &str) -> FieldError {
    FieldError::new("missing", loc("body", field), "Field required", Value::Null)
}

/// One error per cell that names an id an earlier cell of the batch named.
fn duplicates<T>(cells: &[BatchCell<T>]) -> Vec<FieldError> {
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(cells.len());
    let mut errors = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        if cell.cell_id.is_empty() {
            continue;
        }
        if let Some(earlier) = first.insert(&cell.cell_id, i) {
            first.insert(&cell.cell_id, earlier);
            errors.push(
                FieldError::new(
                    "value_error",
                    vec![
                        Value::from("body"),
                        Value::from("cells"),
                        Value::from(i),
                        Value::from("cell_id"),
                    ],
                    &format!(
                        "Value error, cell id '{}' is named twice (also at cells.{earlier}); a batch names each cell once",
                        cell.cell_id
                    ),
                    Value::from(cell.cell_id.as_str()),
                )
                .with_ctx(json!({ "first_index": earlier })),
            );
        }
    }
    errors
}

/// Scalar inputs where a container was expected: recorded in `self.raw.$slot`.
macro_rules! record_scalars {
    ($slot:ident) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
            self.raw.$slot = Some(Value::from(v));
            Ok(())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
            self.raw.$slot = Some(Value::from(v));
            Ok(())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
            self.raw.$slot = Some(Value::from(v));
            Ok(())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
            self.raw.$slot = Some(Value::from(v));
            Ok(())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
            self.raw.$slot = Some(Value::from(v));
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.raw.$slot = Some(Value::Null);
            Ok(())
        }
    };
}

/// The body's top level: `host_id` kept, `cells` checked as they stream, the rest skipped.
struct Top<'r, T, F> {
    raw: &'r mut Raw<T>,
    check: &'r mut F,
}

impl<'de, T, F: FnMut(&Value) -> BatchCell<T>> DeserializeSeed<'de> for Top<'_, T, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T, F: FnMut(&Value) -> BatchCell<T>> Visitor<'de> for Top<'_, T, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch: {\"host_id\": ..., \"cells\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "host_id" => self.raw.host_id = Some(map.next_value()?),
                "cells" => map.next_value_seed(Cells {
                    raw: &mut *self.raw,
                    check: &mut *self.check,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.raw.not_object = Some(Value::Array(Vec::new()));
        Ok(())
    }

    record_scalars!(not_object);
}

/// The `cells` list: each element checked and dropped as it arrives; past the limit, counted.
struct Cells<'r, T, F> {
    raw: &'r mut Raw<T>,
    check: &'r mut F,
}

impl<'de, T, F: FnMut(&Value) -> BatchCell<T>> DeserializeSeed<'de> for Cells<'_, T, F> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T, F: FnMut(&Value) -> BatchCell<T>> Visitor<'de> for Cells<'_, T, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of cells")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut cells = Vec::new();
        while cells.len() < BATCH_MAX_CELLS {
            let Some(cell) = seq.next_element::<Value>()? else {
                break;
            };
            cells.push((self.check)(&cell));
        }
        let mut seen = cells.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            seen += 1;
        }
        self.raw.cells = Some(cells);
        self.raw.cells_seen = seen;
        self.raw.cells_not_list = None;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.raw.cells_not_list = Some(Value::Object(Map::new()));
        Ok(())
    }

    record_scalars!(cells_not_list);
}

#[cfg(test)]
mod tests {
    use cellmesh_wire::batch::HOST_ID_MAX_LEN;

    use super::*;

    fn reg(id: &str) -> Value {
        json!({"cell_id": id, "ip": "127.0.0.1", "port": 9000})
    }

    fn body(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn a_good_batch_keeps_order_and_secrets() {
        let mut second = reg("b");
        second["secret"] = json!("00ff");
        let b = batch_registration(
            &body(&json!({"host_id": "h-1", "cells": [reg("a"), second], "extra": [1, 2]})),
            16 * 1024,
        )
        .unwrap();
        assert_eq!(b.host_id, "h-1");
        let ids: Vec<_> = b.cells.iter().map(|c| c.cell_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let second = b.cells[1].checked.as_ref().unwrap();
        assert_eq!(second.secret.as_deref(), Some("00ff"));
        assert_eq!(second.info.port, 9000);
    }

    #[test]
    fn a_bad_cell_is_refused_alone_with_the_single_calls_errors() {
        let mut bad = reg("b");
        bad["port"] = json!(0);
        bad["secret"] = json!(7);
        let b = batch_registration(
            &body(&json!({"host_id": "h", "cells": [reg("a"), bad, 5]})),
            16 * 1024,
        )
        .unwrap();
        assert!(b.cells[0].checked.is_ok());
        let Err(RegistrationError::Invalid(e)) = &b.cells[1].checked else {
            panic!("cell b should be invalid");
        };
        let msgs: Vec<_> = e.iter().map(|e| e.msg.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "port: Input should be greater than or equal to 1",
                "secret: Input should be a valid string"
            ]
        );
        let Err(RegistrationError::Invalid(e)) = &b.cells[2].checked else {
            panic!("a number is not a cell");
        };
        assert_eq!(e[0].kind, "model_attributes_type");
        assert_eq!(b.cells[2].cell_id, "");
    }

    #[test]
    fn a_registration_over_its_budget_is_413_for_that_cell() {
        let mut big = reg("big");
        big["hostname"] = json!("h".repeat(250));
        big["branch"] = json!("b".repeat(250));
        big["type"] = json!("t".repeat(250));
        let b = batch_registration(
            &body(&json!({"host_id": "h", "cells": [big, reg("a")]})),
            600,
        )
        .unwrap();
        assert!(matches!(
            b.cells[0].checked,
            Err(RegistrationError::TooLarge { budget: 600 })
        ));
        assert!(b.cells[1].checked.is_ok());
    }

    #[test]
    fn whole_batch_errors_name_what_is_wrong() {
        let kinds = |v: Value| -> Vec<(String, String)> {
            batch_heartbeat(&body(&v))
                .unwrap_err()
                .iter()
                .map(|e| (e.kind.to_owned(), e.msg.clone()))
                .collect()
        };
        let k = kinds(json!({"cells": []}));
        assert_eq!(k[0], ("missing".into(), "host_id: Field required".into()));
        let k = kinds(json!({"host_id": "a b", "cells": {}}));
        assert_eq!(k[0].0, "string_pattern_mismatch");
        assert!(k[0].1.starts_with("host_id: "), "{k:?}");
        assert_eq!(
            k[1],
            (
                "list_type".into(),
                "cells: Input should be a valid list".into()
            )
        );
        let k = kinds(json!({"host_id": "h".repeat(HOST_ID_MAX_LEN + 1), "cells": []}));
        assert_eq!(k[0].0, "string_too_long");
        let k = kinds(json!({"host_id": 5, "cells": "x"}));
        assert_eq!(
            k.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
            ["string_type", "list_type"]
        );
        let k = kinds(json!([1, 2]));
        assert_eq!(k[0].0, "model_attributes_type");
        let e = batch_heartbeat(b"{\"host_id\": \"h\", \"cells\": [").unwrap_err();
        assert_eq!(e[0].kind, "json_invalid");
        let e = batch_heartbeat(b"  ").unwrap_err();
        assert_eq!(e[0].kind, "missing");
    }

    #[test]
    fn too_many_cells_are_counted_not_kept() {
        let beat =
            json!({"cell_id": "x", "consciousness_level": 0, "incarnation": 1, "secret": "s"});
        let cells = vec![beat; BATCH_MAX_CELLS + 5];
        let e = batch_heartbeat(&body(&json!({"host_id": "h", "cells": cells}))).unwrap_err();
        assert_eq!(e.len(), 1, "only the count is reported, not the duplicates");
        assert_eq!(e[0].kind, "too_long");
        assert!(
            e[0].msg.contains(&format!("not {}", BATCH_MAX_CELLS + 5)),
            "{}",
            e[0].msg
        );
    }

    #[test]
    fn duplicate_ids_are_named_with_both_places() {
        let leave = |id: &str| json!({"cell_id": id, "incarnation": 1, "secret": "s"});
        let e = batch_deregistration(&body(&json!({
            "host_id": "h", "cells": [leave("a"), leave("b"), leave("a")]
        })))
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].loc,
            vec![json!("body"), json!("cells"), json!(2), json!("cell_id")]
        );
        assert!(
            e[0].msg.contains("'a' is named twice (also at cells.0)"),
            "{}",
            e[0].msg
        );
    }

    #[test]
    fn beats_need_every_field_and_accept_lax_numbers() {
        let b = batch_heartbeat(&body(&json!({"host_id": "h", "cells": [
            {"cell_id": "a", "consciousness_level": "1.5", "incarnation": "7", "secret": "s"},
            {"cell_id": "b", "consciousness_level": "nan", "incarnation": -1},
        ]})))
        .unwrap();
        assert_eq!(
            b.cells[0].checked.as_ref().unwrap(),
            &BeatCell {
                cell_id: "a".into(),
                consciousness_level: 1.5,
                incarnation: 7,
                secret: "s".into()
            }
        );
        let Err(RegistrationError::Invalid(e)) = &b.cells[1].checked else {
            panic!("b is invalid");
        };
        let kinds: Vec<_> = e.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["finite_number", "greater_than_equal", "missing"]);
    }
}
