//! Reading the registry: `GET /peers` (filters, weak ETag, 304) and `GET /peers/{cell_id}`.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cellmesh_wire::headers::REGISTRY_REVISION;
use tokio::time::Instant;
use tracing::warn;

use super::json::json_response;
use super::query::{parse_filter, path_id};
use crate::error::ApiError;
use crate::registry::{PeerFilter, PeersView, push_u64, render_peer};
use crate::state::AppState;

/// Listings of more peers than this are rendered on the blocking pool.
pub const INLINE_RENDER_MAX_PEERS: usize = 4096;

/// The weak ETag of a registry revision.
pub fn etag(state: &AppState, revision: u64) -> String {
    format!("W/\"{}-{}\"", state.inner.boot, revision)
}

fn etag_matches(headers: &HeaderMap, tag: &str) -> bool {
    let Some(v) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let bare = tag.trim_start_matches("W/");
    v.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

/// `GET /peers`.
pub async fn list_peers(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = parse_filter(&uri)?;
    let view = state.registry().peers_view();
    let tag = etag(&state, view.revision);
    if etag_matches(&headers, &tag) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        insert_tag(&mut resp, &tag, view.revision);
        return Ok(resp);
    }
    let count = view.peers.len();
    let render = {
        let state = state.clone();
        let view = view.clone();
        move || render_listing(&state, &view, &filter)
    };
    // A large listing takes milliseconds to render: off the async workers, so heartbeats on
    // other connections are not held up behind it (the server may run one worker only).
    let out = if count > INLINE_RENDER_MAX_PEERS {
        tokio::task::spawn_blocking(render).await.map_err(|e| {
            warn!(error = %e, "rendering /peers failed");
            ApiError::Unavailable("The listing could not be rendered; try again.".into())
        })?
    } else {
        render()
    };
    let mut resp = json_response(StatusCode::OK, out);
    insert_tag(&mut resp, &tag, view.revision);
    Ok(resp)
}

/// The `/peers` answer for `view` through `filter`, with ages as of now.
fn render_listing(state: &AppState, view: &PeersView, filter: &PeerFilter) -> Vec<u8> {
    let hint = state.inner.last_peers_len.load(Ordering::Relaxed);
    let mut out = Vec::with_capacity(hint + 256);
    out.extend_from_slice(b"{\"peers\":[");
    let count = view.render(&mut out, filter, Instant::now());
    out.extend_from_slice(b"],\"count\":");
    push_u64(&mut out, count as u64);
    out.extend_from_slice(b",\"my_host\":");
    out.extend_from_slice(state.inner.my_host_json.as_bytes());
    out.extend_from_slice(b",\"revision\":");
    push_u64(&mut out, view.revision);
    out.push(b'}');
    if filter.is_empty() {
        state
            .inner
            .last_peers_len
            .store(out.len(), Ordering::Relaxed);
    }
    out
}

fn insert_tag(resp: &mut Response, tag: &str, revision: u64) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut()
        .insert(REGISTRY_REVISION, HeaderValue::from(revision));
}

/// `GET /peers/{cell_id}`.
pub async fn get_peer(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(path)?;
    let registry = state.registry();
    let rec = registry
        .peer(&id)
        .ok_or(ApiError::NotFound("Peer not found"))?;
    let mut out = Vec::with_capacity(512);
    render_peer(&mut out, &rec, registry.epoch(), Instant::now());
    Ok(json_response(StatusCode::OK, out))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::validate::CellInfo;

    /// Guards the blocking-pool path: a listing too large to render inline answers the same
    /// shape as a small one.
    #[tokio::test(start_paused = true)]
    async fn large_listing_is_rendered_off_the_workers() {
        let state = AppState::new(Config::default());
        let n = INLINE_RENDER_MAX_PEERS + 3;
        {
            let mut reg = state.registry().lock();
            for i in 0..n {
                let info = CellInfo {
                    cell_id: format!("c{i:05}"),
                    ip: "10.0.0.1".into(),
                    port: 8000,
                    consciousness_level: 0.5,
                    services: vec!["s".into()],
                    branch: "main".into(),
                    cell_type: "cell".into(),
                    hostname: String::new(),
                };
                reg.register(&info, [0; 16], Instant::now(), 0).unwrap();
            }
        }
        let req = Request::get("/peers").body(Body::empty()).unwrap();
        let resp = crate::http::app(state).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["count"], n);
        assert_eq!(v["peers"][0]["cell_id"], "c00000");
        assert_eq!(v["peers"][n - 1]["age_ms"], 0);
    }
}
