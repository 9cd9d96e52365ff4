//! The discovery service, as the cell sees it: register, heartbeat,
//! deregister, list peers (conditionally), look one peer up. One `reqwest`
//! client reused for every call; it follows no redirects.
//!
//! Speaks the original wire contract (docs/contract.md) and our discovery's
//! additions: when a registration answer carries a lease (`incarnation`),
//! a per-cell `secret` or a `ttl_ms`, they are kept and the first two sent
//! back on heartbeat, deregistration and re-registration; when it does not
//! (the original Python service), nothing extra is sent. The bodies and
//! header names are `cellmesh_wire`'s, shared with the discovery service.
//!
//! Every answer is read up to a size limit ([`DiscoveryLimits`]): a
//! listing up to 16 MiB, anything else up to 64 KiB by default; past it the
//! call fails with [`DiscoveryError::TooLarge`].
//!
//! The batch calls of a many-cell host (`POST /batch/register`,
//! `/batch/heartbeat`, `/batch/deregister`: see `cellmesh_wire::batch`) answer
//! typed results, each cell's refusal as the [`DiscoveryError`] the single
//! call would have answered. A discovery without them (the original) answers
//! 404 or 405 to their paths: that is [`DiscoveryError::NoBatchCalls`], told
//! apart from every other failure. Their answers have their own size limit
//! ([`DEFAULT_MAX_BATCH_ANSWER_BYTES`], 8 MiB: a registration of 1,000 cells
//! answers some 150 KB).

use std::time::Duration;

mod batch;

use cellmesh_wire::headers;
use cellmesh_wire::{
    DeregisterAnswer, HeartbeatAnswer, HeartbeatRequest, PeersAnswer, RegisterAnswer,
};
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_NONE_MATCH};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The wire types a host sends and reads, under their former paths.
pub use cellmesh_wire::{PeerInfo, Registration};

/// The batch bodies' per-cell entries a host builds.
pub use cellmesh_wire::batch::{BatchRegistration, CellBeat, CellLeave};

pub use batch::{BatchDeregistered, BatchRegistered, BatchRenewed, CellRefusal};

/// Default largest answer to a batch call: 8 MiB (a registration of the
/// most cells one batch may name, 1,000, answers some 150 KB).
pub const DEFAULT_MAX_BATCH_ANSWER_BYTES: usize = 8 << 20;

/// What discovery issued at registration, to present on later calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lease {
    /// Lease id of this registration (our discovery only).
    pub incarnation: Option<u64>,
    /// Per-cell secret (our discovery only).
    pub secret: Option<String>,
    /// The registry's TTL (our discovery only).
    pub ttl: Option<Duration>,
}

/// How much of discovery's answers a host reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryLimits {
    /// Largest `GET /peers` answer, in bytes.
    pub max_listing_bytes: usize,
    /// Largest answer to any other call, in bytes.
    pub max_answer_bytes: usize,
}

impl DiscoveryLimits {
    /// Default largest listing: 16 MiB (some 40,000 peers of ~400 bytes).
    pub const DEFAULT_MAX_LISTING_BYTES: usize = 16 << 20;
    /// Default largest other answer: 64 KiB (a peer entry is at most the
    /// registration budget, 16 KiB).
    pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 << 10;
}

