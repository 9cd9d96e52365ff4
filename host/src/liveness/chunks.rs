//! Splitting a host's cells into batches discovery takes, and sending
//! those batches a few at a time.

use std::future::Future;

use cellmesh_wire::batch::{BATCH_MAX_BYTES, BATCH_MAX_CELLS};
use serde::Serialize;
use tokio::task::JoinSet;

/// Batches of one call in flight at once: enough to overlap round trips
/// for 10,000 cells (10 batches), few enough not to queue on discovery's
/// workers ahead of other hosts.
pub(crate) const CONCURRENT_BATCHES: usize = 4;

/// Bytes left for the envelope of a batch body (`{"host_id":...,
/// "cells":[...]}`) besides its cells.
const ENVELOPE_BYTES: usize = 1024;

/// The most cells one batch names, and the most bytes its body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkLimits {
    /// Most entries per batch.
    pub cells: usize,
    /// Most bytes of entries per batch (JSON, with their commas).
    pub bytes: usize,
}

impl ChunkLimits {
    /// What discovery takes: [`BATCH_MAX_CELLS`] cells, a body of
    /// [`BATCH_MAX_BYTES`] (less the envelope, its `host_id` included).
    pub(crate) fn discovery(host_id: &str) -> Self {
        Self {
            cells: BATCH_MAX_CELLS,
            bytes: BATCH_MAX_BYTES.saturating_sub(ENVELOPE_BYTES + host_id.len()),
        }
    }
}

/// Splits `items` (each with its key: a cell's index, say) into chunks of
/// at most `limits.cells` items and `limits.bytes` bytes of JSON, in
/// order. An item larger than the byte limit alone goes in a chunk of its
/// own (discovery then refuses that chunk as too large).
pub(crate) fn chunk<K, T: Serialize>(items: Vec<(K, T)>, limits: ChunkLimits) -> Vec<Vec<(K, T)>> {
    let max_cells = limits.cells.max(1);
    let mut chunks = Vec::new();
    let mut current: Vec<(K, T)> = Vec::new();
    let mut bytes = 0usize;
    for (key, item) in items {
        // The entry and its comma; a failure to serialise is discovery's
        // to report, so it counts as nothing here.
        let size = serde_json::to_vec(&item).map_or(0, |v| v.len()) + 1;
        if !current.is_empty() && (current.len() >= max_cells || bytes + size > limits.bytes) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push((key, item));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// [`chunk`]s `items` for discovery's limits and makes one request of
/// each chunk with `request(host_id, entries)`; answers each request's
/// keys beside it, in order.
pub(crate) fn batch_requests<K, T: Serialize, R>(
    items: Vec<(K, T)>,
    host_id: &str,
    request: impl Fn(String, Vec<T>) -> R,
) -> (Vec<Vec<K>>, Vec<R>) {
    chunk(items, ChunkLimits::discovery(host_id))
        .into_iter()
        .map(|chunk| {
            let (keys, entries) = chunk.into_iter().unzip();
            (keys, request(host_id.to_owned(), entries))
        })
        .unzip()
}

/// Runs `call` on every request, at most `limit` at a time, and answers
/// the results in the requests' order. A panic in a call is passed on.
pub(crate) async fn in_parallel<R, T, F, Fut>(requests: Vec<R>, limit: usize, call: F) -> Vec<T>
where
    F: Fn(R) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let count = requests.len();
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut pending = requests.into_iter().enumerate();
    // Dropped (the liveness cancelled), the set aborts the calls in flight.
    let mut running = JoinSet::new();
    for (index, request) in pending.by_ref().take(limit.max(1)) {
        let future = call(request);
        running.spawn(async move { (index, future.await) });
    }
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => unreachable!("a call was cancelled while its set is held: {error}"),
        }
        if let Some((index, request)) = pending.next() {
            let future = call(request);
            running.spawn(async move { (index, future.await) });
        }
    }
    results
        .into_iter()
        .map(|result| result.expect("every call ran to its end"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn chunks_respect_the_cell_count_and_keep_the_order() {
        let items: Vec<(usize, u32)> = (0..2_501).map(|i| (i, i as u32)).collect();
        let chunks = chunk(items, ChunkLimits::discovery("host"));
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1000, 1000, 501]);
        let keys: Vec<usize> = chunks.into_iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(keys, (0..2_501).collect::<Vec<_>>());
    }

    #[test]
    fn chunks_respect_the_byte_budget() {
        // Entries of 102 bytes of JSON ("..." quoted, plus the comma: 103).
        let entry = "x".repeat(100);
        let items: Vec<(usize, String)> = (0..10).map(|i| (i, entry.clone())).collect();
        let limits = ChunkLimits {
            cells: 1000,
            bytes: 3 * 103,
        };
        let sizes: Vec<usize> = chunk(items, limits).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        // An entry larger than the budget goes alone.
        let big = vec![(0, "y".repeat(1_000)), (1, "z".to_owned())];
        let sizes: Vec<usize> = chunk(big, limits).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1]);
        assert!(chunk(Vec::<(usize, u8)>::new(), limits).is_empty());
    }

    #[test]
    fn the_discovery_budget_leaves_room_for_the_envelope() {
        let limits = ChunkLimits::discovery(&"h".repeat(128));
        assert_eq!(limits.cells, BATCH_MAX_CELLS);
        assert!(limits.bytes + 128 + 1024 <= BATCH_MAX_BYTES);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_limit_run_at_once_and_results_keep_their_order() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let results = in_parallel((0..10u64).collect(), 3, |i| {
            let (running, most) = (running.clone(), most.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                // Later requests finish first: the order must still hold.
                tokio::time::sleep(Duration::from_millis(100 - i * 10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }
        })
        .await;
        assert_eq!(results, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }
}
