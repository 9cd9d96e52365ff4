//! The per-registration byte budget: a `POST /register` body is validated field by field
//! ([`super::cell_info`]), then its cost as stored
//! ([`cellmesh_wire::limits::registration_cost`]) and its size are held to the budget.
//!
//! Over the budget, the answer says what to fix: 422 naming the field when one field is what
//! makes the registration too big (shrinking that field alone would make it fit, e.g. a long
//! `services` list), 413 otherwise (several fields together, or a body padded with whitespace
//! or unknown fields).

use cellmesh_wire::limits::{RegistrationText, registration_cost};
use serde_json::{Value, json};

use super::bodies::{CellInfo, cell_info, cell_info_value};
use super::pydantic::{FieldError, loc};

/// Why a registration was refused.
#[derive(Debug)]
pub enum RegistrationError {
    /// 422: field errors (including the one field that makes it too big).
    Invalid(Vec<FieldError>),
    /// 413: over the budget, and not because of one field.
    TooLarge {
        /// The budget, in bytes.
        budget: usize,
    },
}

impl From<Vec<FieldError>> for RegistrationError {
    fn from(errors: Vec<FieldError>) -> Self {
        Self::Invalid(errors)
    }
}

/// The smallest share of the cost a field can take (an empty string literal; no services).
fn smallest(field: &str) -> usize {
    match field {
        "services" => 0,
        "cell_id" => 3,
        _ => 2,
    }
}

/// Validates a `POST /register` body and holds it to `budget` bytes (see the module docs).
pub fn registration(body: &[u8], budget: usize) -> Result<CellInfo, RegistrationError> {
    let info = cell_info(body)?;
    within_budget(&info, budget)?;
    if body.len() > budget {
        return Err(RegistrationError::TooLarge { budget });
    }
    Ok(info)
}

/// Validates one registration already parsed as JSON (a cell of `POST /batch/register`) and
/// holds its cost as stored to `budget` bytes, as [`registration`] does (the batch's body as
/// a whole is bounded by its own limit).
pub fn registration_value(cell: &Value, budget: usize) -> Result<CellInfo, RegistrationError> {
    let info = cell_info_value(cell)?;
    within_budget(&info, budget)?;
    Ok(info)
}

/// Refuses `info` when it costs more than `budget` bytes as stored: 422 naming the one field
/// that makes it too big, else 413.
fn within_budget(info: &CellInfo, budget: usize) -> Result<(), RegistrationError> {
    let text = RegistrationText {
        cell_id: &info.cell_id,
        ip: &info.ip,
        hostname: &info.hostname,
        branch: &info.branch,
        cell_type: &info.cell_type,
        services: &info.services,
    };
    let cost = registration_cost(&text);
    if cost > budget {
        let costs = text.field_costs();
        let (field, bytes) = costs
            .iter()
            .copied()
            .max_by_key(|(_, n)| *n)
            .unwrap_or(("services", 0));
        if cost - bytes + smallest(field) <= budget {
            let input = match field {
                "services" => Value::from(info.services.clone()),
                "cell_id" => Value::from(info.cell_id.clone()),
                "ip" => Value::from(info.ip.clone()),
                "hostname" => Value::from(info.hostname.clone()),
                "branch" => Value::from(info.branch.clone()),
                _ => Value::from(info.cell_type.clone()),
            };
            return Err(RegistrationError::Invalid(vec![
                FieldError::new(
                    "bytes_too_long",
                    loc("body", field),
                    &format!(
                        "Registration too large: it takes {cost} bytes as stored, over the budget of {budget} bytes; this field takes {bytes} of them"
                    ),
                    input,
                )
                .with_ctx(json!({ "max_length": budget, "cost": cost, "field_bytes": bytes })),
            ]));
        }
        return Err(RegistrationError::TooLarge { budget });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(services: usize, len: usize) -> Vec<u8> {
        let services: Vec<String> = (0..services).map(|i| format!("{i:0len$}")).collect();
        serde_json::to_vec(&json!({"cell_id": "a", "ip": "h", "port": 1, "services": services}))
            .unwrap()
    }

    #[test]
    fn within_the_budget_passes() {
        assert!(registration(&body(3, 10), 1024).is_ok());
    }

    #[test]
    fn one_big_field_is_named() {
        let Err(RegistrationError::Invalid(e)) = registration(&body(40, 200), 4096) else {
            panic!("expected a field error");
        };
        assert_eq!(
            (e[0].kind, &e[0].loc[1]),
            ("bytes_too_long", &json!("services"))
        );
        assert!(
            e[0].msg.starts_with("services: Registration too large"),
            "{}",
            e[0].msg
        );
    }

    #[test]
    fn several_fields_together_or_padding_are_413() {
        let b = serde_json::to_vec(&json!({
            "cell_id": "a", "ip": "i".repeat(200), "port": 1, "hostname": "h".repeat(200),
            "branch": "b".repeat(200), "type": "t".repeat(200), "services": ["s".repeat(200)]
        }))
        .unwrap();
        assert!(matches!(
            registration(&b, 600),
            Err(RegistrationError::TooLarge { budget: 600 })
        ));
        let mut padded = body(1, 5);
        padded.extend(std::iter::repeat_n(b' ', 2048));
        assert!(matches!(
            registration(&padded, 1024),
            Err(RegistrationError::TooLarge { budget: 1024 })
        ));
    }
}