impl Default for DiscoveryLimits {
    fn default() -> Self {
        Self {
            max_listing_bytes: Self::DEFAULT_MAX_LISTING_BYTES,
            max_answer_bytes: Self::DEFAULT_MAX_ANSWER_BYTES,
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
    /// 409: another registration holds the id (a heartbeat naming an
    /// earlier lease, or a registration while the id is held under
    /// another secret).
    #[error("discovery reports that another registration holds this cell id: {0}")]
    Conflict(String),
    /// 403: discovery does not accept this cell's secret for the lease
    /// named (our discovery with a token).
    #[error("discovery refuses this cell's secret: {0}")]
    Forbidden(String),
    /// 400, 413 or 422: discovery refuses the request itself; sending it
    /// again cannot succeed.
    #[error("discovery refused the request ({status}): {detail}")]
    Refused {
        /// The status.
        status: StatusCode,
        /// Its `detail` (for 422, each field error's message).
        detail: String,
    },
    /// Any other non-2xx answer (a redirect among them: none is followed).
    #[error("discovery answered {status}: {detail}")]
    Status {
        /// The status.
        status: StatusCode,
        /// Its `detail`, or the body.
        detail: String,
    },
    /// An answer larger than the limit for it.
    #[error("discovery's answer to {url} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The URL called.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A 2xx answer whose body is not what the contract says.
    #[error("discovery sent an unreadable answer: {0}")]
    Decode(String),
    /// 404 or 405 to a batch call's path: this discovery has no batch calls
    /// (the original service); one request per cell is the way.
    #[error("discovery at {url} has no batch calls (it answered {status})")]
    NoBatchCalls {
        /// The URL called.
        url: String,
        /// 404 or 405.
        status: StatusCode,
    },
}

impl DiscoveryError {
    /// The error the single call would have answered with `status` and
    /// `detail` (a non-2xx status).
    fn from_status(status: StatusCode, detail: String) -> Self {
        match status {
            StatusCode::NOT_FOUND => DiscoveryError::NotRegistered(detail),
            StatusCode::CONFLICT => DiscoveryError::Conflict(detail),
            StatusCode::FORBIDDEN => DiscoveryError::Forbidden(detail),
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY => DiscoveryError::Refused { status, detail },
            status if status.is_redirection() => DiscoveryError::Status {
                status,
                detail: "redirects are not followed".to_owned(),
            },
            status => DiscoveryError::Status { status, detail },
        }
    }
}

/// A conditional `GET /peers`.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    /// 304: the listing has not changed since the tag given.
    Unchanged,
    /// The listing, and its tag if discovery sent one (ours does, the
    /// original does not).
    Changed {
        /// The peers listed.
        peers: Vec<PeerInfo>,
        /// Its `ETag`.
        etag: Option<String>,
    },
}

/// A client of one discovery service.
#[derive(Debug, Clone)]
pub struct DiscoveryClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    limits: DiscoveryLimits,
    max_batch_answer_bytes: usize,
}

