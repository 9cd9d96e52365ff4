//! Request validation that answers in FastAPI/pydantic's 422 shape, so clients written for the
//! original parse our errors unchanged:
//! `{"detail":[{"type":"missing","loc":["body","cell_id"],"msg":"cell_id: Field required","input":{..}}]}`.
//!
//! Like pydantic's lax mode, integers and floats also accept numeric strings and whole floats;
//! strings must be strings. On top of the original, `cell_id`, lengths, the port range, finite
//! levels and the size of `services` are checked.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::config::{MAX_CELL_ID_LEN, MAX_SERVICES, MAX_TEXT_LEN};

/// One pydantic-style validation error.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// pydantic error type, e.g. `missing`, `int_parsing`, `json_invalid`.
    pub kind: &'static str,
    /// Location, e.g. `["body", "cell_id"]`.
    pub loc: Vec<Value>,
    /// Message; names the field.
    pub msg: String,
    /// The offending input.
    pub input: Value,
    /// Optional context (limits, parser error).
    pub ctx: Option<Box<Value>>,
}

impl FieldError {
    fn new(kind: &'static str, loc: Vec<Value>, text: &str, input: Value) -> Self {
        let path: Vec<String> = loc
            .iter()
            .skip(1)
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let msg = if path.is_empty() {
            format!("{}: {text}", loc_root(&loc))
        } else {
            format!("{}: {text}", path.join("."))
        };
        Self {
            kind,
            loc,
            msg,
            input,
            ctx: None,
        }
    }

    fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(Box::new(ctx));
        self
    }

    /// The error as pydantic's JSON object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), Value::from(self.kind));
        m.insert("loc".into(), Value::Array(self.loc.clone()));
        m.insert("msg".into(), Value::from(self.msg.clone()));
        m.insert("input".into(), self.input.clone());
        if let Some(ctx) = &self.ctx {
            m.insert("ctx".into(), (**ctx).clone());
        }
        Value::Object(m)
    }
}

fn loc_root(loc: &[Value]) -> String {
    loc.first()
        .and_then(Value::as_str)
        .unwrap_or("body")
        .to_owned()
}

fn loc(place: &str, field: &str) -> Vec<Value> {
    vec![Value::from(place), Value::from(field)]
}

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

/// Parses the body as JSON, FastAPI-style errors for empty or malformed bodies.
pub fn parse_json(body: &[u8]) -> Result<Value, Vec<FieldError>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![FieldError::new(
            "missing",
            vec![Value::from("body")],
            "Field required",
            Value::Null,
        )]);
    }
    serde_json::from_slice(body).map_err(|e| {
        let offset = byte_offset(body, e.line(), e.column());
        vec![
            FieldError::new(
                "json_invalid",
                vec![Value::from("body"), Value::from(offset)],
                "JSON decode error",
                json!({}),
            )
            .with_ctx(json!({ "error": e.to_string() })),
        ]
    })
}

fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let mut cur_line = 1;
    for (i, b) in body.iter().enumerate() {
        if cur_line == line {
            return (i + column.saturating_sub(1)).min(body.len());
        }
        if *b == b'\n' {
            cur_line += 1;
        }
    }
    body.len()
}

fn object(v: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    v.as_object().ok_or_else(|| {
        vec![FieldError::new(
            "model_attributes_type",
            vec![Value::from("body")],
            "Input should be a valid dictionary or object to extract fields from",
            v.clone(),
        )]
    })
}

struct Checker<'a> {
    obj: &'a Map<String, Value>,
    whole: &'a Value,
    errors: Vec<FieldError>,
}

