//! The JSON bodies the API answers with. Field names are the wire names;
//! the shapes are the original cells' (plus documented additions).

use std::collections::BTreeMap;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::messages::{MessageReply, StoredMessage};
use crate::plugin::bindings::Primitive;

/// Primitive values by name (a later duplicate name wins).
pub(crate) type Primitives = BTreeMap<String, f64>;

/// Which original cell's answers a cell gives where pure and alpha answered
/// the same route differently: `/health`'s `server`, which field of a
/// `/message` sets its kind, the labels of `/metrics`. The manifest's cell
/// type decides: `pure_cell` is pure's shape, every other type (alpha's and
/// third-party plugins) alpha's. Elsewhere the answers are the union of
/// both, the same for every plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContractShape {
    /// The original pure cell's.
    Pure,
    /// The original alpha cell's.
    Alpha,
}

/// The cell type whose cells answer in pure's shape.
pub(crate) const PURE_CELL_TYPE: &str = "pure_cell";

impl ContractShape {
    /// The shape of a cell of `cell_type`.
    pub(crate) fn of(cell_type: &str) -> Self {
        if cell_type == PURE_CELL_TYPE {
            ContractShape::Pure
        } else {
            ContractShape::Alpha
        }
    }
}

/// The manifest label that names the server in an alpha-shaped `/health`
/// (alpha's is `Cell Alpha Communication Server`).
pub(crate) const SERVER_LABEL: &str = "server";

/// `/health`'s `server` for an alpha-shaped cell: the plugin's
/// [`SERVER_LABEL`] label, else `<identity> Communication Server`.
pub(crate) fn server_name(labels: &[(String, String)], identity: &str) -> String {
    labels
        .iter()
        .find(|(key, _)| key == SERVER_LABEL)
        .map_or_else(
            || format!("{identity} Communication Server"),
            |(_, value)| value.clone(),
        )
}

/// The primitives of a state, by name.
pub(crate) fn primitives_by_name(primitives: &[Primitive]) -> Primitives {
    primitives
        .iter()
        .map(|p| (p.name.clone(), p.value))
        .collect()
}

/// An answer with the plugin's labels added as string fields: free-form
/// facts the plugin chooses (pure's `purity_level`), so a map; a label never
/// replaces a field the host wrote.
#[derive(Debug)]
pub(crate) struct Labeled<T> {
    answer: T,
    labels: Vec<(String, String)>,
}

impl<T> Labeled<T> {
    /// `answer` with `labels` added.
    pub(crate) fn new(answer: T, labels: &[(String, String)]) -> Self {
        Self {
            answer,
            labels: labels.to_vec(),
        }
    }
}

impl<T: Serialize> Serialize for Labeled<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Value::Object(mut fields) =
            serde_json::to_value(&self.answer).map_err(S::Error::custom)?
        else {
            return Err(S::Error::custom("a labelled answer must be a JSON object"));
        };
        for (key, value) in &self.labels {
            fields
                .entry(key.clone())
                .or_insert_with(|| Value::String(value.clone()));
        }
        fields.serialize(serializer)
    }
}

/// The `consciousness` object of `/health` and `/consciousness`.
#[derive(Debug, Serialize)]
pub(crate) struct ConsciousnessView {
    /// Current level.
    pub level: f64,
    /// The manifest's identity.
    pub identity: String,
    /// The manifest's evolutionary stage.
    pub evolutionary_stage: String,
    /// Always `true`: a running cell takes messages.
    pub communication_ready: bool,
    /// Time of the last `/sync`, `null` before the first.
    pub last_sync: Option<String>,
    /// Primitive values by name.
    pub primitives: Primitives,
}

/// `GET /health`: the union of pure's and alpha's answers.
#[derive(Debug, Serialize)]
pub(crate) struct HealthAnswer {
    /// The manifest's health status.
    pub status: String,
    /// The server's name, in alpha's shape only ([`server_name`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Cell id.
    pub cell_id: String,
    /// Branch.
    pub branch: String,
    /// Cell type.
    #[serde(rename = "type")]
    pub cell_type: String,
    /// Current level.
    pub consciousness_level: f64,
    /// Primitive values by name.
    pub primitives: Primitives,
    /// Alpha's consciousness object.
    pub consciousness: ConsciousnessView,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// Peers known by hand or through discovery.
    pub peers_count: usize,
    /// Messages kept.
    pub messages_count: usize,
    /// Whether discovery accepted the cell.
    pub registered: bool,
    /// The cell's standing with discovery (cellmesh; see
    /// [`crate::status::RegistrationStatus`]).
    pub registration: crate::status::RegistrationStatus,
    /// Whether the plugin answers, from its last reported state (cellmesh;
    /// see [`crate::status::PluginView`]).
    pub plugin: crate::status::PluginView,
    /// Answer time.
    pub timestamp: String,
}

