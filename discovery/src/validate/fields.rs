//! cellmesh's own field rules on top of the original contract: `cell_id` length and
//! characters (the other bounds are checked where the fields are read, in [`super::bodies`]).

use cellmesh_wire::limits::{CELL_ID_MAX_LEN, is_cell_id_byte};
use serde_json::{Value, json};

use super::pydantic::FieldError;

/// Checks a `cell_id`'s length and characters (`A-Z a-z 0-9 . _ : -`, 1..=128).
pub fn check_cell_id(id: &str, at: Vec<Value>) -> Result<(), FieldError> {
    let input = Value::from(id);
    if id.is_empty() {
        return Err(FieldError::new(
            "string_too_short",
            at,
            "String should have at least 1 character",
            input,
        )
        .with_ctx(json!({ "min_length": 1 })));
    }
    if id.len() > CELL_ID_MAX_LEN {
        return Err(FieldError::new(
            "string_too_long",
            at,
            &format!("String should have at most {CELL_ID_MAX_LEN} characters"),
            input,
        )
        .with_ctx(json!({ "max_length": CELL_ID_MAX_LEN })));
    }
    if !id.bytes().all(is_cell_id_byte) {
        return Err(FieldError::new(
            "string_pattern_mismatch",
            at,
            "String should match pattern '^[A-Za-z0-9._:-]+$'",
            input,
        )
        .with_ctx(json!({ "pattern": "^[A-Za-z0-9._:-]+$" })));
    }
    Ok(())
}
