//! One peer's record: its JSON pre-serialised at registration (the only copy of its fields), the
//! parsed level filters need, and the parts every heartbeat changes (`last_seen`, last beat) in
//! atomics shared with readers. Branch, type and services are interned as a [`Shape`] so that
//! 100,000 similar peers do not hold 100,000 copies; [`Storage`] holds the interned shapes and
//! the [`Ledger`] of what the records cost against the registry's byte budget.
//!
//! Two sums are kept against the registry's byte budget (`max_bytes`): what the *registered*
//! records cost (predictable: it moves with registrations and departures only), and what every
//! record *alive* costs, counted by the [`Ledger`] from a record's creation to its drop, so it
//! includes records that left but are still held by an answer being sent to a slow reader, a
//! watch stream or the watch history. A registration is refused when the registered records
//! would pass the budget, or the records alive twice the budget: the memory of records stays
//! under `2 x max_bytes` whatever readers do, and in normal operation (the history holds a
//! thousand records at most) only the first rule ever applies.
//!
//! Stored once: a registration's text lives only in its JSON (the record's head and tail and its
//! shape's JSON); filters compare against the JSON string literals (see [`json_literal_eq`])
//! and the accessors decode them only when they hold escapes. The shape table's key is the
//! shape itself, not a copy of its JSON.

use std::borrow::{Borrow, Cow};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use cellmesh_wire::limits::{RegistrationText, registration_cost};

use super::{PeerRegistry, RegistryError};
use crate::validate::CellInfo;

/// Length of a per-cell secret in bytes (sent as 32 hex digits).
pub const SECRET_LEN: usize = 16;

/// Where a JSON string literal (quotes included) lies in a shape's JSON.
type Span = (u32, u32);

/// What peers of one kind share (branch, type, services), interned by the registry.
#[derive(Debug)]
pub struct Shape {
    /// `,"services":[..],"branch":"..","type":".."`: the only copy of these fields.
    pub(super) json: Box<str>,
    services: Box<[Span]>,
    branch: Span,
    cell_type: Span,
    /// The registry's ledger, which this shape's records are counted in.
    ledger: Arc<Ledger>,
}

/// What the records alive cost, in bytes (see the module docs); shared by a registry and its
/// records, which count themselves in on creation and out on drop.
#[derive(Debug, Default)]
pub struct Ledger(AtomicUsize);

impl Ledger {
    /// Bytes counted now.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// `v` as a JSON string literal.
pub(super) fn json_str(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

fn span(start: usize, end: usize) -> Span {
    (
        u32::try_from(start).unwrap_or(u32::MAX),
        u32::try_from(end).unwrap_or(u32::MAX),
    )
}

impl Shape {
    /// The shape of `info`, its JSON written once with the place of each literal.
    fn of(info: &CellInfo, ledger: Arc<Ledger>) -> Self {
        let mut json =
            String::with_capacity(64 + info.services.iter().map(String::len).sum::<usize>());
        let mut services = Vec::with_capacity(info.services.len());
        json.push_str(",\"services\":[");
        for (i, s) in info.services.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            let start = json.len();
            json.push_str(&json_str(s));
            services.push(span(start, json.len()));
        }
        json.push_str("],\"branch\":");
        let start = json.len();
        json.push_str(&json_str(&info.branch));
        let branch = span(start, json.len());
        json.push_str(",\"type\":");
        let start = json.len();
        json.push_str(&json_str(&info.cell_type));
        let cell_type = span(start, json.len());
        Self {
            json: json.into_boxed_str(),
            services: services.into_boxed_slice(),
            branch,
            cell_type,
            ledger,
        }
    }

    fn literal(&self, (start, end): Span) -> &str {
        self.json
            .get(start as usize..end as usize)
            .unwrap_or("\"\"")
    }
}

/// Whether the JSON string literal `lit` (quotes included, as `serde_json` writes it) encodes
/// `raw`, without decoding or allocating.
pub fn json_literal_eq(lit: &str, raw: &str) -> bool {
    let Some(inner) = lit
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .map(str::as_bytes)
    else {
        return false;
    };
    // Escaping only lengthens: equal lengths mean no escapes, so the bytes must be equal.
    match inner.len().cmp(&raw.len()) {
        std::cmp::Ordering::Equal => return inner == raw.as_bytes(),
        std::cmp::Ordering::Less => return false,
        std::cmp::Ordering::Greater => {}
    }
    let mut at = 0;
    let mut esc: [u8; 6];
    for b in raw.bytes() {
        let piece: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0A => b"\\n",
            0x0C => b"\\f",
            0x0D => b"\\r",
            0x00..=0x1F => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                esc = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ];
                &esc
            }
            _ => std::slice::from_ref(&b),
        };
        if inner.get(at..at + piece.len()) != Some(piece) {
            return false;
        }
        at += piece.len();
    }
    at == inner.len()
}

