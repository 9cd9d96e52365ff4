//! Reading the registry: `GET /peers` (filters, weak ETag, 304) and `GET /peers/{cell_id}`.
//!
//! Every reader of a revision shares its [`PeersView`] by reference; the peers' JSON in it was
//! serialised once, at registration, and an answer stitches it with the live fields
//! (`last_seen`, `age_ms`) read at answer time, in one of three ways:
//!
//! - the unfiltered listing, up to [`AT_ONCE_MAX_BYTES`], is rendered once and shared (`Bytes`)
//!   by every reader of the same revision for at most [`crate::listings::SHARE_FOR`] (its live fields are that
//!   old at most);
//! - any other answer up to [`AT_ONCE_MAX_BYTES`] is rendered at once for its reader;
//! - a larger one, or any answer while the listings rendered at once and still held (cached or
//!   being sent) take [`crate::listings::AT_ONCE_BYTES_MAX`] together, is streamed (chunked) in batches of about
//!   [`BATCH_BYTES`], each rendered when the client has taken the previous ones (`Stitched`).
//!
//! So what readers hold is bounded whatever they do: [`crate::listings::AT_ONCE_BYTES_MAX`] for all the answers
//! rendered at once ([`crate::listings::Listings`] counts them until the last reader lets go), and one batch per
//! streamed answer. A client that does not read holds no listing of its own beyond that, and no
//! batch keeps the server's single worker busy for long (a few microseconds of copying).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cellmesh_wire::headers::REGISTRY_REVISION;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use super::json::json_response;
use super::query::{parse_filter, path_id};
use crate::error::ApiError;
use crate::registry::{PeerCursor, PeerFilter, PeersView, push_u64, render_peer};
use crate::state::AppState;

/// Streamed answers come in batches of about this size (see the module docs).
pub const BATCH_BYTES: usize = 64 * 1024;

/// Room for an answer's framing around the peers (`{"peers":[`, count, `my_host`, revision).
const FRAMING_MAX_LEN: usize = 128;

/// Largest answer rendered at once (one frame, with a `Content-Length`); larger ones are
/// streamed in batches.
pub const AT_ONCE_MAX_BYTES: usize = 1024 * 1024;

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
    let revision = view.revision;
    let bound = view.max_rendered_len() + FRAMING_MAX_LEN + state.inner.my_host_json.len();
    let listings = &state.inner.listing;
    let render = || render_listing(&state, &view, &filter, bound);
    let at_once = match (bound <= AT_ONCE_MAX_BYTES, filter.is_empty()) {
        (false, _) => None,
        (true, true) => listings.shared(revision, Instant::now(), bound, render),
        (true, false) => listings.render(bound, render),
    };
    let mut resp = match at_once {
        Some(body) => json_response(StatusCode::OK, body),
        None => {
            let tail = ListingTail {
                my_host_json: state.inner.my_host_json.clone(),
                revision,
            };
            let body = Stitched::new(
                b"{\"peers\":[".to_vec(),
                PeerCursor::new(view, filter),
                Box::new(move |count| tail.render(count)),
            );
            let mut resp = Response::new(Body::new(body));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
    };
    insert_tag(&mut resp, &tag, revision);
    Ok(resp)
}

/// The `/peers` answer for `view` through `filter`, at once, with ages as of now.
fn render_listing(
    state: &AppState,
    view: &PeersView,
    filter: &PeerFilter,
    bound: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(bound);
    out.extend_from_slice(b"{\"peers\":[");
    let count = view.render(&mut out, filter, Instant::now());
    let tail = ListingTail {
        my_host_json: state.inner.my_host_json.clone(),
        revision: view.revision,
    };
    out.extend_from_slice(&tail.render(count));
    out
}

/// What follows the peers in a `/peers` answer.
struct ListingTail {
    my_host_json: String,
    revision: u64,
}

impl ListingTail {
    /// `],"count":N,"my_host":..,"revision":N}`.
    fn render(&self, count: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.my_host_json.len());
        out.extend_from_slice(b"],\"count\":");
        push_u64(&mut out, count as u64);
        out.extend_from_slice(b",\"my_host\":");
        out.extend_from_slice(self.my_host_json.as_bytes());
        out.extend_from_slice(b",\"revision\":");
        push_u64(&mut out, self.revision);
        out.push(b'}');
        out
    }
}

/// What follows a streamed list of peers, given how many were rendered.
pub(crate) type Tail = Box<dyn FnOnce(usize) -> Vec<u8> + Send>;

/// A body stitched batch by batch from a [`PeerCursor`]: a head, the peers, and a tail that
/// knows how many peers passed the filter. Each batch is rendered when hyper asks for it, i.e.
/// once the previous ones are on their way, with the live fields as of that moment.
pub(crate) struct Stitched {
    head: Option<Vec<u8>>,
    cursor: PeerCursor,
    tail: Option<Tail>,
}

