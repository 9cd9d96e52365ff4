//! What readers see: [`PeerFilter`], the sorted membership [`PeersView`] built once per
//! revision, and the rendering of a peer's JSON with `last_seen` and `age_ms` at answer time.
//!
//! A view is shared by reference between every reader of its revision; it holds the peers'
//! records, whose JSON (without the live fields) is serialised once, at registration. An answer
//! is stitched from those bytes and the live fields read at answer time: at once for a small
//! answer ([`PeersView::render`]), or batch by batch as the client reads it for a large one
//! ([`PeerCursor`]), so that a reader holds one batch, never a whole rendered listing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::PeerRecord;
use crate::clock::push_iso8601;

/// Filters of `/peers` and `/peers/watch`, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerFilter {
    /// Peer offers this service.
    pub service: Option<String>,
    /// Peer has this type.
    pub cell_type: Option<String>,
    /// Peer is on this branch.
    pub branch: Option<String>,
    /// Peer's level is at least this.
    pub min_level: Option<f64>,
}

impl PeerFilter {
    /// Whether `rec` passes every given filter.
    pub fn matches(&self, rec: &PeerRecord) -> bool {
        self.service.as_deref().is_none_or(|s| rec.offers(s))
            && self.cell_type.as_deref().is_none_or(|t| rec.is_type(t))
            && self.branch.as_deref().is_none_or(|b| rec.is_branch(b))
            && self.min_level.is_none_or(|m| rec.level >= m)
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The registry's membership at one revision, unsorted: collected under the registry lock
/// (one reference count per peer), sorted outside it with [`Membership::sorted`].
#[derive(Debug)]
pub struct Membership {
    /// Revision these members reflect.
    pub revision: u64,
    epoch: Instant,
    peers: Vec<Arc<PeerRecord>>,
}

impl Membership {
    pub(super) fn new(revision: u64, epoch: Instant, peers: Vec<Arc<PeerRecord>>) -> Self {
        Self {
            revision,
            epoch,
            peers,
        }
    }

    /// The view of these members, sorted by id.
    pub fn sorted(self) -> PeersView {
        PeersView::sorted(self.revision, self.epoch, self.peers)
    }
}

/// Longest live part of a peer's JSON: `,"last_seen":"<27 characters>","age_ms":<20 digits>}`,
/// plus the comma before the next peer.
pub const LIVE_MAX_LEN: usize = 74;

/// The registry's membership at one revision, sorted by id.
#[derive(Debug)]
pub struct PeersView {
    /// Revision this view reflects.
    pub revision: u64,
    /// Peers, sorted by id.
    pub peers: Vec<Arc<PeerRecord>>,
    epoch: Instant,
    /// Sum of the peers' JSON lengths without the live fields.
    stored_len: usize,
}

impl PeersView {
    /// A view of `peers` at `revision`, sorted by id.
    pub fn sorted(revision: u64, epoch: Instant, mut peers: Vec<Arc<PeerRecord>>) -> Self {
        peers.sort_unstable_by(|a, b| a.cell_id.cmp(&b.cell_id));
        let stored_len = peers.iter().map(|p| p.stored_len()).sum();
        Self {
            revision,
            peers,
            epoch,
            stored_len,
        }
    }

    /// An upper bound of the length of [`PeersView::render`]'s output (every peer, live fields
    /// at their longest).
    pub fn max_rendered_len(&self) -> usize {
        self.stored_len + self.peers.len() * LIVE_MAX_LEN
    }

    /// Appends the JSON array elements (comma separated, no brackets) for the peers passing
    /// `filter`, with `last_seen` and `age_ms` computed at `now`; returns how many.
    pub fn render(&self, out: &mut Vec<u8>, filter: &PeerFilter, now: Instant) -> usize {
        let mut n = 0;
        let unfiltered = filter.is_empty();
        let now_nanos = nanos_since(self.epoch, now);
        for rec in &self.peers {
            if !unfiltered && !filter.matches(rec) {
                continue;
            }
            if n > 0 {
                out.push(b',');
            }
            render_peer_at(out, rec, now_nanos);
            n += 1;
        }
        n
    }
}

/// Renders a view's peers (through a filter) batch by batch: the state of one streamed answer.
/// It holds the shared view and a position, nothing rendered.
#[derive(Debug)]
pub struct PeerCursor {
    view: Arc<PeersView>,
    filter: PeerFilter,
    next: usize,
    count: usize,
}

impl PeerCursor {
    /// A cursor at the first peer of `view`.
    pub fn new(view: Arc<PeersView>, filter: PeerFilter) -> Self {
        Self {
            view,
            filter,
            next: 0,
            count: 0,
        }
    }

    /// Appends the next peers passing the filter (comma separated, as [`PeersView::render`]
    /// writes them) until `out` holds at least `target` bytes or none is left, with the live
    /// fields as of `now`; answers whether every peer has been rendered.
    pub fn fill(&mut self, out: &mut Vec<u8>, target: usize, now: Instant) -> bool {
        let now_nanos = nanos_since(self.view.epoch, now);
        let unfiltered = self.filter.is_empty();
        while out.len() < target {
            let Some(rec) = self.view.peers.get(self.next) else {
                return true;
            };
            self.next += 1;
            if !unfiltered && !self.filter.matches(rec) {
                continue;
            }
            if self.count > 0 {
                out.push(b',');
            }
            render_peer_at(out, rec, now_nanos);
            self.count += 1;
        }
        self.next >= self.view.peers.len()
    }

    /// Peers rendered so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The view this cursor walks.
    pub fn view(&self) -> &PeersView {
        &self.view
    }
}

/// Appends one peer's JSON object with `last_seen` and `age_ms` as of `now`.
pub fn render_peer(out: &mut Vec<u8>, rec: &PeerRecord, epoch: Instant, now: Instant) {
    render_peer_at(out, rec, nanos_since(epoch, now));
}

fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// [`render_peer`] with `now` as nanoseconds since the registry's epoch (computed once per
/// listing rather than once per peer).
fn render_peer_at(out: &mut Vec<u8>, rec: &PeerRecord, now_nanos: u64) {
    let (head, tail) = rec.json.split_at(rec.level_end as usize);
    out.reserve(head.len() + rec.shape.json.len() + tail.len() + 64);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(rec.shape.json.as_bytes());
    out.extend_from_slice(tail.as_bytes());
    out.extend_from_slice(b",\"last_seen\":\"");
    push_iso8601(out, rec.last_seen_micros());
    out.extend_from_slice(b"\",\"age_ms\":");
    let beat = rec.last_beat_nanos.load(Ordering::Relaxed);
    push_u64(out, now_nanos.saturating_sub(beat) / 1_000_000);
    out.push(b'}');
}

/// Appends `n` in decimal without allocating.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}
