//! The batch calls a many-cell host uses (cellmesh additions; the original service has none):
//! one request registers, renews or deregisters many cells of one host.
//!
//! - `POST /batch/register`: [`BatchRegisterRequest`] -> [`BatchRegisterAnswer`];
//! - `POST /batch/heartbeat`: [`BatchHeartbeatRequest`] -> [`BatchHeartbeatAnswer`];
//! - `POST /batch/deregister`: [`BatchDeregisterRequest`] -> [`BatchDeregisterAnswer`].
//!
//! A batch is answered 200 whenever it is well formed and authorised as a whole (the bearer
//! token, as for the single calls); each cell's own outcome is in the answer, with the status
//! code and detail the single call would have answered. Per-cell secrets travel in the body
//! (the single calls' `X-Cell-Secret` header cannot name many cells).
//!
//! `host_id` names the failure domain: every cell a batch registers belongs to that host, and
//! discovery's mass-eviction guard counts a host and all its cells as one domain. A host picks
//! it once per process (see `cell-host`), so a restarted host is a new domain.
//!
//! A server without batch calls (the original) answers 404 or 405 to these paths: a client
//! then falls back to one request per cell. Our discovery never answers 404 to the path itself.

use serde::{Deserialize, Serialize};

use crate::Registration;

/// Largest batch body discovery reads, in bytes (a single call's limit is
/// [`crate::limits::DISCOVERY_BODY_MAX_BYTES`]).
pub const BATCH_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Most cells one batch may name; a host splits larger batches.
pub const BATCH_MAX_CELLS: usize = 1000;

/// Longest `host_id`, in bytes (same alphabet as a cell id).
pub const HOST_ID_MAX_LEN: usize = 128;

/// One cell of a [`BatchRegisterRequest`]: the single call's body, plus the secret of the
/// registration it renews (the single call's `X-Cell-Secret`), when it holds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRegistration {
    /// What the cell registers.
    #[serde(flatten)]
    pub registration: Registration,
    /// Secret of the live registration this one replaces (same id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `POST /batch/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRegisterRequest {
    /// The registering host (failure domain).
    pub host_id: String,
    /// At most [`BATCH_MAX_CELLS`] cells, ids distinct.
    pub cells: Vec<BatchRegistration>,
}

/// What became of one cell of a batch. `status` is `"registered"`, `"ok"`, `"deregistered"`
/// on success, `"refused"` otherwise, with `code` and `detail` as the single call would have
/// answered them (409 held by another secret, 404 unknown, 403 wrong secret, 422 invalid,
/// 503 full...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellOutcome {
    /// The cell.
    pub cell_id: String,
    /// `"registered"` / `"ok"` / `"deregistered"`, or `"refused"`.
    pub status: String,
    /// Incarnation now held (on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<u64>,
    /// New per-cell secret, 32 hex digits (register only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Whether an earlier incarnation was replaced (register only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<bool>,
    /// HTTP status the single call would have answered (refusals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Why it was refused (refusals only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CellOutcome {
    /// Whether the cell's part of the batch succeeded.
    pub fn is_ok(&self) -> bool {
        self.status != "refused"
    }
}

/// The answer to `POST /batch/register`: one outcome per cell, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRegisterAnswer {
    /// The host, echoed.
    pub host_id: String,
    /// The registry's TTL in milliseconds.
    pub ttl_ms: u64,
    /// One per cell of the request, same order.
    pub results: Vec<CellOutcome>,
}

/// One cell of a [`BatchHeartbeatRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellBeat {
    /// Cell id.
    pub cell_id: String,
    /// Its level now.
    pub consciousness_level: f64,
    /// The incarnation it renews.
    pub incarnation: u64,
    /// Its secret (32 hex digits), as `X-Cell-Secret` carries it on the single call.
    pub secret: String,
}

/// `POST /batch/heartbeat`: renews every named cell of a host (and the host itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchHeartbeatRequest {
    /// The host (failure domain).
    pub host_id: String,
    /// At most [`BATCH_MAX_CELLS`] cells.
    pub cells: Vec<CellBeat>,
}

/// The answer to `POST /batch/heartbeat`: only refusals are listed (a renewal is the common
/// case, and the answer stays small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchHeartbeatAnswer {
    /// `"ok"`.
    pub status: String,
    /// The host, echoed.
    pub host_id: String,
    /// Cells renewed.
    pub renewed: usize,
    /// Live peers in the registry.
    pub peers_count: usize,
    /// The cells not renewed, with why (404: re-register; 409/403: see the single call).
    #[serde(default)]
    pub refused: Vec<CellOutcome>,
}

/// One cell of a [`BatchDeregisterRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellLeave {
    /// Cell id.
    pub cell_id: String,
    /// The incarnation it ends.
    pub incarnation: u64,
    /// Its secret.
    pub secret: String,
}

/// `POST /batch/deregister`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDeregisterRequest {
    /// The host.
    pub host_id: String,
    /// At most [`BATCH_MAX_CELLS`] cells.
    pub cells: Vec<CellLeave>,
}

/// The answer to `POST /batch/deregister`: only refusals are listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDeregisterAnswer {
    /// `"deregistered"`.
    pub status: String,
    /// The host, echoed.
    pub host_id: String,
    /// Cells removed.
    pub deregistered: usize,
    /// The cells not removed, with why (404 when already gone).
    #[serde(default)]
    pub refused: Vec<CellOutcome>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_registration_is_the_single_body_plus_a_secret() {
        let json = serde_json::json!({
            "cell_id": "a", "ip": "127.0.0.1", "port": 1, "consciousness_level": 0.5,
            "services": [], "branch": "main", "type": "pure_cell", "hostname": "h",
            "secret": "00"
        });
        let parsed: BatchRegistration = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(parsed.registration.cell_id, "a");
        assert_eq!(parsed.secret.as_deref(), Some("00"));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), json);
    }

    #[test]
    fn refusals_are_listed_with_the_single_calls_code() {
        let answer: BatchHeartbeatAnswer = serde_json::from_value(serde_json::json!({
            "status": "ok", "host_id": "h", "renewed": 1, "peers_count": 2,
            "refused": [{"cell_id": "b", "status": "refused", "code": 404, "detail": "gone"}]
        }))
        .unwrap();
        assert!(!answer.refused[0].is_ok());
        assert_eq!(answer.refused[0].code, Some(404));
    }
}
