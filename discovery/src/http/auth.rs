//! Who may change a cell: the shared bearer token, the admin token and per-cell secrets, and
//! how registry refusals become HTTP errors.

use axum::http::{HeaderMap, header};
use cellmesh_wire::headers::SECRET;

use crate::error::ApiError;
use crate::registry::{Authority, RegistryError};
use crate::state::AppState;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Checks the bearer token; answers whether it is the admin token.
pub(crate) fn check_token(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    let cfg = state.config();
    let given = bearer(headers);
    let is_admin = matches!((given, &cfg.admin_token), (Some(g), Some(a)) if same(g, a));
    if is_admin {
        return Ok(true);
    }
    if let Some(token) = &cfg.token {
        match given {
            None => {
                return Err(ApiError::Unauthorized(
                    "Missing bearer token: send 'Authorization: Bearer <token>'.",
                ));
            }
            Some(g) if !same(g, token) => {
                return Err(ApiError::Unauthorized("Invalid bearer token."));
            }
            Some(_) => {}
        }
    }
    Ok(false)
}

/// The authority a request carries (checks the bearer token first).
pub(crate) fn authority<'a>(
    state: &AppState,
    headers: &'a HeaderMap,
) -> Result<Authority<'a>, ApiError> {
    let admin = check_token(state, headers)?;
    Ok(if !state.config().security_on() {
        Authority::Open
    } else if admin {
        Authority::Admin
    } else {
        Authority::Secret(headers.get(SECRET).and_then(|v| v.to_str().ok()))
    })
}

/// The HTTP error for a registry refusal (`not_found` is the original's sentence).
pub(crate) fn registry_error(e: RegistryError, not_found: &'static str, id: &str) -> ApiError {
    match e {
        RegistryError::NotFound => ApiError::NotFound(not_found),
        RegistryError::StaleIncarnation => ApiError::Conflict(format!(
            "Stale incarnation: cell '{id}' has registered again since; this lease is no longer current."
        )),
        RegistryError::BadSecret => ApiError::Forbidden(
            "Missing or wrong X-Cell-Secret: only the cell's own secret or the admin token may do this.",
        ),
        RegistryError::Full => ApiError::Unavailable("The registry is full.".into()),
    }
}
