//! The cell's view of the mesh and the one path messages leave by.
//!
//! [`Mesh`] keeps the peers discovery last listed (refreshed in the
//! background after each heartbeat, so a plugin's `mesh-peers` never waits
//! on the network), the peers registered by hand through `/register_peer`
//! (alpha's list), and delivers messages: the `send-message` import and
//! `POST /send` both call [`Mesh::deliver`], which reaches **discovery's
//! ids only**; hand-kept peers are reached only through `/send_to_peer`
//! ([`Mesh::send_to_hand_kept`]), so a `/register_peer` entry never shadows
//! a cell discovery lists. Every request leaves through the
//! [`PeerClient`] (no redirects, addresses checked against the policy).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::discovery_client::{DiscoveryClient, DiscoveryError, PeerInfo};
use crate::egress::{self, EgressError, PeerClient, SendFailure};
use crate::mesh_view::MeshView;
use crate::plugin::bindings::{Delivery, Message, Peer, SendError};
use crate::plugin::{HostServices, SendFuture};

/// Largest message content the host sends, in bytes.
pub const MAX_SEND_BYTES: usize = 64 * 1024;
/// Most peers kept by hand through `/register_peer`.
pub const MAX_MANUAL_PEERS: usize = 1_024;
/// Timeout of one `/send_to_peer` request (the original's 10 s).
pub const SEND_TO_PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest peer answer read (a `/send` receipt), in bytes.
pub const MAX_PEER_ANSWER_BYTES: usize = 64 * 1024;
/// `type` of a `/send_to_peer` message that names none (the original's).
pub const FORWARDED_MESSAGE_TYPE: &str = "forwarded";

/// Kind of a message that names none (the original's default).
pub const DEFAULT_MESSAGE_TYPE: &str = "general";
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

/// A peer registered by hand (`POST /register_peer`), as the original
/// alpha kept it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManualPeer {
    /// Its id.
    pub cell_id: String,
    /// Base URL of its API, as given (without a trailing `/`).
    pub endpoint: String,
    /// The same, checked ([`egress::endpoint_url`]).
    #[serde(skip)]
    pub url: Url,
    /// Its identity (the original's default: `Cell ID`).
    pub identity: String,
    /// When it was registered, UTC ISO-8601.
    pub registered_at: String,
    /// When `/send_to_peer` last got an answer from it.
    pub last_contact: Option<String>,
}

/// A peer discovery lists, as [`Mesh::deliver`] reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPeer {
    /// Its id.
    pub cell_id: String,
    /// The listed `ip` (not trusted: see [`ResolvedPeer::url`]).
    pub ip: String,
    /// The listed port.
    pub port: u16,
}

impl ResolvedPeer {
    fn listed(peer: &PeerInfo) -> Self {
        Self {
            cell_id: peer.cell_id.clone(),
            ip: peer.ip.clone(),
            port: peer.port,
        }
    }

    /// Its base URL, refused when the listed address is not an address.
    pub fn url(&self) -> Result<Url, EgressError> {
        egress::listed_peer_url(&self.cell_id, &self.ip, self.port)
    }
}

/// A message as a cell posts it to a peer's `POST /message` (`/send` and
/// `send-message`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutgoingMessage {
    /// This cell's id.
    pub from_cell: String,
    /// Content.
    pub content: String,
    /// Kind.
    pub message_type: String,
    /// Priority.
    pub priority: String,
    /// Metadata (any JSON).
    pub metadata: Value,
}

/// A message as `/send_to_peer` posts it: the original alpha's body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardedMessage {
    /// This cell's id.
    pub from_cell: String,
    /// The `message` given, passed on as it was sent.
    pub content: Value,
    /// The `type` given, [`FORWARDED_MESSAGE_TYPE`] by default.
    #[serde(rename = "type")]
    pub message_type: String,
    /// `{"original_sender": this cell's identity}`.
    pub metadata: Value,
}