impl DiscoveryClient {
    /// A client of the service at `base_url`, sharing `http`, with the
    /// default [`DiscoveryLimits`].
    pub fn new(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
            limits: DiscoveryLimits::default(),
            max_batch_answer_bytes: DEFAULT_MAX_BATCH_ANSWER_BYTES,
        }
    }

    /// Presents `token` as `Authorization: Bearer` on every call (for a
    /// discovery configured with one).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Reads answers up to `limits`.
    pub fn with_limits(mut self, limits: DiscoveryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reads batch answers up to `bytes` (default
    /// [`DEFAULT_MAX_BATCH_ANSWER_BYTES`]).
    pub fn with_batch_answer_limit(mut self, bytes: usize) -> Self {
        self.max_batch_answer_bytes = bytes;
        self
    }

    /// Whether a token is presented (discovery then enforces secrets).
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The service's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /register`. Keeps whatever lease the answer carries.
    pub async fn register(&self, registration: &Registration) -> Result<Lease, DiscoveryError> {
        self.register_presenting(registration, None).await
    }

    /// `POST /register` presenting the secret of `previous` (so that our
    /// discovery lets a live registration be renewed by its holder).
    pub async fn register_presenting(
        &self,
        registration: &Registration,
        previous: Option<&Lease>,
    ) -> Result<Lease, DiscoveryError> {
        let url = format!("{}/register", self.base);
        let mut request = self.http.post(&url).json(registration);
        if let Some(lease) = previous {
            request = with_secret(request, lease);
        }
        let answer: RegisterAnswer = self.send(request, &url).await?;
        Ok(Lease {
            incarnation: answer.incarnation,
            secret: answer.secret,
            ttl: answer.ttl_ms.map(Duration::from_millis),
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
        match self.peers_if_changed(None).await? {
            Listing::Changed { peers, .. } => Ok(peers),
            Listing::Unchanged => Err(DiscoveryError::Decode(
                "304 to a listing request without If-None-Match".to_owned(),
            )),
        }
    }

    /// `GET /peers` with `If-None-Match: etag` when a tag is given.
    pub async fn peers_if_changed(&self, etag: Option<&str>) -> Result<Listing, DiscoveryError> {
        let url = format!("{}/peers", self.base);
        let mut request = self.http.get(&url);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = self.call(request, &url).await?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Listing::Unchanged);
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer: PeersAnswer = self
            .read(response, &url, self.limits.max_listing_bytes)
            .await?;
        Ok(Listing::Changed {
            peers: answer.peers,
            etag,
        })
    }

    /// `GET /peers/{cell_id}` (our discovery); `None` when it is not
    /// listed, or when discovery has no such call (the original service).
    pub async fn peer(&self, cell_id: &str) -> Result<Option<PeerInfo>, DiscoveryError> {
        let url = format!("{}/peers/{}", self.base, cell_id);
        let response = self.call(self.http.get(&url), &url).await?;
        if response.status() == StatusCode::NOT_FOUND
            || response.status() == StatusCode::METHOD_NOT_ALLOWED
        {
            return Ok(None);
        }
        self.read(response, &url, self.limits.max_answer_bytes)
            .await
            .map(Some)
    }

    /// Sends `request` (with the token, if any).
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, DiscoveryError> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request
            .send()
            .await
            .map_err(|error| DiscoveryError::Unreachable {
                url: url.to_owned(),
                error,
            })
    }

    /// Sends `request` and reads a 2xx answer as `T`.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, DiscoveryError> {
        let response = self.call(request, url).await?;
        self.read(response, url, self.limits.max_answer_bytes).await
    }

    /// Reads a 2xx answer as `T` (at most `limit` bytes); any other status
    /// becomes the matching [`DiscoveryError`], with discovery's `detail`.
    async fn read<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
        url: &str,
        limit: usize,
    ) -> Result<T, DiscoveryError> {
        let status = response.status();
        let body = read_limited(response, url, limit).await?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| DiscoveryError::Decode(e.to_string()));
        }
        Err(DiscoveryError::from_status(status, error_detail(&body)))
    }
}

/// Reads `response`'s body, failing past `limit` bytes (announced or
/// received).
async fn read_limited(
    mut response: reqwest::Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, DiscoveryError> {
    let too_large = || DiscoveryError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(DiscoveryError::Unreachable {
                    url: url.to_owned(),
                    error,
                });
            }
        }
    }
}

/// The `detail` of an error answer: a sentence, or (422) the messages of
/// its field errors; the start of the body otherwise.
fn error_detail(body: &[u8]) -> String {
    match serde_json::from_slice::<AnyDetail>(body) {
        Ok(AnyDetail {
            detail: Value::String(s),
        }) => s,
        Ok(AnyDetail {
            detail: Value::Array(errors),
        }) => {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| match e.get("msg").and_then(Value::as_str) {
                    Some(msg) => msg.to_owned(),
                    None => e.to_string(),
                })
                .collect();
            messages.join("; ")
        }
        Ok(AnyDetail { detail }) => detail.to_string(),
        Err(_) => String::from_utf8_lossy(body).chars().take(200).collect(),
    }
}

/// The `detail` of an error answer.
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

/// Builds the one HTTP client of a host: `timeout` per request and per
/// connect, and no redirects (a 3xx is an answer, never followed).
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .or_else(|_| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
        })
        .expect("a client without TLS or proxies always builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_become_their_messages() {
        let body =
            br#"{"detail":[{"type":"missing","loc":["body","port"],"msg":"port: Field required"},
                       {"type":"too_long","loc":["body","branch"],"msg":"branch: too long"}]}"#;
        assert_eq!(error_detail(body), "port: Field required; branch: too long");
        assert_eq!(
            error_detail(br#"{"detail":"Peer not found"}"#),
            "Peer not found"
        );
        assert_eq!(error_detail(b"<html>"), "<html>");
    }
}
