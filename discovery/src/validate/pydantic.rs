//! pydantic's vocabulary: the [`FieldError`] shape of FastAPI's 422 answers, JSON parsing
//! with `json_invalid` errors, and lax-mode coercions (numeric strings and whole floats accepted
//! where numbers are expected, like pydantic v2's default mode).

use serde_json::{Map, Value, json};

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
    pub(super) fn new(kind: &'static str, loc: Vec<Value>, text: &str, input: Value) -> Self {
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

    pub(super) fn with_ctx(mut self, ctx: Value) -> Self {
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

pub(super) fn loc(place: &str, field: &str) -> Vec<Value> {
    vec![Value::from(place), Value::from(field)]
}

/// Parses the body as JSON, FastAPI-style errors for empty or malformed bodies.
pub fn parse_json(body: &[u8]) -> Result<Value, Vec<FieldError>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![missing_body()]);
    }
    serde_json::from_slice(body).map_err(|e| vec![json_invalid(body, &e)])
}

/// The error for an empty body.
pub(super) fn missing_body() -> FieldError {
    FieldError::new(
        "missing",
        vec![Value::from("body")],
        "Field required",
        Value::Null,
    )
}

/// The error for a body that is not JSON, at the byte where `e` found it.
pub(super) fn json_invalid(body: &[u8], e: &serde_json::Error) -> FieldError {
    let offset = byte_offset(body, e.line(), e.column());
    FieldError::new(
        "json_invalid",
        vec![Value::from("body"), Value::from(offset)],
        "JSON decode error",
        json!({}),
    )
    .with_ctx(json!({ "error": e.to_string() }))
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

pub(super) fn object(v: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    v.as_object().ok_or_else(|| {
        vec![FieldError::new(
            "model_attributes_type",
            vec![Value::from("body")],
            "Input should be a valid dictionary or object to extract fields from",
            v.clone(),
        )]
    })
}

/// Collects field errors while reading the fields of one JSON object.
pub(super) struct Checker<'a> {
    pub(super) obj: &'a Map<String, Value>,
    pub(super) whole: &'a Value,
    pub(super) errors: Vec<FieldError>,
}

impl<'a> Checker<'a> {
    pub(super) fn get(&mut self, field: &str, required: bool) -> Option<&'a Value> {
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

    pub(super) fn string(&mut self, field: &str, required: bool, max: usize) -> Option<String> {
        let v = self.get(field, required)?;
        match check_string(v, loc("body", field), max) {
            Ok(s) => Some(s),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    pub(super) fn int(&mut self, field: &str, required: bool) -> Option<i128> {
        let v = self.get(field, required)?;
        match lax_int(v, loc("body", field)) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    pub(super) fn float(&mut self, field: &str) -> Option<f64> {
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

pub(super) fn check_string(v: &Value, at: Vec<Value>, max: usize) -> Result<String, FieldError> {
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
