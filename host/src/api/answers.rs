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
    /// Messages kept in all.
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
    /// Absolute URL of each endpoint, by name.
    pub endpoints: BTreeMap<&'static str, String>,
}

/// What discovery listed about a peer, as `/peers` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ListedFields {
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

/// What `/register_peer` recorded about a peer.
#[derive(Debug, Serialize)]
pub(crate) struct ManualFields {
    /// Its identity, `null` when not given.
    pub identity: Option<String>,
    /// Registration time.
    pub registered_at: String,
}

/// One peer in `/peers`: a listed peer has the [`ListedFields`], a hand-kept
/// one the [`ManualFields`], a peer both has both (and the hand-kept
/// endpoint).
#[derive(Debug, Serialize)]
pub(crate) struct PeerEntry {
    /// Cell id.
    pub cell_id: String,
    /// Base URL of its API.
    pub endpoint: String,
    /// `manual` when kept by hand, else `mesh`.
    pub source: &'static str,
    /// Discovery's facts, when it lists the peer.
    #[serde(flatten)]
    pub listed: Option<ListedFields>,
    /// The hand-kept facts, when registered by hand.
    #[serde(flatten)]
    pub manual: Option<ManualFields>,
}

/// `GET /peers`.
#[derive(Debug, Serialize)]
pub(crate) struct PeersAnswer {
    /// This cell's id.
    pub cell_id: String,
    /// How many are listed.
    pub count: usize,
    /// Peers by id.
    pub peers: Vec<PeerEntry>,
}

/// `POST /register_peer`.
#[derive(Debug, Serialize)]
pub(crate) struct RegisterPeerAnswer {
    /// `registered`.
    pub status: &'static str,
    /// The peer's id.
    pub peer_id: String,
    /// Peers now kept by hand.
    pub total_peers: usize,
}

/// `POST /send_to_peer`.
#[derive(Debug, Serialize)]
pub(crate) struct SendToPeerAnswer {
    /// `sent`.
    pub status: &'static str,
    /// The peer's id.
    pub peer_id: String,
    /// The peer's own answer, passed on as it sent it.
    pub response: Value,
    /// Send time.
    pub timestamp: String,
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
    fn a_peer_entry_has_only_the_fields_of_its_sources() {
        let manual_only = PeerEntry {
            cell_id: "p".into(),
            endpoint: "http://x".into(),
            source: "manual",
            listed: None,
            manual: Some(ManualFields {
                identity: None,
                registered_at: "t".into(),
            }),
        };
        assert_eq!(
            serde_json::to_value(&manual_only).unwrap(),
            json!({"cell_id": "p", "endpoint": "http://x", "source": "manual",
                   "identity": null, "registered_at": "t"})
        );
    }
}