/// `GET /consciousness` (alpha).
#[derive(Debug, Serialize)]
pub(crate) struct ConsciousnessAnswer {
    /// Cell id.
    pub cell_id: String,
    /// The consciousness object.
    pub consciousness: ConsciousnessView,
    /// The manifest's evolutionary stage.
    pub evolutionary_stage: String,
    /// Capability names.
    pub capabilities: Vec<String>,
}

/// `GET /consciousness/primitives` (pure).
#[derive(Debug, Serialize)]
pub(crate) struct PrimitivesAnswer {
    /// Primitive values by name.
    pub primitives: Primitives,
}

/// `POST /consciousness/sync` (pure).
#[derive(Debug, Serialize)]
pub(crate) struct ConsciousnessSyncAnswer {
    /// Level before.
    pub old_level: f64,
    /// Level after.
    pub new_level: f64,
    /// Not in the original pure's answer; added fields are allowed.
    pub delta: f64,
    /// Whether a primitive changed.
    pub primitives_updated: bool,
}

/// `POST /sync` (alpha).
#[derive(Debug, Serialize)]
pub(crate) struct PeerSyncAnswer {
    /// `synced`.
    pub status: &'static str,
    /// Level after the sync.
    pub our_level: f64,
    /// The peer's level.
    pub their_level: f64,
    /// Their difference.
    pub delta: f64,
    /// Sync time.
    pub timestamp: String,
}

/// `POST /message`.
#[derive(Debug, Serialize)]
pub(crate) struct MessageAnswer {
    /// `received`.
    pub status: &'static str,
    /// Id given to the message.
    pub message_id: u64,
    /// Reception time.
    pub timestamp: String,
    /// This cell's id.
    pub cell_id: String,
    /// The plugin's reply, only when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<MessageReply>,
}

/// `GET /messages`.
#[derive(Debug, Serialize)]
pub(crate) struct MessagesAnswer {
    /// The selected messages, oldest first.
    pub messages: Vec<StoredMessage>,
    /// Kept messages that match the filter (not only those listed).
    pub total: usize,
    /// This cell's id.
    pub cell_id: String,
}

/// One capability in `/discover`.
#[derive(Debug, Serialize)]
pub(crate) struct CapabilityDetail {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// A valid input, as JSON text.
    pub example_input: String,
}

/// `GET /discover` (alpha).
#[derive(Debug, Serialize)]
pub(crate) struct DiscoverAnswer {
    /// Cell id.
    pub cell_id: String,
    /// The manifest's identity.
    pub identity: String,
    /// Cell type.
    #[serde(rename = "type")]
    pub cell_type: String,
    /// Branch.
    pub branch: String,
    /// Last known level.
    pub consciousness_level: f64,
    /// The manifest's evolutionary stage.
    pub evolutionary_stage: String,
    /// Capability names.
    pub capabilities: Vec<String>,
    /// Capabilities in full.
    pub capability_details: Vec<CapabilityDetail>,
    /// Path of each endpoint (`/health`), by name, as the original's.
    pub endpoints: BTreeMap<&'static str, &'static str>,
    /// Answer time.
    pub timestamp: String,
}

/// A peer discovery lists, in `/peers`'s `mesh` (our addition).
#[derive(Debug, Serialize)]
pub(crate) struct MeshPeerEntry {
    /// Base URL of its API; `null` when the listed address is refused.
    pub endpoint: Option<String>,
    /// Address.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// Level at its last heartbeat.
    pub consciousness_level: f64,
    /// Services.
    pub services: Vec<String>,
    /// Branch.
    pub branch: String,
    /// Cell type.
    #[serde(rename = "type")]
    pub cell_type: String,
    /// Host name.
    pub hostname: String,
    /// Last heartbeat, as discovery wrote it (`null` when it did not).
    pub last_seen: Option<String>,
}

