//! The JSON bodies of the discovery calls.
//!
//! Field names are the wire names. Fields that only cellmesh's discovery sends are `Option`s
//! with `#[serde(default)]`, so that the original Python service's answers parse as well;
//! unknown fields are ignored (a newer server may add more).

use serde::{Deserialize, Serialize};

/// `POST /register`: what a cell registers (the original's `CellInfo` without `last_seen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Cell id.
    pub cell_id: String,
    /// Address peers use to reach the cell.
    pub ip: String,
    /// Port of the cell's HTTP API.
    pub port: u16,
    /// Current level.
    pub consciousness_level: f64,
    /// Capability names.
    pub services: Vec<String>,
    /// Branch.
    pub branch: String,
    /// Cell type (`pure_cell`, `alpha_cell`, ...).
    #[serde(rename = "type")]
    pub cell_type: String,
    /// Host name.
    pub hostname: String,
}

/// The answer to `POST /register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAnswer {
    /// `"registered"`.
    pub status: String,
    /// The registered id.
    pub cell_id: String,
    /// Lease id of this registration (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// Per-cell secret, 32 hex digits (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Whether an earlier incarnation of the id was replaced (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<bool>,
    /// The registry's TTL in milliseconds (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// `POST /heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Cell id.
    pub cell_id: String,
    /// The cell's level now; absent means 0.0 (as in the original service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consciousness_level: Option<f64>,
    /// The lease this heartbeat renews (cellmesh); absent renews whatever is registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
}

/// The answer to `POST /heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// `"ok"`.
    pub status: String,
    /// The renewed id.
    pub cell_id: String,
    /// How many peers are listed.
    pub peers_count: u64,
    /// The renewed lease (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
}

/// The answer to `DELETE /peer/{id}` (`status` `"deregistered"`) and `DELETE /unregister/{id}`
/// (`status` `"unregistered"`; the original sent no `cell_id` there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeregisterAnswer {
    /// `"deregistered"` or `"unregistered"`.
    pub status: String,
    /// The removed id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell_id: Option<String>,
}

/// A peer as `GET /peers` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Cell id.
    pub cell_id: String,
    /// Address.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// Level at its last heartbeat.
    #[serde(default)]
    pub consciousness_level: f64,
    /// Services.
    #[serde(default)]
    pub services: Vec<String>,
    /// Branch.
    #[serde(default)]
    pub branch: String,
    /// Cell type.
    #[serde(default, rename = "type")]
    pub cell_type: String,
    /// Host name.
    #[serde(default)]
    pub hostname: String,
    /// Last heartbeat, ISO 8601 as discovery wrote it.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Lease id (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// Milliseconds since the last heartbeat, at answer time (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
}

/// The answer to `GET /peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeersAnswer {
    /// The listed peers.
    pub peers: Vec<PeerInfo>,
    /// How many are listed.
    pub count: u64,
    /// The answering discovery's name.
    pub my_host: String,
    /// The registry revision of this listing (cellmesh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// Every error answer but 422 validation errors: `{"detail": "sentence"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// What went wrong.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_services_answers_parse() {
        let register: RegisterAnswer =
            serde_json::from_str(r#"{"status":"registered","cell_id":"pure"}"#).unwrap();
        assert_eq!(register.incarnation, None);
        let peers: PeersAnswer = serde_json::from_str(
            r#"{"peers":[{"cell_id":"pure","ip":"pure","port":8002,"consciousness_level":0.1,
                "services":["x"],"branch":"pure","type":"pure_cell","hostname":"h",
                "last_seen":"2024-01-01T00:00:00.000000"}],"count":1,"my_host":"primary"}"#,
        )
        .unwrap();
        assert_eq!(peers.peers[0].cell_type, "pure_cell");
        assert_eq!(peers.peers[0].age_ms, None);
    }

    #[test]
    fn optional_additions_are_left_out_when_absent() {
        let hb = HeartbeatRequest {
            cell_id: "a".into(),
            consciousness_level: Some(1.5),
            incarnation: None,
        };
        assert_eq!(
            serde_json::to_string(&hb).unwrap(),
            r#"{"cell_id":"a","consciousness_level":1.5}"#
        );
    }
}
