//! Change events for watchers: every membership or level change bumps the revision and records
//! a [`WatchEvent`] in a bounded history ring (for `Last-Event-ID` resumption) and on a
//! broadcast channel (for live streams).
//!
//! A takeover (a live id moved to another address without its secret) is published after the
//! usual `leave` (reason `replaced`) and `join`, as one more event of its own kind:
//! `{"revision","type":"takeover","cell_id","from":"ip:port","to":"ip:port","incarnation",
//! "replaced_incarnation"}`.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Membership, PeerRecord, PeerRegistry, PeersView, Takeover, render_peer};

/// Why a peer left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// `DELETE /peer/{id}` or `/unregister/{id}`.
    Deregistered,
    /// Silent for longer than the TTL.
    Expired,
    /// The same id registered again (a new incarnation).
    Replaced,
}

impl LeaveReason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deregistered => "deregistered",
            Self::Expired => "expired",
            Self::Replaced => "replaced",
        }
    }
}

/// Kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A peer registered.
    Join,
    /// A peer's level changed.
    Update,
    /// A peer left.
    Leave(LeaveReason),
    /// A live id was moved to another address without its secret (after its `Leave` and
    /// `Join`).
    Takeover,
}

impl EventKind {
    /// SSE event name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Join => "join",
            Self::Update => "update",
            Self::Leave(_) => "leave",
            Self::Takeover => "takeover",
        }
    }
}

/// One change of the registry.
#[derive(Debug)]
pub struct WatchEvent {
    /// Registry revision after this change.
    pub revision: u64,
    /// What happened.
    pub kind: EventKind,
    /// The peer as it was (leave) or is (join, update, takeover).
    pub record: Arc<PeerRecord>,
    /// The SSE `data:` JSON.
    pub data: Arc<str>,
}

/// How a new watcher catches up.
#[derive(Debug)]
pub enum Resume {
    /// Replay these events (possibly none), then follow live events.
    Replay(Vec<Arc<WatchEvent>>),
    /// Too far behind (or a fresh start): send this snapshot, then follow live events.
    Snapshot(Arc<PeersView>),
    /// Like [`Resume::Snapshot`] when no view of the current revision was built yet: the
    /// membership to sort (outside the registry lock, with [`Membership::sorted`]) and send.
    Members(Membership),
}

impl PeerRegistry {
    /// Bumps the revision and publishes `kind` for `record` (with the peer's JSON when
    /// `with_peer`, for joins and updates).
    pub(super) fn emit(
        &mut self,
        kind: EventKind,
        record: Arc<PeerRecord>,
        with_peer: bool,
        now: Instant,
    ) {
        self.revision += 1;
        self.view = None;
        let mut data = self.event_head(kind, &record);
        match (kind, with_peer) {
            (EventKind::Leave(reason), _) => {
                data.extend_from_slice(b",\"reason\":\"");
                data.extend_from_slice(reason.as_str().as_bytes());
                data.extend_from_slice(b"\",\"incarnation\":");
                data.extend_from_slice(record.incarnation.to_string().as_bytes());
            }
            (_, true) => {
                data.extend_from_slice(b",\"peer\":");
                render_peer(&mut data, &record, self.epoch, now);
            }
            (_, false) => {}
        }
        self.publish(kind, record, data);
    }

    /// Bumps the revision and publishes a `takeover` event for `record`, the new registration.
    pub(super) fn emit_takeover(&mut self, record: Arc<PeerRecord>, takeover: &Takeover) {
        self.revision += 1;
        self.view = None;
        let mut data = self.event_head(EventKind::Takeover, &record);
        data.extend_from_slice(b",\"from\":");
        data.extend_from_slice(super::peer::json_str(&takeover.from).as_bytes());
        data.extend_from_slice(b",\"to\":");
        data.extend_from_slice(super::peer::json_str(&takeover.to).as_bytes());
        data.extend_from_slice(b",\"incarnation\":");
        data.extend_from_slice(record.incarnation.to_string().as_bytes());
        data.extend_from_slice(b",\"replaced_incarnation\":");
        data.extend_from_slice(takeover.replaced_incarnation.to_string().as_bytes());
        self.publish(EventKind::Takeover, record, data);
    }

    /// `{"revision":N,"type":"KIND","cell_id":ID` for the current revision.
    fn event_head(&self, kind: EventKind, record: &PeerRecord) -> Vec<u8> {
        let mut data = Vec::with_capacity(320);
        data.extend_from_slice(b"{\"revision\":");
        data.extend_from_slice(self.revision.to_string().as_bytes());
        data.extend_from_slice(b",\"type\":\"");
        data.extend_from_slice(kind.name().as_bytes());
        data.extend_from_slice(b"\",\"cell_id\":");
        data.extend_from_slice(
            serde_json::to_string(&*record.cell_id)
                .unwrap_or_default()
                .as_bytes(),
        );
        data
    }

    /// Closes `data`'s object and records the event in the history ring and on the channel.
    fn publish(&mut self, kind: EventKind, record: Arc<PeerRecord>, mut data: Vec<u8>) {
        data.push(b'}');
        let event = Arc::new(WatchEvent {
            revision: self.revision,
            kind,
            record,
            data: String::from_utf8(data).unwrap_or_default().into(),
        });
        if self.history.len() == self.settings.history {
            self.history.pop_front();
        }
        if self.settings.history > 0 {
            self.history.push_back(event.clone());
        }
        let _ = self.events.send(event);
    }

    /// Subscribes to events after revision `since` (None: start with a snapshot).
    pub fn subscribe(
        &mut self,
        since: Option<u64>,
    ) -> (broadcast::Receiver<Arc<WatchEvent>>, Resume) {
        let rx = self.events.subscribe();
        let resume = match since {
            Some(n) if n == self.revision => Resume::Replay(Vec::new()),
            Some(n)
                if n < self.revision
                    && self.history.front().is_some_and(|e| e.revision <= n + 1) =>
            {
                Resume::Replay(
                    self.history
                        .iter()
                        .filter(|e| e.revision > n)
                        .cloned()
                        .collect(),
                )
            }
            // Sorting thousands of peers is left to the caller, outside the lock.
            _ => match self.cached_view() {
                Some(view) => Resume::Snapshot(view),
                None => Resume::Members(self.membership()),
            },
        };
        (rx, resume)
    }
}