/// The text a JSON string literal encodes (borrowed when it holds no escapes).
fn decode(lit: &str) -> Cow<'_, str> {
    match lit.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
        _ => Cow::Owned(serde_json::from_str(lit).unwrap_or_default()),
    }
}

/// One registration of a peer: pre-serialised JSON (the only copy of its fields), the level for
/// filters, and the parts that change with every heartbeat (`last_seen`, last beat) in atomics
/// shared with readers. A level change makes a new record (and a new revision).
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
    /// What this registration costs against the byte budget
    /// ([`cellmesh_wire::limits::registration_cost`]; the same whatever the level).
    cost: u32,
    last_seen_micros: AtomicI64,
    pub(super) last_beat_nanos: AtomicU64,
}

/// What `info` costs against the per-registration and the registry's byte budgets.
pub fn cost_of(info: &CellInfo) -> usize {
    registration_cost(&RegistrationText {
        cell_id: &info.cell_id,
        ip: &info.ip,
        hostname: &info.hostname,
        branch: &info.branch,
        cell_type: &info.cell_type,
        services: &info.services,
    })
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
        let cost = u32::try_from(cost_of(info)).unwrap_or(u32::MAX);
        Self::assemble(
            Parts {
                cell_id,
                incarnation,
                shape,
                cost,
            },
            info.consciousness_level,
            &pre,
            &tail,
            (0, 0),
        )
    }

    fn assemble(parts: Parts, level: f64, pre: &str, tail: &str, (seen, beat): (i64, u64)) -> Self {
        let level_text = serde_json::to_string(&level).unwrap_or_else(|_| "0.0".into());
        let mut json = String::with_capacity(pre.len() + level_text.len() + tail.len());
        json.push_str(pre);
        json.push_str(&level_text);
        let level_end = json.len();
        json.push_str(tail);
        parts
            .shape
            .ledger
            .0
            .fetch_add(parts.cost as usize, Ordering::Relaxed);
        Self {
            cell_id: parts.cell_id,
            incarnation: parts.incarnation,
            level,
            shape: parts.shape,
            json: json.into_boxed_str(),
            level_start: u32::try_from(pre.len()).unwrap_or(u32::MAX),
            level_end: u32::try_from(level_end).unwrap_or(u32::MAX),
            cost: parts.cost,
            last_seen_micros: AtomicI64::new(seen),
            last_beat_nanos: AtomicU64::new(beat),
        }
    }

    pub(super) fn with_level(&self, level: f64) -> Self {
        let pre = &self.json[..self.level_start as usize];
        let tail = &self.json[self.level_end as usize..];
        Self::assemble(
            Parts {
                cell_id: self.cell_id.clone(),
                incarnation: self.incarnation,
                shape: self.shape.clone(),
                cost: self.cost,
            },
            level,
            pre,
            tail,
            (
                self.last_seen_micros(),
                self.last_beat_nanos.load(Ordering::Relaxed),
            ),
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

    /// What this registration costs against the byte budgets, in bytes (an upper bound of the
    /// length of its JSON without `last_seen` and `age_ms`).
    pub fn cost(&self) -> usize {
        self.cost as usize
    }

    /// Length of this peer's JSON without `last_seen` and `age_ms` (at most [`Self::cost`]).
    pub fn stored_len(&self) -> usize {
        self.json.len() + self.shape.json.len() + 1
    }

    /// Branch.
    pub fn branch(&self) -> Cow<'_, str> {
        decode(self.shape.literal(self.shape.branch))
    }

    /// Cell type (`type` on the wire).
    pub fn cell_type(&self) -> Cow<'_, str> {
        decode(self.shape.literal(self.shape.cell_type))
    }

    /// Services offered.
    pub fn services(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.shape
            .services
            .iter()
            .map(|s| decode(self.shape.literal(*s)))
    }

    /// Whether the peer is on `branch` (compared without decoding).
    pub fn is_branch(&self, branch: &str) -> bool {
        json_literal_eq(self.shape.literal(self.shape.branch), branch)
    }

    /// Whether the peer has type `cell_type` (compared without decoding).
    pub fn is_type(&self, cell_type: &str) -> bool {
        json_literal_eq(self.shape.literal(self.shape.cell_type), cell_type)
    }

    /// Whether the peer offers `service` (compared without decoding).
    pub fn offers(&self, service: &str) -> bool {
        self.shape
            .services
            .iter()
            .any(|s| json_literal_eq(self.shape.literal(*s), service))
    }
}

