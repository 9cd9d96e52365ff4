//! The discovery service, as the cell sees it: register, heartbeat,
//! deregister, list peers. One `reqwest` client reused for every call.
//!
//! Speaks the original wire contract (`seed-api.md`) and our discovery's
//! additions: when a registration answer carries a lease (`incarnation`)
//! or a per-cell `secret`, they are kept and sent back on heartbeat and
//! deregistration; when it does not (the original Python service), nothing
//! extra is sent.

use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Header carrying the per-cell secret, when discovery issued one.
pub const SECRET_HEADER: &str = "x-cell-secret";

/// What a cell registers (the original's `CellInfo` without `last_seen`).
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
    /// Cell type (`pure_cell`, `alpha_cell`).
    #[serde(rename = "type")]
    pub cell_type: String,
    /// Host name.
    pub hostname: String,
}

/// What discovery issued at registration, to present on later calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lease {
    /// Lease id of this registration (our discovery only).
    pub incarnation: Option<Value>,
    /// Per-cell secret (our discovery only).
    pub secret: Option<String>,
}

/// A peer as `GET /peers` lists it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// Last heartbeat, as discovery wrote it.
    #[serde(default)]
    pub last_seen: Option<String>,
    /// Milliseconds since the last heartbeat, when discovery says.
    #[serde(default)]
    pub age_ms: Option<u64>,
}

impl PeerInfo {
    /// Base URL of the peer's HTTP API.
    pub fn base_url(&self) -> String {
        if self.ip.contains(':') && !self.ip.starts_with('[') {
            format!("http://[{}]:{}", self.ip, self.port)
        } else {
            format!("http://{}:{}", self.ip, self.port)
        }
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
        let answer = self
            .send(self.http.post(&url).json(registration), &url)
            .await?;
        Ok(Lease {
            incarnation: answer.get("incarnation").filter(|v| !v.is_null()).cloned(),
            secret: answer
                .get("secret")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// `POST /heartbeat` with the current level; answers `peers_count`
    /// when discovery gives it.
    pub async fn heartbeat(
        &self,
        cell_id: &str,
        level: f64,
        lease: &Lease,
    ) -> Result<Option<u64>, DiscoveryError> {
        let url = format!("{}/heartbeat", self.base);
        let mut body = serde_json::json!({ "cell_id": cell_id, "consciousness_level": level });
        if let Some(incarnation) = &lease.incarnation {
            body["incarnation"] = incarnation.clone();
        }
        let request = with_secret(self.http.post(&url).json(&body), lease);
        let answer = self.send(request, &url).await?;
        Ok(answer.get("peers_count").and_then(Value::as_u64))
    }

    /// `DELETE /peer/{cell_id}`.
    pub async fn deregister(&self, cell_id: &str, lease: &Lease) -> Result<(), DiscoveryError> {
        let mut url = format!("{}/peer/{}", self.base, cell_id);
        if let Some(incarnation) = &lease.incarnation {
            let text = match incarnation {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            url.push_str("?incarnation=");
            url.push_str(&text);
        }
        let request = with_secret(self.http.delete(&url), lease);
        self.send(request, &url).await.map(drop)
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, DiscoveryError> {
        let url = format!("{}/peers", self.base);
        let answer = self.send(self.http.get(&url), &url).await?;
        let peers = answer
            .get("peers")
            .cloned()
            .ok_or_else(|| DiscoveryError::Decode("no `peers` field".into()))?;
        serde_json::from_value(peers).map_err(|e| DiscoveryError::Decode(e.to_string()))
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<Value, DiscoveryError> {
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
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return json.ok_or_else(|| DiscoveryError::Decode("the body is not JSON".into()));
        }
        let detail = json
            .as_ref()
            .and_then(|j| j.get("detail"))
            .map(|d| match d {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        Err(match status {
            StatusCode::NOT_FOUND => DiscoveryError::NotRegistered(detail),
            StatusCode::CONFLICT => DiscoveryError::Superseded(detail),
            status => DiscoveryError::Status { status, detail },
        })
    }
}

fn with_secret(request: reqwest::RequestBuilder, lease: &Lease) -> reqwest::RequestBuilder {
    match &lease.secret {
        Some(secret) => request.header(SECRET_HEADER, secret),
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