/// A peer's receipt for a delivered message.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAnswer {
    /// Id the receiver gave the message (0 when it gave none).
    pub message_id: u64,
}

/// Why a peer did not take a message. The texts never carry a peer's
/// answer body.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Its address is refused (invalid, or outside the policy); nothing
    /// was sent.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// No answer (connection refused, timeout...).
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport failure.
        detail: String,
    },
    /// A 2xx answer that is not a JSON receipt.
    #[error("{url} answered {status} with an unreadable receipt: {detail}")]
    Unreadable {
        /// The URL called.
        url: String,
        /// The status it answered.
        status: StatusCode,
        /// Why the body could not be read.
        detail: String,
    },
    /// A non-2xx answer (a redirect included: none is followed). Its body
    /// is not passed on: the receiver logs its own refusals.
    #[error("{url} answered {status}")]
    Refused {
        /// The URL called.
        url: String,
        /// The status it answered.
        status: StatusCode,
    },
}

impl PeerError {
    fn from_failure(url: &Url, failure: SendFailure) -> Self {
        match failure {
            SendFailure::Egress(error) => PeerError::Egress(error),
            SendFailure::Transport(detail) => PeerError::Unreachable {
                url: url.to_string(),
                detail,
            },
        }
    }
}

/// Why `/send_to_peer` did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum HandKeptError {
    /// No hand-kept peer has that id.
    #[error("Peer ID not registered")]
    NotRegistered,
    /// The peer could not be reached.
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// The cell's view of the mesh, its hand-kept peers and message delivery.
#[derive(Debug)]
pub struct Mesh {
    /// Set once the manifest is read (the id may come from it).
    self_id: OnceLock<String>,
    discovery: DiscoveryClient,
    peers: PeerClient,
    view: Arc<MeshView>,
    manual: Mutex<BTreeMap<String, ManualPeer>>,
    register_peer: bool,
}

impl Mesh {
    /// A mesh view using `discovery`, calling peers with `peers`;
    /// `/register_peer` on. The cell id is set later with
    /// [`Mesh::set_self_id`].
    pub fn new(discovery: DiscoveryClient, peers: PeerClient) -> Self {
        Self::with_view(discovery, peers, Arc::default())
    }

    /// The same, sharing `view` (one cached listing for every cell of a
    /// host; each cell leaves itself out when it reads).
    pub fn with_view(discovery: DiscoveryClient, peers: PeerClient, view: Arc<MeshView>) -> Self {
        Self {
            self_id: OnceLock::new(),
            discovery,
            peers,
            view,
            manual: Mutex::new(BTreeMap::new()),
            register_peer: true,
        }
    }

    /// Turns `/register_peer` on or off (`--no-register-peer`).
    pub fn with_register_peer(mut self, enabled: bool) -> Self {
        self.register_peer = enabled;
        self
    }

    /// Whether `/register_peer` is on.
    pub fn register_peer_enabled(&self) -> bool {
        self.register_peer
    }

