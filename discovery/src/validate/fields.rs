//! cellmesh's own field rules on top of the original contract: `cell_id` (and a batch's
//! `host_id`) length and characters, and what an `ip` may be (the other bounds are checked where the fields are read,
//! in [`super::bodies`]).

use cellmesh_wire::batch::HOST_ID_MAX_LEN;
use cellmesh_wire::limits::{CELL_ID_MAX_LEN, is_cell_id_byte, is_valid_peer_address};
use serde_json::{Value, json};

use super::pydantic::FieldError;

/// Checks a `cell_id`'s length and characters (`A-Z a-z 0-9 . _ : -`, 1..=128).
pub fn check_cell_id(id: &str, at: Vec<Value>) -> Result<(), FieldError> {
    check_id(id, CELL_ID_MAX_LEN, at)
}

/// Checks a batch's `host_id`: the cell-id alphabet, 1..=[`HOST_ID_MAX_LEN`] bytes.
pub fn check_host_id(id: &str, at: Vec<Value>) -> Result<(), FieldError> {
    check_id(id, HOST_ID_MAX_LEN, at)
}

fn check_id(id: &str, max_len: usize, at: Vec<Value>) -> Result<(), FieldError> {
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
    if id.len() > max_len {
        return Err(FieldError::new(
            "string_too_long",
            at,
            &format!("String should have at most {max_len} characters"),
            input,
        )
        .with_ctx(json!({ "max_length": max_len })));
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

/// The pattern an `ip` must match, as pydantic would say it: an IP address (IPv6 possibly in
/// brackets) or a host name of letters, digits, `-`, `_` and `.`.
const IP_PATTERN: &str = "an IP address or a host name of letters, digits, '-', '_' and '.'";

/// Checks an `ip`: an address or a host name, never a port, path, query or userinfo (peers
/// build URLs from it: `"[::1]:9/internal?x="` would send them somewhere else).
pub fn check_ip(ip: &str, at: Vec<Value>) -> Result<(), FieldError> {
    if is_valid_peer_address(ip) {
        return Ok(());
    }
    Err(FieldError::new(
        "string_pattern_mismatch",
        at,
        &format!("String should be {IP_PATTERN}"),
        Value::from(ip),
    )
    .with_ctx(json!({ "pattern": IP_PATTERN })))
}
