//! `GET /peers/watch`: Server-Sent Events of registry changes.
//!
//! Events `join`, `update`, `leave` (with `reason`: deregistered, expired, replaced, or
//! `filtered` when a level update takes a peer below `min_level`) and `snapshot`. Every event's
//! id is `BOOT:REVISION`; a client reconnecting with `Last-Event-ID` gets the events it missed
//! from a bounded history ring, or a `snapshot` when it is too far behind (or the server
//! restarted). Keep-alive comments are sent every `watch_keepalive`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt, stream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::query::{parse_filter, query_pairs};
use crate::error::ApiError;
use crate::registry::{EventKind, PeerFilter, PeersView, Resume, WatchEvent, push_u64};
use crate::state::AppState;

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

struct Watcher {
    state: AppState,
    rx: broadcast::Receiver<Arc<WatchEvent>>,
    pending: VecDeque<Event>,
    last_revision: u64,
    filter: PeerFilter,
    _guard: WatcherGuard,
}

impl Watcher {
    fn id(&self, revision: u64) -> String {
        format!("{}:{}", self.state.inner.boot, revision)
    }

    fn snapshot(&self, view: &PeersView) -> Event {
        let mut data = Vec::with_capacity(1024);
        data.extend_from_slice(b"{\"revision\":");
        push_u64(&mut data, view.revision);
        data.extend_from_slice(b",\"type\":\"snapshot\",\"peers\":[");
        let n = view.render(&mut data, &self.filter, Instant::now());
        data.extend_from_slice(b"],\"count\":");
        push_u64(&mut data, n as u64);
        data.extend_from_slice(b",\"my_host\":");
        data.extend_from_slice(self.state.inner.my_host_json.as_bytes());
        data.push(b'}');
        Event::default()
            .event("snapshot")
            .id(self.id(view.revision))
            .data(String::from_utf8_lossy(&data))
    }

    /// The SSE event for `ev` as this watcher's filter sees it, if any.
    fn convert(&self, ev: &WatchEvent) -> Option<Event> {
        let matches = self.filter.is_empty() || self.filter.matches(&ev.record);
        let base = Event::default().id(self.id(ev.revision));
        match ev.kind {
            _ if matches => Some(base.event(ev.kind.name()).data(&*ev.data)),
            EventKind::Update if self.filter.min_level.is_some() => {
                let data = format!(
                    "{{\"revision\":{},\"type\":\"leave\",\"cell_id\":{},\"reason\":\"filtered\",\"incarnation\":{}}}",
                    ev.revision,
                    serde_json::to_string(&*ev.record.cell_id).unwrap_or_default(),
                    ev.record.incarnation
                );
                Some(base.event("leave").data(data))
            }
            _ => None,
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            match self.rx.recv().await {
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
                    let e = self.snapshot(&view);
                    return Some((Ok(e), self));
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

/// Opens a watch stream with the same filters as `/peers`.
pub async fn watch(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let filter = parse_filter(&uri)?;
    let since = last_event_id(&state, &headers, &uri);
    let m = &state.inner.metrics;
    if m.watchers.fetch_add(1, Ordering::Relaxed) >= state.config().max_watchers as u64 {
        m.watchers.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::Unavailable(
            "Too many watch streams are open; try again later.".into(),
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
        _guard: guard,
    };
    match resume {
        Resume::Snapshot(view) => {
            watcher.last_revision = view.revision;
            let e = watcher.snapshot(&view);
            watcher.pending.push_back(e);
        }
        Resume::Members(members) => {
            let view = state.registry().install_view(members);
            watcher.last_revision = view.revision;
            let e = watcher.snapshot(&view);
            watcher.pending.push_back(e);
        }
        Resume::Replay(events) => {
            for ev in events {
                watcher.last_revision = ev.revision;
                if let Some(e) = watcher.convert(&ev) {
                    watcher.pending.push_back(e);
                }
            }
        }
    }
    let stream =
        stream::unfold(watcher, Watcher::next).take_until(state.shutdown_token().cancelled_owned());
    Ok(sse(stream, &state).into_response())
}

fn sse<S>(stream: S, state: &AppState) -> impl IntoResponse
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(state.config().watch_keepalive)
            .text("keep-alive"),
    )
}
