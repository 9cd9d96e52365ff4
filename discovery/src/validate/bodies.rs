//! The request bodies: `POST /register` ([`CellInfo`]) and `POST /heartbeat` ([`Heartbeat`]).

use cellmesh_wire::limits::{SERVICES_MAX, TEXT_MAX_LEN};
use serde::Deserialize;
use serde_json::{Value, json};

use super::fields::{check_cell_id, check_ip};
use super::pydantic::{Checker, FieldError, check_string, lax_int, loc, object, parse_json};

/// A validated registration (CellInfo without `last_seen`, which the server sets).
#[derive(Debug, Clone, PartialEq)]
pub struct CellInfo {
    /// Cell id.
    pub cell_id: String,
    /// Address other cells reach it at.
    pub ip: String,
    /// Port other cells reach it at.
    pub port: u16,
    /// Level (default 0.0).
    pub consciousness_level: f64,
    /// Services offered (default []).
    pub services: Vec<String>,
    /// Branch (default "main").
    pub branch: String,
    /// Cell type (default "cell").
    pub cell_type: String,
    /// Hostname (default "").
    pub hostname: String,
}

/// A validated heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// Cell id.
    pub cell_id: String,
    /// Current level (default 0.0).
    pub consciousness_level: f64,
    /// Lease id from the registration answer, if the client sends it.
    pub incarnation: Option<u64>,
}

/// Validates a `POST /register` body.
pub fn cell_info(body: &[u8]) -> Result<CellInfo, Vec<FieldError>> {
    cell_info_value(&parse_json(body)?)
}

/// Validates a registration already parsed as JSON (a `POST /register` body, or one cell of
/// a `POST /batch/register`).
pub fn cell_info_value(whole: &Value) -> Result<CellInfo, Vec<FieldError>> {
    let obj = object(whole)?;
    let mut c = Checker {
        obj,
        whole,
        errors: Vec::new(),
    };
    let cell_id = required_cell_id(&mut c);
    let ip =
        c.string("ip", true, TEXT_MAX_LEN)
            .and_then(|ip| match check_ip(&ip, loc("body", "ip")) {
                Ok(()) => Some(ip),
                Err(e) => {
                    c.errors.push(e);
                    None
                }
            });
    let port = c.int("port", true).and_then(|p| {
        if p < 1 {
            c.errors.push(
                FieldError::new(
                    "greater_than_equal",
                    loc("body", "port"),
                    "Input should be greater than or equal to 1",
                    obj["port"].clone(),
                )
                .with_ctx(json!({ "ge": 1 })),
            );
            None
        } else if p > 65_535 {
            c.errors.push(
                FieldError::new(
                    "less_than_equal",
                    loc("body", "port"),
                    "Input should be less than or equal to 65535",
                    obj["port"].clone(),
                )
                .with_ctx(json!({ "le": 65_535 })),
            );
            None
        } else {
            u16::try_from(p).ok()
        }
    });
    let level = c.float("consciousness_level").unwrap_or(0.0);
    let services = match c.get("services", false) {
        None => Some(Vec::new()),
        Some(Value::Array(items)) => {
            if items.len() > SERVICES_MAX {
                c.errors.push(
                    FieldError::new(
                        "too_long",
                        loc("body", "services"),
                        &format!(
                            "List should have at most {SERVICES_MAX} items after validation, not {}",
                            items.len()
                        ),
                        Value::Array(items.clone()),
                    )
                    .with_ctx(json!({ "field_type": "List", "max_length": SERVICES_MAX, "actual_length": items.len() })),
                );
                None
            } else {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let at = vec![Value::from("body"), Value::from("services"), Value::from(i)];
                    match check_string(item, at, TEXT_MAX_LEN) {
                        Ok(s) => out.push(s),
                        Err(e) => c.errors.push(e),
                    }
                }
                Some(out)
            }
        }
        Some(other) => {
            c.errors.push(FieldError::new(
                "list_type",
                loc("body", "services"),
                "Input should be a valid list",
                other.clone(),
            ));
            None
        }
    };
    let branch = c
        .string("branch", false, TEXT_MAX_LEN)
        .unwrap_or_else(|| "main".to_owned());
    let cell_type = c
        .string("type", false, TEXT_MAX_LEN)
        .unwrap_or_else(|| "cell".to_owned());
    let hostname = c
        .string("hostname", false, TEXT_MAX_LEN)
        .unwrap_or_default();
    if let Some(v) = obj.get("last_seen")
        && !v.is_string()
    {
        c.errors.push(FieldError::new(
            "string_type",
            loc("body", "last_seen"),
            "Input should be a valid string",
            v.clone(),
        ));
    }
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    match (cell_id, ip, port, services) {
        (Some(cell_id), Some(ip), Some(port), Some(services)) => Ok(CellInfo {
            cell_id,
            ip,
            port,
            consciousness_level: level,
            services,
            branch,
            cell_type,
            hostname,
        }),
        _ => Err(vec![FieldError::new(
            "missing",
            vec![Value::from("body")],
            "Field required",
            whole.clone(),
        )]),
    }
}

