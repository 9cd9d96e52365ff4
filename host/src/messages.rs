//! Bounded in-memory logs: received messages (last 100, as the original)
//! and sync records (last 50).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// Messages kept, as the original cells did.
pub const MESSAGES_KEPT: usize = 100;
/// Sync records kept, as the original alpha did.
pub const SYNCS_KEPT: usize = 50;

/// A received message as `/messages` lists it: the original's record
/// (`from_cell`, `content`, `message_type`, `priority`, `metadata`,
/// `received_at`) plus `message_id` and `reply`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredMessage {
    /// Id given at reception (1, 2, ...): unique and increasing, unlike the
    /// original's (the count of stored messages).
    pub message_id: u64,
    /// Sender.
    pub from_cell: String,
    /// Content.
    pub content: String,
    /// Kind (`general` by default, as the original).
    pub message_type: String,
    /// Priority (`normal` by default).
    pub priority: String,
    /// Metadata as received (`{}` when none was sent).
    pub metadata: Value,
    /// Reception time, UTC ISO-8601.
    pub received_at: String,
    /// The plugin's reply, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<MessageReply>,
}

/// A plugin's reply to a message, as `/message` and `/messages` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageReply {
    /// Reply content.
    pub content: String,
    /// Kind of reply (`ack`, `answer`, ...).
    pub message_type: String,
}

/// The last [`MESSAGES_KEPT`] messages and a running id counter.
#[derive(Debug, Default)]
pub struct MessageStore {
    inner: Mutex<MessagesInner>,
}

#[derive(Debug, Default)]
struct MessagesInner {
    next_id: u64,
    received: u64,
    kept: VecDeque<StoredMessage>,
}

impl MessageStore {
    /// Assigns the next id (ids are given before the plugin sees the message).
    pub fn next_id(&self) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.next_id
    }

    /// Keeps a message, forgetting the oldest beyond [`MESSAGES_KEPT`].
    pub fn push(&self, message: StoredMessage) {
        let mut inner = self.lock();
        inner.received += 1;
        if inner.kept.len() == MESSAGES_KEPT {
            inner.kept.pop_front();
        }
        inner.kept.push_back(message);
    }

    /// The last `limit` messages (oldest first), optionally from one sender,
    /// and how many kept messages match the filter (the original's `total`).
    pub fn recent(&self, limit: usize, from_cell: Option<&str>) -> (Vec<StoredMessage>, usize) {
        let inner = self.lock();
        let matching = || {
            inner
                .kept
                .iter()
                .filter(|m| from_cell.is_none_or(|f| m.from_cell == f))
        };
        let total = matching().count();
        let selected: Vec<StoredMessage> = matching()
            .skip(total.saturating_sub(limit))
            .cloned()
            .collect();
        (selected, total)
    }

    /// Messages kept now.
    pub fn len(&self) -> usize {
        self.lock().kept.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages received since start.
    pub fn received(&self) -> u64 {
        self.lock().received
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MessagesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One sync with a peer: the original alpha's record (`peer_id`, `level`,
/// `timestamp`) plus ours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncRecord {
    /// The peer (`unknown` when it did not say, as the original).
    pub peer_id: String,
    /// Its level.
    pub level: f64,
    /// Ours after the sync.
    pub our_level: f64,
    /// Absolute difference.
    pub delta: f64,
    /// When, UTC ISO-8601.
    pub timestamp: String,
}

/// The last [`SYNCS_KEPT`] syncs.
#[derive(Debug, Default)]
pub struct SyncLog {
    kept: Mutex<VecDeque<SyncRecord>>,
}

impl SyncLog {
    /// Records a sync.
    pub fn push(&self, record: SyncRecord) {
        let mut kept = self.lock();
        if kept.len() == SYNCS_KEPT {
            kept.pop_front();
        }
        kept.push_back(record);
    }

    /// Time of the last sync.
    pub fn last_timestamp(&self) -> Option<String> {
        self.lock().back().map(|r| r.timestamp.clone())
    }

    /// Syncs kept now (alpha's `aios_cell_sync_count`).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<SyncRecord>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(store: &MessageStore, from: &str) -> StoredMessage {
        StoredMessage {
            message_id: store.next_id(),
            from_cell: from.into(),
            content: "c".into(),
            message_type: "general".into(),
            priority: "normal".into(),
            metadata: Value::Object(Default::default()),
            received_at: String::new(),
            reply: None,
        }
    }

    #[test]
    fn keeps_the_last_hundred_and_filters_by_sender() {
        let store = MessageStore::default();
        for i in 0..150 {
            let m = message(&store, if i % 2 == 0 { "a" } else { "b" });
            store.push(m);
        }
        assert_eq!(store.len(), MESSAGES_KEPT);
        assert_eq!(store.received(), 150);
        let (all, total) = store.recent(1000, None);
        assert_eq!(total, 100);
        assert_eq!(all.first().unwrap().message_id, 51);
        assert_eq!(all.last().unwrap().message_id, 150);
        let (from_a, _) = store.recent(3, Some("a"));
        assert_eq!(
            from_a.iter().map(|m| m.message_id).collect::<Vec<_>>(),
            vec![145, 147, 149]
        );
    }

    #[test]
    fn total_counts_the_messages_that_match_the_filter() {
        let store = MessageStore::default();
        for from in ["a", "b", "a", "a", "b"] {
            let m = message(&store, from);
            store.push(m);
        }
        assert_eq!(store.recent(2, Some("a")).1, 3);
        assert_eq!(store.recent(2, Some("a")).0.len(), 2);
        assert_eq!(store.recent(20, Some("nobody")), (Vec::new(), 0));
        assert_eq!(store.recent(0, None).1, 5);
    }

    #[test]
    fn the_sync_log_keeps_the_last_fifty() {
        let log = SyncLog::default();
        assert!(log.is_empty() && log.last_timestamp().is_none());
        for i in 0..60 {
            log.push(SyncRecord {
                peer_id: "p".into(),
                level: 1.0,
                our_level: 1.0,
                delta: 0.0,
                timestamp: i.to_string(),
            });
        }
        assert_eq!(log.len(), SYNCS_KEPT);
        assert_eq!(log.last_timestamp().as_deref(), Some("59"));
    }
}
