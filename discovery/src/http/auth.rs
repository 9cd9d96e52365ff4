//! Who may change a cell: the shared bearer token, the admin token and per-cell secrets, and
//! how registry refusals become HTTP errors.
//!
//! Tokens are compared as SHA-256 digests in constant time ([`tokens_equal`]), so neither the
//! position of the first differing byte nor the token's length shows in the answer's timing.

use std::hint::black_box;

use axum::http::{HeaderMap, header};
use cellmesh_wire::headers::SECRET;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::registry::{Authority, Claim, RegistryError};
use crate::state::AppState;

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether two tokens are equal, in time independent of their contents and lengths: both are
/// hashed to fixed-length SHA-256 digests, which are compared with a xor-fold over all 32
/// bytes (no early exit; `black_box` keeps the compiler from adding one).
pub fn tokens_equal(given: &str, expected: &str) -> bool {
    let a: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    let b: [u8; 32] = Sha256::digest(expected.as_bytes()).into();
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| black_box(acc | (x ^ y)));
    black_box(diff) == 0
}

/// Checks the bearer token; answers whether it is the admin token.
pub(crate) fn check_token(state: &AppState, headers: &HeaderMap) -> Result<bool, ApiError> {
    let cfg = state.config();
    let given = bearer(headers);
    let is_admin = matches!((given, &cfg.admin_token), (Some(g), Some(a)) if tokens_equal(g, a));
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
            Some(g) if !tokens_equal(g, token) => {
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

/// The claim a registration carries (checks the bearer token first): whether security is on,
/// whether the bearer is the admin token, and the `X-Cell-Secret` presented (also in the open
/// mode, where it only tells a cell moving itself from a takeover).
pub(crate) fn claim<'a>(state: &AppState, headers: &'a HeaderMap) -> Result<Claim<'a>, ApiError> {
    let admin = check_token(state, headers)?;
    Ok(Claim {
        enforce: state.config().security_on(),
        admin,
        secret: headers.get(SECRET).and_then(|v| v.to_str().ok()),
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
        RegistryError::Full => ApiError::Unavailable(
            "The registry is full: it holds its cap of peers (--max-peers) or of registration \
             bytes (--registry-max-bytes); try again later."
                .into(),
        ),
        RegistryError::Held { expires_in_ms } => ApiError::Conflict(format!(
            "Cell id '{id}' is held by a live registration under another secret (its lease \
             expires in {expires_in_ms} ms unless renewed). Present that registration's \
             X-Cell-Secret or the admin token to replace it, or wait until it expires."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::tokens_equal;

    /// Low 11: the old comparison returned at once when the lengths differed. The new one
    /// compares fixed-length digests; this checks it answers right for equal, different,
    /// prefix, longer, empty and non-ASCII tokens (timing is not testable without noise).
    #[test]
    fn token_comparison_uses_fixed_length_digests() {
        let token = "s3cret-token";
        assert!(tokens_equal(token, token));
        assert!(tokens_equal("", ""));
        assert!(tokens_equal("ünïcødé", "ünïcødé"));
        for other in [
            "",
            "s",
            "s3cret-toke",
            "s3cret-token ",
            "s3cret-tokeN",
            "x".repeat(4096).as_str(),
        ] {
            assert!(!tokens_equal(other, token), "{other:?}");
            assert!(!tokens_equal(token, other), "{other:?}");
        }
    }
}
