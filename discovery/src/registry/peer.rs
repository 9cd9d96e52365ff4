//! One peer's record: the parsed fields filters need, its JSON pre-serialised at registration,
//! and the parts every heartbeat changes (`last_seen`, last beat) in atomics shared with readers.
//! Branch, type and services are interned as a [`Shape`] so that 100,000 similar peers do not
//! hold 100,000 copies.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::PeerRegistry;
use crate::validate::CellInfo;

/// Length of a per-cell secret in bytes (sent as 32 hex digits).
pub const SECRET_LEN: usize = 16;

/// What peers of one kind share (branch, type, services), interned by the registry so that
/// 100,000 similar peers do not hold 100,000 copies.
#[derive(Debug)]
pub struct Shape {
    branch: Box<str>,
    cell_type: Box<str>,
    services: Box<[Box<str>]>,
    /// `,"services":[..],"branch":"..","type":".."`
    pub(super) json: Box<str>,
}

pub(super) fn json_str(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

impl Shape {
    fn json_of(info: &CellInfo) -> String {
        let services: Vec<String> = info.services.iter().map(|x| json_str(x)).collect();
        format!(
            ",\"services\":[{}],\"branch\":{},\"type\":{}",
            services.join(","),
            json_str(&info.branch),
            json_str(&info.cell_type)
        )
    }
}

/// One registration of a peer: parsed fields for filtering, pre-serialised JSON, and the parts
/// that change with every heartbeat (`last_seen`, last beat) in atomics shared with readers.
/// A level change makes a new record (and a new revision).
#[derive(Debug)]
pub struct PeerRecord {
    /// Cell id.
    pub cell_id: Arc<str>,
    /// Lease id of this registration.
    pub incarnation: u64,
    /// Current level.
    pub level: f64,
    pub(super) shape: Arc<Shape>,
    /// `{"cell_id":..,"ip":..,"port":N,"consciousness_level":L` + `,"hostname":..,"incarnation":N`
    pub(super) json: Box<str>,
    level_start: u32,
    pub(super) level_end: u32,
    last_seen_micros: AtomicI64,
    pub(super) last_beat_nanos: AtomicU64,
}

impl PeerRecord {
    pub(super) fn new(
        info: &CellInfo,
        cell_id: Arc<str>,
        incarnation: u64,
        shape: Arc<Shape>,
    ) -> Self {
        let pre = format!(
            "{{\"cell_id\":{},\"ip\":{},\"port\":{},\"consciousness_level\":",
            json_str(&cell_id),
            json_str(&info.ip),
            info.port
        );
        let tail = format!(
            ",\"hostname\":{},\"incarnation\":{}",
            json_str(&info.hostname),
            incarnation
        );
        Self::assemble(
            cell_id,
            incarnation,
            info.consciousness_level,
            shape,
            &pre,
            &tail,
            0,
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        cell_id: Arc<str>,
        incarnation: u64,
        level: f64,
        shape: Arc<Shape>,
        pre: &str,
        tail: &str,
        seen: i64,
        beat: u64,
    ) -> Self {
        let level_text = serde_json::to_string(&level).unwrap_or_else(|_| "0.0".into());
        let mut json = String::with_capacity(pre.len() + level_text.len() + tail.len());
        json.push_str(pre);
        json.push_str(&level_text);
        let level_end = json.len();
        json.push_str(tail);
        Self {
            cell_id,
            incarnation,
            level,
            shape,
            json: json.into_boxed_str(),
            level_start: u32::try_from(pre.len()).unwrap_or(u32::MAX),
            level_end: u32::try_from(level_end).unwrap_or(u32::MAX),
            last_seen_micros: AtomicI64::new(seen),
            last_beat_nanos: AtomicU64::new(beat),
        }
    }

    pub(super) fn with_level(&self, level: f64) -> Self {
        let pre = &self.json[..self.level_start as usize];
        let tail = &self.json[self.level_end as usize..];
        Self::assemble(
            self.cell_id.clone(),
            self.incarnation,
            level,
            self.shape.clone(),
            pre,
            tail,
            self.last_seen_micros(),
            self.last_beat_nanos.load(Ordering::Relaxed),
        )
    }

    pub(super) fn touch(&self, wall_micros: i64, beat_nanos: u64) {
        self.last_seen_micros.store(wall_micros, Ordering::Relaxed);
        self.last_beat_nanos.store(beat_nanos, Ordering::Relaxed);
    }

    /// Wall-clock time of the last heartbeat, microseconds since the epoch.
    pub fn last_seen_micros(&self) -> i64 {
        self.last_seen_micros.load(Ordering::Relaxed)
    }

    /// Branch.
    pub fn branch(&self) -> &str {
        &self.shape.branch
    }

    /// Cell type (`type` on the wire).
    pub fn cell_type(&self) -> &str {
        &self.shape.cell_type
    }

    /// Services offered.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.shape.services.iter().map(|s| &**s)
    }
}

impl PeerRegistry {
    /// The interned shape of `info` (shapes no peer uses any more are dropped now and then).
    pub(super) fn shape(&mut self, info: &CellInfo) -> Arc<Shape> {
        let json = Shape::json_of(info);
        if let Some(s) = self.shapes.get(json.as_str()) {
            return s.clone();
        }
        if self.shapes.len() >= self.shapes_prune_at {
            self.shapes.retain(|_, s| Arc::strong_count(s) > 1);
            self.shapes_prune_at = (self.shapes.len() * 2).max(1024);
        }
        let shape = Arc::new(Shape {
            branch: info.branch.as_str().into(),
            cell_type: info.cell_type.as_str().into(),
            services: info.services.iter().map(|x| x.as_str().into()).collect(),
            json: json.clone().into_boxed_str(),
        });
        self.shapes.insert(json.into_boxed_str(), shape.clone());
        shape
    }
}

/// Compares a presented hex secret with the expected bytes in constant time.
pub(super) fn secret_matches(expected: &[u8; SECRET_LEN], given: &str) -> bool {
    let mut got = [0u8; SECRET_LEN];
    if hex::decode_to_slice(given.trim(), &mut got).is_err() {
        return false;
    }
    expected
        .iter()
        .zip(got.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}
