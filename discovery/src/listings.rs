//! [`Listings`]: the `/peers` answers rendered at once, shared between readers and counted
//! until the last reader lets go, so that what readers hold stays bounded (see
//! [`crate::http::peers`] for how answers use it). Kept apart from the HTTP layer so the
//! server state can own it without a module circle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use tokio::time::Instant;

/// How long the unfiltered listing is shared between readers of the same revision.
pub const SHARE_FOR: Duration = Duration::from_millis(100);

/// Most the answers rendered at once and still held (cached, or being sent to readers) may take
/// together; beyond, answers are streamed in batches until readers let go.
pub const AT_ONCE_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The answers rendered at once: the shared unfiltered listing (one per revision and
/// [`SHARE_FOR`]) and the count of the bytes of all of them still alive.
#[derive(Debug, Default)]
pub struct Listings {
    shared: Mutex<Option<Shared>>,
    alive: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Shared {
    revision: u64,
    rendered: Instant,
    body: Bytes,
}

/// An answer's bytes, counted in [`Listings`] until the last reader lets go.
struct Counted {
    bytes: Vec<u8>,
    alive: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.alive.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

impl Listings {
    /// Bytes of the answers rendered at once and still alive (cached or being sent).
    pub fn alive_bytes(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// `render()` (at most `bound` bytes) as a counted body, unless that would take the answers
    /// alive past [`AT_ONCE_BYTES_MAX`] (then `None`: stream it).
    pub(crate) fn render(&self, bound: usize, render: impl FnOnce() -> Vec<u8>) -> Option<Bytes> {
        if self.alive_bytes() + bound > AT_ONCE_BYTES_MAX {
            return None;
        }
        let bytes = render();
        self.alive.fetch_add(bytes.len(), Ordering::Relaxed);
        Some(Bytes::from_owner(Counted {
            bytes,
            alive: self.alive.clone(),
        }))
    }

    /// The shared listing of `revision` rendered less than [`SHARE_FOR`] before `now`, else
    /// [`Listings::render`] of a new one, which is then shared.
    pub(crate) fn shared(
        &self,
        revision: u64,
        now: Instant,
        bound: usize,
        render: impl FnOnce() -> Vec<u8>,
    ) -> Option<Bytes> {
        {
            let slot = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = slot.as_ref()
                && c.revision == revision
                && now.saturating_duration_since(c.rendered) < SHARE_FOR
            {
                return Some(c.body.clone());
            }
        }
        let body = self.render(bound, render)?;
        let mut slot = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(Shared {
            revision,
            rendered: now,
            body: body.clone(),
        });
        Some(body)
    }
}
