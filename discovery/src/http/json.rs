//! JSON answers from bytes the hot paths render by hand (heartbeat, `/peers`), without a
//! `serde_json::Value` in between, and refusals with `Retry-After`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

/// A JSON answer from already serialised bytes.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A refusal the client should retry later: `status` with `{"detail": detail}` and a
/// `Retry-After` of `retry_after` (whole seconds, at least one).
pub(crate) fn refusal(status: StatusCode, detail: &str, retry_after: Duration) -> Response {
    let body = serde_json::to_vec(&serde_json::json!({ "detail": detail })).unwrap_or_default();
    let mut resp = json_response(status, body);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after.as_secs().max(1)),
    );
    resp
}