    /// The client peers are called with (and its policy).
    pub fn peer_client(&self) -> &PeerClient {
        &self.peers
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

    /// Refreshes the cached view with a conditional `GET /peers` (see
    /// [`MeshView`]).
    pub async fn refresh(&self) -> Result<usize, DiscoveryError> {
        self.view.refresh(&self.discovery, self.self_id()).await
    }

    /// The cached view of discovery's listing (shared by every cell of a
    /// many-cell host).
    pub fn view(&self) -> &Arc<MeshView> {
        &self.view
    }

    /// The peers discovery last listed, without this cell.
    pub fn mesh_peers(&self) -> Vec<PeerInfo> {
        self.view.peers_except(self.self_id())
    }

    /// How long ago the view was refreshed.
    pub fn view_age(&self) -> Option<Duration> {
        self.view.age()
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

    /// The hand-kept peers, by id.
    pub fn manual_peers(&self) -> Vec<ManualPeer> {
        self.manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The hand-kept peer `cell_id`.
    pub fn manual_peer(&self, cell_id: &str) -> Option<ManualPeer> {
        self.manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cell_id)
            .cloned()
    }

    /// Finds a peer in the cached view of discovery's listing (never in the
    /// hand-kept list: a hand-kept entry must not shadow a listed id).
    pub fn resolve_cached(&self, cell_id: &str) -> Option<ResolvedPeer> {
        if cell_id == self.self_id() {
            return None;
        }
        self.view.find(cell_id).as_ref().map(ResolvedPeer::listed)
    }

    /// Finds a peer; when it is not known, asks discovery, at most once a
    /// second for all misses together ([`MeshView::refresh_for_miss`]).
    pub async fn resolve(&self, cell_id: &str) -> Option<ResolvedPeer> {
        if let Some(found) = self.resolve_cached(cell_id) {
            return Some(found);
        }
        if let Err(error) = self
            .view
            .refresh_for_miss(&self.discovery, self.self_id())
            .await
        {
            tracing::debug!(%error, "cannot refresh the mesh view while resolving {cell_id}");
        }
        self.resolve_cached(cell_id)
    }

    /// Posts `message` to `base` + `/message` and reads the receipt (at
    /// most [`MAX_PEER_ANSWER_BYTES`]).
    pub async fn post_message(
        &self,
        base: &Url,
        message: &OutgoingMessage,
    ) -> Result<PeerAnswer, PeerError> {
        let url = egress::message_url(base);
        let response = self
            .peers
            .post_json(url.clone(), message, None)
            .await
            .map_err(|failure| PeerError::from_failure(&url, failure))?;
        let status = response.status();
        if !status.is_success() {
            return Err(PeerError::Refused {
                url: url.to_string(),
                status,
            });
        }
        let body = read_capped(response, MAX_PEER_ANSWER_BYTES).await;
        let unreadable = |detail: String| PeerError::Unreadable {
            url: url.to_string(),
            status,
            detail,
        };
        let body: Value = serde_json::from_slice(&body.map_err(unreadable)?)
            .map_err(|e| unreadable(format!("not JSON: {e}")))?;
        Ok(PeerAnswer {
            message_id: body.get("message_id").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// `/send_to_peer`: posts `message` to the hand-kept peer `peer_id`
    /// (timeout [`SEND_TO_PEER_TIMEOUT`]), sets its `last_contact` to
    /// `now()` when it answers, and returns its status only: the answer
    /// body is never read.
    pub async fn send_to_hand_kept(
        &self,
        peer_id: &str,
        message: &ForwardedMessage,
        now: fn() -> String,
    ) -> Result<StatusCode, HandKeptError> {
        let peer = self
            .manual_peer(peer_id)
            .ok_or(HandKeptError::NotRegistered)?;
        let url = egress::message_url(&peer.url);
        let response = self
            .peers
            .post_json(url.clone(), message, Some(SEND_TO_PEER_TIMEOUT))
            .await
            .map_err(|failure| PeerError::from_failure(&url, failure))?;
        let now = now();
        if let Some(kept) = self
            .manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(peer_id)
        {
            kept.last_contact = Some(now);
        }
        Ok(response.status())
    }

    /// Delivers a message to cell `to_cell`, found through discovery only
    /// (hand-kept peers are reached through `/send_to_peer`).
    /// `msg.from_cell` is overwritten with this cell's id. Refuses a send
    /// to this cell (its instance is busy sending), a content larger than
    /// [`MAX_SEND_BYTES`], and a listed address that is not an address.
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
            priority: or_default(msg.priority, DEFAULT_PRIORITY),
            metadata,
        };
        let base = peer
            .url()
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        let answer = self
            .post_message(&base, &message)
            .await
            .map_err(|e| SendError::Unreachable(e.to_string()))?;
        Ok(Delivery {
            message_id: answer.message_id,
            to_cell: to_cell.to_owned(),
        })
    }
}

/// At most `limit` bytes of `response`'s body (the rest is not read).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer exceeds {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