#[derive(Deserialize)]
struct FastHeartbeat<'a> {
    cell_id: &'a str,
    #[serde(default)]
    consciousness_level: f64,
    #[serde(default)]
    incarnation: Option<u64>,
}

/// Validates a `POST /heartbeat` body: a borrowing fast path for well-formed bodies, and the
/// general path (with precise errors) for everything else.
pub fn heartbeat(body: &[u8]) -> Result<Heartbeat, Vec<FieldError>> {
    if let Ok(fast) = serde_json::from_slice::<FastHeartbeat<'_>>(body)
        && fast.consciousness_level.is_finite()
        && check_cell_id(fast.cell_id, loc("body", "cell_id")).is_ok()
    {
        return Ok(Heartbeat {
            cell_id: fast.cell_id.to_owned(),
            consciousness_level: fast.consciousness_level,
            incarnation: fast.incarnation,
        });
    }
    let whole = parse_json(body)?;
    let obj = object(&whole)?;
    let mut c = Checker {
        obj,
        whole: &whole,
        errors: Vec::new(),
    };
    let cell_id = required_cell_id(&mut c);
    let level = c.float("consciousness_level").unwrap_or(0.0);
    let incarnation = incarnation_field(&mut c, false);
    match cell_id {
        Some(cell_id) if c.errors.is_empty() => Ok(Heartbeat {
            cell_id,
            consciousness_level: level,
            incarnation,
        }),
        _ => Err(c.errors),
    }
}

/// The `incarnation` field (a whole number, at least 0), `None` when absent or null (an
/// error when absent and `required`).
pub(super) fn incarnation_field(c: &mut Checker<'_>, required: bool) -> Option<u64> {
    match c.get("incarnation", required) {
        None | Some(Value::Null) if !required => None,
        None => None,
        Some(v) => match lax_int(v, loc("body", "incarnation")) {
            Ok(n) => match u64::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    c.errors.push(
                        FieldError::new(
                            "greater_than_equal",
                            loc("body", "incarnation"),
                            "Input should be greater than or equal to 0",
                            v.clone(),
                        )
                        .with_ctx(json!({ "ge": 0 })),
                    );
                    None
                }
            },
            Err(e) => {
                c.errors.push(e);
                None
            }
        },
    }
}

/// The required `cell_id` field, checked for length and characters.
pub(super) fn required_cell_id(c: &mut Checker<'_>) -> Option<String> {
    let cell_id = c.string("cell_id", true, usize::MAX);
    if let Some(id) = &cell_id
        && let Err(e) = check_cell_id(id, loc("body", "cell_id"))
    {
        c.errors.push(e);
    }
    cell_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_are_named() {
        let errs = cell_info(br#"{"ip":"x"}"#).unwrap_err();
        let kinds: Vec<_> = errs.iter().map(|e| (e.kind, e.loc[1].clone())).collect();
        assert_eq!(
            kinds,
            vec![("missing", json!("cell_id")), ("missing", json!("port"))]
        );
        assert!(errs[0].msg.contains("cell_id"));
    }

    #[test]
    fn lax_numbers_like_pydantic() {
        let ok =
            cell_info(br#"{"cell_id":"a","ip":"h","port":"8002","consciousness_level":"0.5"}"#)
                .unwrap();
        assert_eq!((ok.port, ok.consciousness_level), (8002, 0.5));
        let errs = cell_info(br#"{"cell_id":"a","ip":"h","port":"x"}"#).unwrap_err();
        assert_eq!(errs[0].kind, "int_parsing");
        let errs = cell_info(br#"{"cell_id":"a","ip":"h","port":80.5}"#).unwrap_err();
        assert_eq!(errs[0].kind, "int_from_float");
        let errs = cell_info(br#"{"cell_id":7,"ip":"h","port":80}"#).unwrap_err();
        assert_eq!(errs[0].kind, "string_type");
    }

    #[test]
    fn heartbeat_paths_agree() {
        let h = heartbeat(br#"{"cell_id":"pure"}"#).unwrap();
        assert_eq!(h.consciousness_level, 0.0);
        let h = heartbeat(br#"{"cell_id":"p\u0075re","consciousness_level":"1.5"}"#).unwrap();
        assert_eq!((h.cell_id.as_str(), h.consciousness_level), ("pure", 1.5));
        let e = heartbeat(br#"{"cell_id":"pure","consciousness_level":null}"#).unwrap_err();
        assert_eq!(e[0].kind, "float_type");
        let e = heartbeat(br#"{"cell_id":"pure","consciousness_level":"nan"}"#).unwrap_err();
        assert_eq!(e[0].kind, "finite_number");
        let e = heartbeat(b"{nope").unwrap_err();
        assert_eq!(e[0].kind, "json_invalid");
        let e = heartbeat(b"").unwrap_err();
        assert_eq!(e[0].loc, vec![json!("body")]);
    }
}
