//! `GET /peers/watch`: Server-Sent Events of registry changes.
//!
//! Events `join`, `update`, `leave` (with `reason`: deregistered, expired, replaced, or
//! `filtered` when a level update takes a peer below `min_level`) and `snapshot`. Every event's
//! id is `BOOT:REVISION`; a client reconnecting with `Last-Event-ID` gets the events it missed
//! from a bounded history ring, or a `snapshot` when it is too far behind (or the server
//! restarted). Keep-alive comments are sent after `watch_keepalive` without an event.
//!
//! A snapshot is streamed from the view shared by every reader of its revision, batch by batch
//! as the client reads it (like a large `GET /peers`), so a watcher that does not read holds
//! one batch, not a copy of the registry. Live events are shared by reference in the broadcast
//! ring; each watcher frames the ones it sends. At most `max_watchers` streams are open at
//! once; beyond, 503 with `Retry-After` ([`WATCHERS_RETRY_AFTER`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use futures::{StreamExt, stream};
use tokio::sync::broadcast::{self, error::RecvError};

use super::json::refusal;
use super::peers::Stitched;
use super::query::{parse_filter, query_pairs};
use crate::error::ApiError;
use crate::registry::{EventKind, PeerCursor, PeerFilter, PeersView, Resume, WatchEvent, push_u64};
use crate::state::AppState;

/// How long a client refused for too many watch streams is asked to wait (`Retry-After`).
pub const WATCHERS_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The keep-alive comment.
const KEEP_ALIVE: &[u8] = b":keep-alive\n\n";

struct WatcherGuard(AppState);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0
            .inner
            .metrics
            .watchers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a watcher sends before it waits for the next change.
enum Pending {
    /// One whole event.
    Frame(Bytes),
    /// A snapshot, streamed batch by batch from the shared view.
    Snapshot(Stitched),
}

struct Watcher {
    state: AppState,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    pending: VecDeque<Pending>,
    last_revision: u64,
    filter: PeerFilter,
    keepalive: Duration,
    _guard: WatcherGuard,
}