impl<'a> Checker<'a> {
    fn get(&mut self, field: &str, required: bool) -> Option<&'a Value> {
        match self.obj.get(field) {
            Some(v) => Some(v),
            None => {
                if required {
                    self.errors.push(FieldError::new(
                        "missing",
                        loc("body", field),
                        "Field required",
                        self.whole.clone(),
                    ));
                }
                None
            }
        }
    }

    fn string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        let v = self.get(field, required)?;
        match check_string(v, loc("body", field), max) {
            Ok(s) => Some(s),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn int(&mut self, field: &str, required: bool) -> Option<i128> {
        let v = self.get(field, required)?;
        match lax_int(v, loc("body", field)) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn float(&mut self, field: &str) -> Option<f64> {
        let v = self.get(field, false)?;
        match lax_float(v, loc("body", field)) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }
}

fn check_string(v: &Value, at: Vec<Value>, max: usize) -> Result<String, FieldError> {
    let Value::String(s) = v else {
        return Err(FieldError::new(
            "string_type",
            at,
            "Input should be a valid string",
            v.clone(),
        ));
    };
    if s.chars().count() > max {
        return Err(FieldError::new(
            "string_too_long",
            at,
            &format!("String should have at most {max} characters"),
            v.clone(),
        )
        .with_ctx(json!({ "max_length": max })));
    }
    Ok(s.clone())
}

/// pydantic's lax integer: ints, whole floats, numeric strings and booleans.
pub fn lax_int(v: &Value, at: Vec<Value>) -> Result<i128, FieldError> {
    let int_parsing = |v: &Value, at| {
        FieldError::new(
            "int_parsing",
            at,
            "Input should be a valid integer, unable to parse string as an integer",
            v.clone(),
        )
    };
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Ok(i128::from(u))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                float_to_int(f, v, at)
            }
        }
        Value::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i128>() {
                Ok(i)
            } else {
                Err(int_parsing(v, at))
            }
        }
        Value::Bool(b) => Ok(i128::from(*b)),
        _ => Err(FieldError::new(
            "int_type",
            at,
            "Input should be a valid integer",
            v.clone(),
        )),
    }
}

fn float_to_int(f: f64, v: &Value, at: Vec<Value>) -> Result<i128, FieldError> {
    if !f.is_finite() {
        return Err(FieldError::new(
            "finite_number",
            at,
            "Input should be a finite number",
            v.clone(),
        ));
    }
    if f.fract() != 0.0 || f.abs() > 1e30 {
        return Err(FieldError::new(
            "int_from_float",
            at,
            "Input should be a valid integer, got a number with a fractional part",
            v.clone(),
        ));
    }
    Ok(f as i128)
}

/// pydantic's lax float, refusing NaN and infinities.
pub fn lax_float(v: &Value, at: Vec<Value>) -> Result<f64, FieldError> {
    let f = match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(f) => f,
            Err(_) => {
                return Err(FieldError::new(
                    "float_parsing",
                    at,
                    "Input should be a valid number, unable to parse string as a number",
                    v.clone(),
                ));
            }
        },
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => {
            return Err(FieldError::new(
                "float_type",
                at,
                "Input should be a valid number",
                v.clone(),
            ));
        }
    };
    if f.is_finite() {
        Ok(f)
    } else {
        Err(FieldError::new(
            "finite_number",
            at,
            "Input should be a finite number",
            v.clone(),
        ))
    }
}

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

/// Validates a `POST /register` body.
pub fn cell_info(body: &[u8]) -> Result<CellInfo, Vec<FieldError>> {
    let whole = parse_json(body)?;
    let obj = object(&whole)?;
    let mut c = Checker {
        obj,
        whole: &whole,
        errors: Vec::new(),
    };
    let cell_id = c.string("cell_id", true, usize::MAX);
    if let Some(id) = &cell_id
        && let Err(e) = check_cell_id(id, loc("body", "cell_id"))
    {
        c.errors.push(e);
    }
    let ip = c.string("ip", true, MAX_TEXT_LEN);
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
            if items.len() > MAX_SERVICES {
                c.errors.push(
                    FieldError::new(
                        "too_long",
                        loc("body", "services"),
                        &format!(
                            "List should have at most {MAX_SERVICES} items after validation, not {}",
                            items.len()
                        ),
                        Value::Array(items.clone()),
                    )
                    .with_ctx(json!({ "field_type": "List", "max_length": MAX_SERVICES, "actual_length": items.len() })),
                );
                None
            } else {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let at = vec![Value::from("body"), Value::from("services"), Value::from(i)];
                    match check_string(item, at, MAX_TEXT_LEN) {
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
        .string("branch", false, MAX_TEXT_LEN)
        .unwrap_or_else(|| "main".to_owned());
    let cell_type = c
        .string("type", false, MAX_TEXT_LEN)
        .unwrap_or_else(|| "cell".to_owned());
    let hostname = c
        .string("hostname", false, MAX_TEXT_LEN)
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
    let cell_id = c.string("cell_id", true, usize::MAX);
    if let Some(id) = &cell_id
        && let Err(e) = check_cell_id(id, loc("body", "cell_id"))
    {
        c.errors.push(e);
    }
    let level = c.float("consciousness_level").unwrap_or(0.0);
    let incarnation = match c.get("incarnation", false) {
        None | Some(Value::Null) => None,
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
    };
    match cell_id {
        Some(cell_id) if c.errors.is_empty() => Ok(Heartbeat {
            cell_id,
            consciousness_level: level,
            incarnation,
        }),
        _ => Err(c.errors),
    }
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