impl Stitched {
    /// A body of `head`, the peers `cursor` walks, and `tail(count)`.
    pub(crate) fn new(head: Vec<u8>, cursor: PeerCursor, tail: Tail) -> Self {
        Self {
            head: Some(head),
            cursor,
            tail: Some(tail),
        }
    }

    /// The next batch, or `None` once the tail has been sent.
    pub(crate) fn next_batch(&mut self) -> Option<Bytes> {
        let tail = self.tail.take()?;
        let mut out = Vec::with_capacity(BATCH_BYTES + 16 * 1024);
        if let Some(head) = self.head.take() {
            out.extend_from_slice(&head);
        }
        if self.cursor.fill(&mut out, BATCH_BYTES, Instant::now()) {
            out.extend_from_slice(&tail(self.cursor.count()));
        } else {
            self.tail = Some(tail);
        }
        Some(Bytes::from(out))
    }
}

impl HttpBody for Stitched {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().next_batch().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
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
    let mut out = Vec::with_capacity(rec.stored_len() + 80);
    render_peer(&mut out, &rec, registry.epoch(), Instant::now());
    Ok(json_response(StatusCode::OK, out))
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::validate::CellInfo;

    fn fill(state: &AppState, n: usize) {
        let mut reg = state.registry().lock();
        for i in 0..n {
            let info = CellInfo {
                cell_id: format!("c{i:05}"),
                ip: "10.0.0.1".into(),
                port: 8000,
                consciousness_level: 0.5,
                services: vec!["s".into(), format!("t{}", i % 2)],
                branch: "main".into(),
                cell_type: "cell".into(),
                hostname: String::new(),
            };
            reg.register(&info, [0; 16], Instant::now(), 0).unwrap();
        }
    }

    /// Guards the streamed path: a listing too large to render at once (and to share) arrives in
    /// several frames, without a Content-Length, and parses to the same shape as a small one
    /// (also through a filter, whose count comes after the peers).
    #[tokio::test(start_paused = true)]
    async fn large_listing_is_streamed_in_batches_with_the_same_shape() {
        let state = AppState::new(Config::default());
        let n = 5_000;
        fill(&state, n);
        for (uri, want) in [("/peers", n), ("/peers?service=t1", n / 2)] {
            let req = Request::get(uri).body(Body::empty()).unwrap();
            let resp = crate::http::app(state.clone()).oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
            let mut body = resp.into_body();
            let (mut frames, mut bytes) = (0, Vec::new());
            while let Some(frame) = body.frame().await {
                let data = frame.unwrap().into_data().unwrap();
                assert!(data.len() <= BATCH_BYTES + 16 * 1024, "{}", data.len());
                bytes.extend_from_slice(&data);
                frames += 1;
            }
            assert!(frames > 2, "{frames} frames");
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["count"], want);
            assert_eq!(v["peers"].as_array().unwrap().len(), want);
            assert_eq!(v["my_host"], "primary");
            assert_eq!(v["peers"][want - 1]["age_ms"], 0);
        }
    }

    /// The unfiltered listing is rendered once per revision and shared: a second reader gets the
    /// same body (one rendering alive), a new revision a new one (the old one freed once no
    /// reader holds it).
    #[tokio::test(start_paused = true)]
    async fn readers_of_one_revision_share_one_rendered_listing() {
        let state = AppState::new(Config::default());
        fill(&state, 500);
        let app = crate::http::app(state.clone());
        let read = |app: axum::Router| async move {
            let req = Request::get("/peers").body(Body::empty()).unwrap();
            let resp = app.oneshot(req).await.unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        };
        let first = read(app.clone()).await;
        let second = read(app.clone()).await;
        assert_eq!(first, second);
        assert_eq!(state.inner.listing.alive_bytes(), first.len());
        let first_len = first.len();
        drop((first, second));
        fill(&state, 501);
        let third = read(app.clone()).await;
        assert!(third.len() > first_len);
        assert_eq!(state.inner.listing.alive_bytes(), third.len());
        drop(third);
        // Live fields are at most `SHARE_FOR` old: later, the listing is rendered again.
        tokio::time::advance(crate::listings::SHARE_FOR).await;
        let fourth = read(app).await;
        assert_eq!(state.inner.listing.alive_bytes(), fourth.len());
    }

    /// A small listing is rendered at once, with a Content-Length.
    #[tokio::test(start_paused = true)]
    async fn small_listing_has_a_content_length() {
        let state = AppState::new(Config::default());
        fill(&state, 3);
        let req = Request::get("/peers").body(Body::empty()).unwrap();
        let resp = crate::http::app(state).oneshot(req).await.unwrap();
        let len: usize = resp.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), len);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["count"], 3);
    }
}