impl Drop for PeerRecord {
    fn drop(&mut self) {
        self.shape
            .ledger
            .0
            .fetch_sub(self.cost as usize, Ordering::Relaxed);
    }
}

/// The parts of a record that a level change keeps.
struct Parts {
    cell_id: Arc<str>,
    incarnation: u64,
    shape: Arc<Shape>,
    cost: u32,
}

/// A shape in the intern table, found by its JSON (so the table holds no copy of the JSON).
#[derive(Debug)]
struct Interned(Arc<Shape>);

impl Borrow<str> for Interned {
    fn borrow(&self) -> &str {
        &self.0.json
    }
}

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        self.0.json == other.0.json
    }
}

impl Eq for Interned {}

impl Hash for Interned {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash like the `str` it borrows as.
        (*self.0.json).hash(state);
    }
}

/// What the registrations take: the interned shapes, what the registered records cost and the
/// [`Ledger`] of the records alive (checked against [`super::RegistrySettings::max_bytes`]).
#[derive(Debug)]
pub struct Storage {
    shapes: HashSet<Interned>,
    prune_at: usize,
    registered: usize,
    ledger: Arc<Ledger>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            shapes: HashSet::new(),
            prune_at: 1024,
            registered: 0,
            ledger: Arc::default(),
        }
    }
}

impl Storage {
    /// What the registered records cost, in bytes.
    pub fn bytes(&self) -> usize {
        self.registered
    }

    /// What every record alive costs, in bytes (registered ones and ones still held by readers
    /// or the watch history).
    pub fn alive_bytes(&self) -> usize {
        self.ledger.bytes()
    }

    /// Interned shapes (some may be unused until the next prune).
    pub fn shapes(&self) -> usize {
        self.shapes.len()
    }
}

impl PeerRegistry {
    /// The interned shape of `info` (shapes no peer uses any more are dropped now and then).
    pub(super) fn shape(&mut self, info: &CellInfo) -> Arc<Shape> {
        let storage = &mut self.storage;
        let shape = Shape::of(info, storage.ledger.clone());
        if let Some(s) = storage.shapes.get(&*shape.json) {
            return s.0.clone();
        }
        if storage.shapes.len() >= storage.prune_at {
            storage.shapes.retain(|s| Arc::strong_count(&s.0) > 1);
            storage.prune_at = (storage.shapes.len() * 2).max(1024);
        }
        let shape = Arc::new(shape);
        storage.shapes.insert(Interned(shape.clone()));
        shape
    }

    /// Refuses `info` with [`RegistryError::Full`] when registering it (replacing the
    /// registration of its id, if any) would take the registered records past the registry's
    /// byte budget, or the records alive past twice the budget (see the module docs).
    pub(super) fn check_budget(&self, info: &CellInfo) -> Result<(), RegistryError> {
        let freed = self
            .peers
            .get(info.cell_id.as_str())
            .map_or(0, |e| e.record.cost());
        let cost = cost_of(info);
        let max = self.settings.max_bytes;
        let registered = self
            .storage
            .registered
            .saturating_sub(freed)
            .saturating_add(cost);
        let alive = self.storage.ledger.bytes().saturating_add(cost);
        if registered > max || alive > max.saturating_mul(2) {
            return Err(RegistryError::Full);
        }
        Ok(())
    }

    /// Counts `record` as registered.
    pub(super) fn account(&mut self, record: &PeerRecord) {
        self.storage.registered += record.cost();
    }

    /// Stops counting `record` as registered (it left).
    pub(super) fn release(&mut self, record: &PeerRecord) {
        self.storage.registered = self.storage.registered.saturating_sub(record.cost());
    }

    /// What the registrations take (shapes and bytes).
    pub fn storage(&self) -> &Storage {
        &self.storage
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_compare_like_their_text() {
        for raw in [
            "",
            "main",
            "a\"b",
            "c\\d",
            "tab\there",
            "\u{1}\u{1f}",
            "é\u{2028}",
        ] {
            let lit = json_str(raw);
            assert!(json_literal_eq(&lit, raw), "{raw:?}");
            assert_eq!(decode(&lit), raw);
            assert!(!json_literal_eq(&lit, &format!("{raw}x")), "{raw:?}");
        }
        assert!(!json_literal_eq("\"main\"", "mai"));
        assert!(!json_literal_eq("main", "main"));
    }
}
