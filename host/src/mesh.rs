//! The cell's view of the mesh and the one path messages leave by.
//!
//! [`Mesh`] keeps the peers discovery last listed (refreshed in the
//! background after each heartbeat, so a plugin's `mesh-peers` never waits
//! on the network), the peers registered by hand through `/register_peer`
//! (alpha's list), and delivers messages: the `send-message` import and
//! `POST /send` both call [`Mesh::deliver`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::discovery_client::{DiscoveryClient, DiscoveryError, PeerInfo, peer_base_url};
use crate::plugin::bindings::{Delivery, Message, Peer, SendError};
use crate::plugin::{HostServices, SendFuture};

/// Largest message content the host sends, in bytes.
pub const MAX_SEND_BYTES: usize = 64 * 1024;
/// Most peers kept by hand through `/register_peer`.
pub const MAX_MANUAL_PEERS: usize = 1_024;

/// Kind of a message that names none.
pub const DEFAULT_MESSAGE_TYPE: &str = "text";
/// Priority of a message that names none.
pub const DEFAULT_PRIORITY: &str = "normal";

/// `value`, or `default` when it is empty.
fn or_default(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value
    }
}

/// A peer registered by hand (`POST /register_peer`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManualPeer {
    /// Its id.
    pub cell_id: String,
    /// Base URL of its API.
    pub endpoint: String,
    /// Its identity, if given.
    pub identity: Option<String>,
    /// When it was registered, UTC ISO-8601.
    pub registered_at: String,
}

/// Where a peer is reached and who said so.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPeer {
    /// Base URL of its API.
    pub endpoint: String,
    /// `manual` (registered by hand) or `mesh` (discovery).
    pub source: &'static str,
}

/// A message as a cell posts it to a peer's `POST /message`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutgoingMessage {
    /// This cell's id.
    pub from_cell: String,
    /// Content.
    pub content: String,
    /// Kind (`text` by default).
    pub message_type: String,
    /// Priority; left out by `/send_to_peer`, which sends the original
    /// alpha's three fields only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Metadata (any JSON); left out by `/send_to_peer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A peer's answer to a delivered message.
#[derive(Debug, Clone)]
pub struct PeerAnswer {
    /// Id the receiver gave the message (0 when it gave none).
    pub message_id: u64,
    /// Its JSON answer, as it sent it (another cell's format, passed on).
    pub body: Value,
}

/// Why a peer did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No answer (connection refused, timeout...).
    #[error("cannot reach {url}: {error}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport failure.
        error: reqwest::Error,
    },
    /// An answer whose body is not JSON.
    #[error("{url} answered {status} with an unreadable body: {error}")]
    Unreadable {
        /// The URL called.
        url: String,
        /// The status it answered.
        status: reqwest::StatusCode,
        /// Why the body could not be read.
        error: reqwest::Error,
    },
    /// A non-2xx answer.
    #[error("{url} answered {status}: {detail}")]
    Refused {
        /// The URL called.
        url: String,
        /// The status it answered.
        status: reqwest::StatusCode,
        /// Its `detail`, or its whole body when it has none.
        detail: Value,
    },
}

#[derive(Debug, Default)]
struct MeshView {
    peers: Vec<PeerInfo>,
    refreshed: Option<Instant>,
}

/// The cell's view of the mesh, its hand-kept peers and message delivery.
#[derive(Debug)]
pub struct Mesh {
    /// Set once the manifest is read (the id may come from it).
    self_id: OnceLock<String>,
    discovery: DiscoveryClient,
    http: reqwest::Client,
    view: RwLock<MeshView>,
    manual: Mutex<BTreeMap<String, ManualPeer>>,
}

impl Mesh {
    /// A mesh view using `discovery` and `http`; the cell id is set later
    /// with [`Mesh::set_self_id`].
    pub fn new(discovery: DiscoveryClient, http: reqwest::Client) -> Self {
        Self {
            self_id: OnceLock::new(),
            discovery,
            http,
            view: RwLock::new(MeshView::default()),
            manual: Mutex::new(BTreeMap::new()),
        }
    }

    /// This cell's id (empty until set).
    pub fn self_id(&self) -> &str {
        self.self_id.get().map(String::as_str).unwrap_or("")
    }

    /// Sets this cell's id; later calls are ignored.
    pub fn set_self_id(&self, id: String) {
        let _ = self.self_id.set(id);
    }

    /// The discovery client.
    pub fn discovery(&self) -> &DiscoveryClient {
        &self.discovery
    }

    /// Refreshes the cached view with `GET /peers`.
    pub async fn refresh(&self) -> Result<usize, DiscoveryError> {
        let peers: Vec<PeerInfo> = self
            .discovery
            .peers()
            .await?
            .into_iter()
            .filter(|p| p.cell_id != self.self_id())
            .collect();
        let count = peers.len();
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        view.peers = peers;
        view.refreshed = Some(Instant::now());
        Ok(count)
    }

    /// The peers discovery last listed, without this cell.
    pub fn mesh_peers(&self) -> Vec<PeerInfo> {
        self.view
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .peers
            .clone()
    }

    /// How long ago the view was refreshed.
    pub fn view_age(&self) -> Option<Duration> {
        self.view
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .refreshed
            .map(|t| t.elapsed())
    }