/// One SSE event: `event: NAME`, `id: ID`, `data: DATA`, blank line.
fn frame(name: &str, id: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(32 + name.len() + id.len() + data.len());
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\nid: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

impl Watcher {
    fn id(&self, revision: u64) -> String {
        format!("{}:{}", self.state.inner.boot, revision)
    }

    /// A `snapshot` event of `view` through this watcher's filter, rendered batch by batch as
    /// the client reads it (the view is shared with every other reader of its revision).
    fn snapshot(&self, view: Arc<PeersView>) -> Pending {
        let revision = view.revision;
        let mut head = Vec::with_capacity(96);
        head.extend_from_slice(b"event: snapshot\nid: ");
        head.extend_from_slice(self.id(revision).as_bytes());
        head.extend_from_slice(b"\ndata: {\"revision\":");
        push_u64(&mut head, revision);
        head.extend_from_slice(b",\"type\":\"snapshot\",\"peers\":[");
        let my_host = self.state.inner.my_host_json.clone();
        let tail = move |count: usize| {
            let mut out = Vec::with_capacity(48 + my_host.len());
            out.extend_from_slice(b"],\"count\":");
            push_u64(&mut out, count as u64);
            out.extend_from_slice(b",\"my_host\":");
            out.extend_from_slice(my_host.as_bytes());
            out.extend_from_slice(b"}\n\n");
            out
        };
        Pending::Snapshot(Stitched::new(
            head,
            PeerCursor::new(view, self.filter.clone()),
            Box::new(tail),
        ))
    }

    /// The SSE event for `ev` as this watcher's filter sees it, if any.
    fn convert(&self, ev: &WatchEvent) -> Option<Bytes> {
        let matches = self.filter.is_empty() || self.filter.matches(&ev.record);
        let id = self.id(ev.revision);
        match ev.kind {
            _ if matches => Some(frame(ev.kind.name(), &id, ev.data.as_bytes())),
            EventKind::Update if self.filter.min_level.is_some() => {
                let data = format!(
                    "{{\"revision\":{},\"type\":\"leave\",\"cell_id\":{},\"reason\":\"filtered\",\"incarnation\":{}}}",
                    ev.revision,
                    serde_json::to_string(&*ev.record.cell_id).unwrap_or_default(),
                    ev.record.incarnation
                );
                Some(frame("leave", &id, data.as_bytes()))
            }
            _ => None,
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        loop {
            match self.pending.front_mut() {
                Some(Pending::Snapshot(s)) => match s.next_batch() {
                    Some(batch) => return Some((Ok(batch), self)),
                    None => {
                        self.pending.pop_front();
                        continue;
                    }
                },
                Some(Pending::Frame(_)) => {
                    if let Some(Pending::Frame(f)) = self.pending.pop_front() {
                        return Some((Ok(f), self));
                    }
                    continue;
                }
                None => {}
            }
            let received = tokio::select! {
                r = self.rx.recv() => r,
                () = tokio::time::sleep(self.keepalive) => {
                    return Some((Ok(Bytes::from_static(KEEP_ALIVE)), self));
                }
            };
            match received {
                Ok(ev) => {
                    if ev.revision <= self.last_revision {
                        continue;
                    }
                    self.last_revision = ev.revision;
                    if let Some(e) = self.convert(&ev) {
                        return Some((Ok(e), self));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let view = self.state.registry().peers_view();
                    self.last_revision = view.revision;
                    let snapshot = self.snapshot(view);
                    self.pending.push_back(snapshot);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

fn last_event_id(state: &AppState, headers: &HeaderMap, uri: &Uri) -> Option<u64> {
    let raw = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            query_pairs(uri)
                .find(|(k, _)| k == "last_event_id")
                .map(|(_, v)| v)
        })?;
    let (boot, rev) = raw.trim().split_once(':')?;
    if boot != state.inner.boot {
        return None;
    }
    rev.parse().ok()
}

/// Opens a watch stream with the same filters as `/peers`; beyond `max_watchers` open streams,
/// 503 with `Retry-After`.
pub async fn watch(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = parse_filter(&uri)?;
    let since = last_event_id(&state, &headers, &uri);
    let m = &state.inner.metrics;
    let max = state.config().max_watchers;
    if m.watchers.fetch_add(1, Ordering::Relaxed) >= max as u64 {
        m.watchers.fetch_sub(1, Ordering::Relaxed);
        return Ok(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "Too many watch streams are open (the limit is {max}); try again later, or poll GET /peers with If-None-Match."
            ),
            WATCHERS_RETRY_AFTER,
        ));
    }
    let guard = WatcherGuard(state.clone());
    let (rx, resume) = state.registry().subscribe(since);
    let mut watcher = Watcher {
        state: state.clone(),
        rx,
        pending: VecDeque::new(),
        last_revision: since.unwrap_or(0),
        filter,
        keepalive: state.config().watch_keepalive,
        _guard: guard,
    };
    match resume {
        Resume::Snapshot(view) => {
            watcher.last_revision = view.revision;
            let snapshot = watcher.snapshot(view);
            watcher.pending.push_back(snapshot);
        }
        Resume::Members(members) => {
            let view = state.registry().install_view(members);
            watcher.last_revision = view.revision;
            let snapshot = watcher.snapshot(view);
            watcher.pending.push_back(snapshot);
        }
        Resume::Replay(events) => {
            for ev in events {
                watcher.last_revision = ev.revision;
                if let Some(e) = watcher.convert(&ev) {
                    watcher.pending.push_back(Pending::Frame(e));
                }
            }
        }
    }
    let stream =
        stream::unfold(watcher, Watcher::next).take_until(state.shutdown_token().cancelled_owned());
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