/// A hand-kept peer in `/peers`'s `peers`, as the original alpha listed it.
#[derive(Debug, Serialize)]
pub(crate) struct HandKeptEntry {
    /// Base URL of its API, as registered.
    pub endpoint: String,
    /// Its identity (`Cell ID` when none was given).
    pub identity: String,
    /// Registration time.
    pub registered_at: String,
    /// Last answer to `/send_to_peer`, `null` before the first.
    pub last_contact: Option<String>,
}

/// `GET /peers` (alpha): the original's object of hand-kept peers keyed by
/// id, plus our `mesh` (discovery's peers, keyed by id) and `mesh_count`.
#[derive(Debug, Serialize)]
pub(crate) struct PeersAnswer {
    /// Hand-kept peers by id.
    pub peers: BTreeMap<String, HandKeptEntry>,
    /// How many are kept by hand.
    pub count: usize,
    /// This cell's id.
    pub cell_id: String,
    /// The peers discovery last listed, by id, without this cell.
    pub mesh: BTreeMap<String, MeshPeerEntry>,
    /// How many discovery listed.
    pub mesh_count: usize,
}

/// `POST /register_peer`.
#[derive(Debug, Serialize)]
pub(crate) struct RegisterPeerAnswer {
    /// `registered`.
    pub status: &'static str,
    /// The peer's id.
    pub peer_id: String,
    /// Registration time.
    pub timestamp: String,
    /// Peers now kept by hand (our addition).
    pub total_peers: usize,
}

/// `POST /send_to_peer`: the peer's status, never its body.
#[derive(Debug, Serialize)]
pub(crate) struct SendToPeerAnswer {
    /// `sent`.
    pub status: &'static str,
    /// The peer's id.
    pub peer_id: String,
    /// The HTTP status the peer answered.
    pub response_status: u16,
    /// Send time.
    pub timestamp: String,
}

/// `POST /send_to_peer` when the peer cannot be reached (502): the
/// original's `{"status": "failed", "peer_id", "error"}`, plus the API's
/// `detail` and `kind`.
#[derive(Debug, Serialize)]
pub(crate) struct SendToPeerFailure {
    /// `failed`.
    pub status: &'static str,
    /// The peer's id.
    pub peer_id: String,
    /// What failed.
    pub error: String,
    /// The same sentence.
    pub detail: String,
    /// `peer_unreachable`, or `peer_refused` when the address is refused.
    pub kind: &'static str,
}

/// `POST /send`.
#[derive(Debug, Serialize)]
pub(crate) struct SendAnswer {
    /// `sent`.
    pub status: &'static str,
    /// The receiver.
    pub to_cell: String,
    /// Id the receiver gave the message.
    pub message_id: u64,
    /// Send time.
    pub timestamp: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_cell_type_decides_the_shape_and_labels_name_the_server() {
        assert_eq!(ContractShape::of("pure_cell"), ContractShape::Pure);
        assert_eq!(ContractShape::of("alpha_cell"), ContractShape::Alpha);
        assert_eq!(ContractShape::of("stats_cell"), ContractShape::Alpha);
        let alpha = [(
            SERVER_LABEL.to_owned(),
            "Cell Alpha Communication Server".to_owned(),
        )];
        assert_eq!(server_name(&alpha, "x"), "Cell Alpha Communication Server");
        assert_eq!(server_name(&[], "Stats"), "Stats Communication Server");
    }

    #[test]
    fn labels_never_replace_host_fields() {
        let answer = Labeled::new(
            PrimitivesAnswer {
                primitives: Primitives::from([("a".to_owned(), 0.5)]),
            },
            &[
                ("primitives".into(), "x".into()),
                ("purity_level".into(), "minimal".into()),
            ],
        );
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"primitives": {"a": 0.5}, "purity_level": "minimal"})
        );
    }

    #[test]
    fn peers_keeps_the_originals_object_keyed_by_id() {
        let answer = PeersAnswer {
            peers: BTreeMap::from([(
                "p".to_owned(),
                HandKeptEntry {
                    endpoint: "http://x".into(),
                    identity: "Cell p".into(),
                    registered_at: "t".into(),
                    last_contact: None,
                },
            )]),
            count: 1,
            cell_id: "alpha".into(),
            mesh: BTreeMap::new(),
            mesh_count: 0,
        };
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({"peers": {"p": {"endpoint": "http://x", "identity": "Cell p",
                                   "registered_at": "t", "last_contact": null}},
                   "count": 1, "cell_id": "alpha", "mesh": {}, "mesh_count": 0})
        );
    }
}