    /// Adds or replaces a hand-kept peer; `false` when the list is full.
    pub fn register_manual(&self, peer: ManualPeer) -> bool {
        let mut manual = self.manual.lock().unwrap_or_else(|p| p.into_inner());
        if manual.len() >= MAX_MANUAL_PEERS && !manual.contains_key(&peer.cell_id) {
            return false;
        }
        manual.insert(peer.cell_id.clone(), peer);
        true
    }

    /// The hand-kept peers.
    pub fn manual_peers(&self) -> Vec<ManualPeer> {
        self.manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Finds a peer in the hand-kept list, then in the cached view.
    pub fn resolve_cached(&self, cell_id: &str) -> Option<ResolvedPeer> {
        if let Some(peer) = self
            .manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cell_id)
        {
            return Some(ResolvedPeer {
                endpoint: peer.endpoint.trim_end_matches('/').to_owned(),
                source: "manual",
            });
        }
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.peers
            .iter()
            .find(|p| p.cell_id == cell_id)
            .map(|p| ResolvedPeer {
                endpoint: peer_base_url(p),
                source: "mesh",
            })
    }

    /// Finds a peer; when it is not known, asks discovery once.
    pub async fn resolve(&self, cell_id: &str) -> Option<ResolvedPeer> {
        if let Some(found) = self.resolve_cached(cell_id) {
            return Some(found);
        }
        if let Err(error) = self.refresh().await {
            tracing::debug!(%error, "cannot refresh the mesh view while resolving {cell_id}");
        }
        self.resolve_cached(cell_id)
    }

    /// Posts `message` to `{endpoint}/message` and reads the receipt.
    pub async fn post_message(
        &self,
        endpoint: &str,
        message: &OutgoingMessage,
    ) -> Result<PeerAnswer, PeerError> {
        let url = format!("{endpoint}/message");
        let response = match self.http.post(&url).json(message).send().await {
            Ok(response) => response,
            Err(error) => return Err(PeerError::Unreachable { url, error }),
        };
        let status = response.status();
        let body: Value = match response.json().await {
            Ok(body) => body,
            Err(error) => return Err(PeerError::Unreadable { url, status, error }),
        };
        if !status.is_success() {
            let detail = body.get("detail").cloned().unwrap_or(body);
            return Err(PeerError::Refused {
                url,
                status,
                detail,
            });
        }
        Ok(PeerAnswer {
            message_id: body.get("message_id").and_then(Value::as_u64).unwrap_or(0),
            body,
        })
    }

    /// Delivers a message to cell `to_cell`, found through the hand-kept
    /// list or discovery. `msg.from_cell` is overwritten with this cell's id.
    /// Refuses a send to this cell (its instance is busy sending) and a
    /// content larger than [`MAX_SEND_BYTES`].
    pub async fn deliver(&self, to_cell: &str, msg: Message) -> Result<Delivery, SendError> {
        if to_cell == self.self_id() {
            return Err(SendError::Refused(format!(
                "a cell cannot send a message to itself ({to_cell})"
            )));
        }
        if msg.content.len() > MAX_SEND_BYTES {
            return Err(SendError::Refused(format!(
                "content of {} bytes exceeds the limit of {MAX_SEND_BYTES} bytes",
                msg.content.len()
            )));
        }
        let Some(peer) = self.resolve(to_cell).await else {
            return Err(SendError::UnknownCell(to_cell.to_owned()));
        };
        let metadata = serde_json::from_str::<Value>(&msg.metadata)
            .unwrap_or_else(|_| Value::String(msg.metadata.clone()));
        let message = OutgoingMessage {
            from_cell: self.self_id().to_owned(),
            content: msg.content,
            message_type: or_default(msg.message_type, DEFAULT_MESSAGE_TYPE),
            priority: Some(or_default(msg.priority, DEFAULT_PRIORITY)),
            metadata: Some(metadata),
        };
        let answer = self
            .post_message(&peer.endpoint, &message)
            .await
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        Ok(Delivery {
            message_id: answer.message_id,
            to_cell: to_cell.to_owned(),
        })
    }
}

/// [`HostServices`] of a cell on the mesh.
#[derive(Debug)]
pub struct MeshServices {
    mesh: Arc<Mesh>,
    config: Vec<(String, String)>,
}

impl MeshServices {
    /// Services backed by `mesh`, handing `config` to the plugin.
    pub fn new(mesh: Arc<Mesh>, config: Vec<(String, String)>) -> Self {
        Self { mesh, config }
    }
}

impl HostServices for MeshServices {
    fn cell_id(&self) -> String {
        self.mesh.self_id().to_owned()
    }

    fn config(&self) -> &[(String, String)] {
        &self.config
    }

    fn mesh_peers(&self) -> Vec<Peer> {
        self.mesh
            .mesh_peers()
            .into_iter()
            .map(|p| Peer {
                cell_id: p.cell_id,
                ip: p.ip,
                port: p.port,
                consciousness_level: p.consciousness_level,
                services: p.services,
                branch: p.branch,
                cell_type: p.cell_type,
                hostname: p.hostname,
                age_ms: p.age_ms,
            })
            .collect()
    }

    fn send_message(&self, to_cell: String, msg: Message) -> SendFuture {
        let mesh = self.mesh.clone();
        Box::pin(async move { mesh.deliver(&to_cell, msg).await })
    }
}
