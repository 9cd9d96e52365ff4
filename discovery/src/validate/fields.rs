//! cellmesh's own field rules on top of the original contract: `cell_id` length and
//! characters (the other bounds are checked where the fields are read, in [`super::bodies`]).

use serde_json::{Value, json};

use super::FieldError;
use crate::config::MAX_CELL_ID_LEN;

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
    if id.len() > MAX_CELL_ID_LEN {
        return Err(FieldError::new(
            "string_too_long",
            at,
            &format!("String should have at most {MAX_CELL_ID_LEN} characters"),
            input,
        )
        .with_ctx(json!({ "max_length": MAX_CELL_ID_LEN })));
    }
    if !id.bytes().all(cell_id_byte) {
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

fn cell_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}
