//! The admin token (`--admin-token`): when set, every request must carry
//! `Authorization: Bearer <token>`. Tokens are compared as SHA-256 digests
//! with no early exit, so neither where a wrong token first differs nor its
//! length shows in the answer's timing (as discovery compares its tokens).

use std::hint::black_box;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AdminError;

/// The expected token, kept as its digest.
#[derive(Debug)]
pub(super) struct BearerToken {
    digest: [u8; 32],
    empty: bool,
}

impl BearerToken {
    /// Expects `token`; an empty one matches no request.
    pub(super) fn new(token: &str) -> Self {
        if token.is_empty() {
            tracing::warn!("the admin token is empty: every admin request will be refused");
        }
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
            empty: token.is_empty(),
        }
    }

    /// Whether `given` is the token, in time independent of both.
    pub(super) fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        let diff = given
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (x, y)| black_box(acc | (x ^ y)));
        black_box(diff) == 0 && !self.empty
    }
}

/// The credentials of an `Authorization: Bearer <token>` header (the
/// scheme in any case, as RFC 9110 says).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Lets a request through only with the token.
pub(super) async fn require_token(
    State(expected): State<Arc<BearerToken>>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        None => AdminError::Unauthorized(
            "missing bearer token: send 'Authorization: Bearer <token>' with the host's \
             --admin-token",
        )
        .into_response(),
        Some(given) if !expected.matches(given) => {
            AdminError::Unauthorized("invalid bearer token").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn tokens_match_exactly_and_an_empty_one_never() {
        let token = BearerToken::new("s3cret");
        assert!(token.matches("s3cret"));
        for wrong in ["s3cre", "s3cret-", "S3CRET", "", "s3crét"] {
            assert!(!token.matches(wrong), "{wrong}");
        }
        assert!(!BearerToken::new("").matches(""));
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_credentials_required() {
        let headers = |value: &'static str| {
            let mut map = HeaderMap::new();
            map.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            map
        };
        assert_eq!(bearer(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer(&headers("Basic abc")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&headers("Bearer")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
