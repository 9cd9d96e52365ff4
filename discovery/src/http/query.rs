//! Query strings and path parameters: `/peers` filters, `?incarnation=` (or its header) and
//! the `{cell_id}` path segment, with pydantic-shaped errors.

use axum::extract::Path;
use axum::http::{HeaderMap, Uri};
use cellmesh_wire::headers::INCARNATION;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::PeerFilter;
use crate::validate::{self, FieldError};

/// Parses `?incarnation=N` (or the `X-Cell-Incarnation` header).
pub(crate) fn incarnation(uri: &Uri, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let (raw, place) = match query_pairs(uri).find(|(k, _)| k == "incarnation") {
        Some((_, v)) => (Some(v), "query"),
        None => (
            headers
                .get(INCARNATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            "header",
        ),
    };
    let Some(raw) = raw else { return Ok(None) };
    let field = if place == "query" {
        "incarnation"
    } else {
        INCARNATION
    };
    let at = vec![Value::from(place), Value::from(field)];
    let n = validate::lax_int(&Value::from(raw.clone()), at.clone()).map_err(|e| vec![e])?;
    u64::try_from(n).map(Some).map_err(|_| {
        ApiError::Validation(vec![FieldError {
            kind: "greater_than_equal",
            loc: at,
            msg: format!("{field}: Input should be greater than or equal to 0"),
            input: Value::from(raw),
            ctx: Some(Box::new(json!({"ge": 0}))),
        }])
    })
}

/// Decoded `key=value` pairs of the query string.
pub fn query_pairs(uri: &Uri) -> impl Iterator<Item = (String, String)> + '_ {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Parses the `/peers` filters: `service`, `type`, `branch`, `min_level`.
pub fn parse_filter(uri: &Uri) -> Result<PeerFilter, ApiError> {
    let mut f = PeerFilter::default();
    for (k, v) in query_pairs(uri) {
        match k.as_str() {
            "service" => f.service = Some(v),
            "type" => f.cell_type = Some(v),
            "branch" => f.branch = Some(v),
            "min_level" => {
                let at = vec![Value::from("query"), Value::from("min_level")];
                f.min_level = Some(validate::lax_float(&Value::from(v), at).map_err(|e| vec![e])?);
            }
            _ => {}
        }
    }
    Ok(f)
}

/// The `{cell_id}` path segment.
pub(crate) fn path_id(
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|e| {
        ApiError::Validation(vec![FieldError {
            kind: "string_type",
            loc: vec![Value::from("path"), Value::from("cell_id")],
            msg: "cell_id: Input should be a valid string".into(),
            input: Value::from(e.body_text()),
            ctx: None,
        }])
    })
}
