//! The discovery service, as the cell sees it: register, heartbeat,
//! deregister, list peers. One `reqwest` client reused for every call.
//!
//! Speaks the original wire contract (`seed-api.md`) and our discovery's
//! additions: when a registration answer carries a lease (`incarnation`)
//! or a per-cell `secret`, they are kept and sent back on heartbeat and
//! deregistration; when it does not (the original Python service), nothing
//! extra is sent. The bodies and header names are `cellmesh_wire`'s, shared
//! with the discovery service.

use std::time::Duration;

use cellmesh_wire::headers;
use cellmesh_wire::{
    DeregisterAnswer, HeartbeatAnswer, HeartbeatRequest, PeersAnswer, RegisterAnswer,
};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The wire types a host sends and reads, under their former paths.
pub use cellmesh_wire::{PeerInfo, Registration};

/// What discovery issued at registration, to present on later calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lease {
    /// Lease id of this registration (our discovery only).
    pub incarnation: Option<u64>,
    /// Per-cell secret (our discovery only).
    pub secret: Option<String>,
}

/// Base URL of a listed peer's HTTP API (an IPv6 address in brackets).
pub fn peer_base_url(peer: &PeerInfo) -> String {
    if peer.ip.contains(':') && !peer.ip.starts_with('[') {
        format!("http://[{}]:{}", peer.ip, peer.port)
    } else {
        format!("http://{}:{}", peer.ip, peer.port)
    }
}

/// Why a discovery call failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No answer (connection refused, timeout...).
    #[error("discovery at {url} is unreachable: {error}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport failure.
        error: reqwest::Error,
    },
    /// The cell is not registered (heartbeat or deregistration 404).
    #[error("discovery does not know this cell: {0}")]
    NotRegistered(String),
    /// A newer incarnation of this cell id exists (409).
    #[error("discovery reports a newer registration of this cell id: {0}")]
    Superseded(String),
    /// Any other non-2xx answer.
    #[error("discovery answered {status}: {detail}")]
    Status {
        /// The status.
        status: StatusCode,
        /// Its `detail`, or the body.
        detail: String,
    },
    /// A 2xx answer whose body is not what the contract says.
    #[error("discovery sent an unreadable answer: {0}")]
    Decode(String),
}

/// A client of one discovery service.
#[derive(Debug, Clone)]
pub struct DiscoveryClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl DiscoveryClient {
    /// A client of the service at `base_url`, sharing `http`.
    pub fn new(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// Presents `token` as `Authorization: Bearer` on every call (for a
    /// discovery configured with a shared token).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /register`. Keeps whatever lease the answer carries.
    pub async fn register(&self, registration: &Registration) -> Result<Lease, DiscoveryError> {
        let url = format!("{}/register", self.base);
        let answer: RegisterAnswer = self
            .send(self.http.post(&url).json(registration), &url)
            .await?;
        Ok(Lease {
            incarnation: answer.incarnation,
            secret: answer.secret,
        })
    }

    /// `POST /heartbeat` with the current level; answers discovery's
    /// `peers_count` (always given: the contract requires it).
    pub async fn heartbeat(
        &self,
        cell_id: &str,
        level: f64,
        lease: &Lease,
    ) -> Result<Option<u64>, DiscoveryError> {
        let url = format!("{}/heartbeat", self.base);
        let body = HeartbeatRequest {
            cell_id: cell_id.to_owned(),
            consciousness_level: Some(level),
            incarnation: lease.incarnation,
        };
        let request = with_secret(self.http.post(&url).json(&body), lease);
        let answer: HeartbeatAnswer = self.send(request, &url).await?;
        Ok(Some(answer.peers_count))
    }

    /// `DELETE /peer/{cell_id}`.
    pub async fn deregister(&self, cell_id: &str, lease: &Lease) -> Result<(), DiscoveryError> {
        let mut url = format!("{}/peer/{}", self.base, cell_id);
        if let Some(incarnation) = lease.incarnation {
            url.push_str(&format!("?incarnation={incarnation}"));
        }
        let request = with_secret(self.http.delete(&url), lease);
        let _: DeregisterAnswer = self.send(request, &url).await?;
        Ok(())
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, DiscoveryError> {
        let url = format!("{}/peers", self.base);
        let answer: PeersAnswer = self.send(self.http.get(&url), &url).await?;
        Ok(answer.peers)
    }

    /// Sends `request` and reads a 2xx answer as `T`; any other status
    /// becomes the matching [`DiscoveryError`], with discovery's `detail`.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, DiscoveryError> {
        let unreachable = |error| DiscoveryError::Unreachable {
            url: url.to_owned(),
            error,
        };
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| DiscoveryError::Decode(e.to_string()));
        }
        let detail = match serde_json::from_slice::<AnyDetail>(&body) {
            Ok(AnyDetail {
                detail: Value::String(s),
            }) => s,
            Ok(AnyDetail { detail }) => detail.to_string(),
            Err(_) => String::from_utf8_lossy(&body).chars().take(200).collect(),
        };
        Err(match status {
            StatusCode::NOT_FOUND => DiscoveryError::NotRegistered(detail),
            StatusCode::CONFLICT => DiscoveryError::Superseded(detail),
            status => DiscoveryError::Status { status, detail },
        })
    }
}

/// The `detail` of an error answer: a sentence, or (422) a list of field
/// errors, shown as its JSON text.
#[derive(Deserialize)]
struct AnyDetail {
    detail: Value,
}

fn with_secret(request: reqwest::RequestBuilder, lease: &Lease) -> reqwest::RequestBuilder {
    match &lease.secret {
        Some(secret) => request.header(headers::SECRET, secret),
        None => request,
    }
}

/// Builds the one HTTP client of a host.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}
