//! Where a cell may send, and the one HTTP client it calls peers with.
//!
//! A cell's API makes it call other addresses (`/send`, `/send_to_peer`,
//! the plugin's `send-message`), so it must not become a proxy into the
//! network it runs in. Three rules, each enforced here:
//!
//! - **URLs are built with a URL type**, never pasted: a listed peer's `ip`
//!   must be an IP address or a host name of letters, digits, `-`, `_` and
//!   `.` ([`listed_peer_url`]); a hand-kept `endpoint` must be a plain
//!   `http://HOST[:PORT][/PATH]` URL ([`endpoint_url`]).
//! - **Redirects are never followed**: a peer's 3xx is its answer.
//! - **Addresses are checked at connect time** against the [`PeerPolicy`]
//!   (`--peer-allow`): IP literals before the request is sent (they bypass
//!   any resolver), names on every address they resolve to, in the
//!   resolver hook [`PeerClient`] installs. A refused address fails before a
//!   connection is tried.
//!
//! The default policy allows every address but the link-local ranges
//! (169.254.0.0/16, fe80::/10) and the cloud-metadata addresses
//! (169.254.169.254, fd00:ec2::254, 100.100.100.200): loopback and private
//! ranges stay allowed, as the mesh runs there. `--peer-allow` replaces the
//! "every address" part with its ranges; a denied range is lifted only by an
//! allowed range at least as specific (`169.254.0.0/16` lifts link-local,
//! `0.0.0.0/0` does not). Unspecified, broadcast and multicast addresses are
//! never peers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Url, redirect};

/// Longest hand-kept `endpoint`, in bytes.
pub const MAX_ENDPOINT_LEN: usize = 2_048;
/// Longest host name accepted as a listed peer's `ip` (DNS's limit).
pub const MAX_HOST_NAME_LEN: usize = cellmesh_wire::limits::HOST_NAME_MAX_LEN;

/// An IP range, `ADDRESS/PREFIX` (a bare address is one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `prefix` leading bits of `address` (`None` when the
    /// prefix is longer than the address).
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then(|| Self {
            network: mask(address, prefix),
            prefix,
        })
    }

    /// Whether `ip` lies in the range (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    /// Its prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4)
                & u32::MAX
                    .checked_shl(32 - u32::from(prefix))
                    .unwrap_or_default();
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6)
                & u128::MAX
                    .checked_shl(128 - u32::from(prefix))
                    .unwrap_or_default();
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address; surrounding
    /// spaces are ignored. Host bits set below the prefix are cleared.
    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| {
            format!("`{raw}` is not a CIDR range: `{address}` is not an IP address")
        })?;
        let address = address.to_canonical();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .map_err(|_| format!("`{raw}` is not a CIDR range: the prefix must be a number"))?,
        };
        Cidr::new(address, prefix)
            .ok_or_else(|| format!("`{raw}` is not a CIDR range: the prefix exceeds {bits}"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Ranges refused unless `--peer-allow` names them (or a narrower range
/// inside them): link-local and cloud-metadata addresses.
pub const DEFAULT_DENIED: [(&str, &str); 5] = [
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("169.254.169.254/32", "cloud metadata"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("100.100.100.200/32", "cloud metadata"),
];

/// Where a host may send: `--peer-allow`, on top of [`DEFAULT_DENIED`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// `None`: every address; else only these ranges.
    allow: Option<Vec<Cidr>>,
    denied: Vec<(Cidr, &'static str)>,
}

impl Default for PeerPolicy {
    /// Every address but the [`DEFAULT_DENIED`] ranges.
    fn default() -> Self {
        let denied = DEFAULT_DENIED
            .iter()
            .map(|(range, why)| (range.parse().expect("a valid built-in range"), *why))
            .collect();
        Self {
            allow: None,
            denied,
        }
    }
}

impl PeerPolicy {
    /// Only the addresses in `ranges` (`--peer-allow`); an empty list is
    /// the default policy.
    pub fn allow_only(ranges: Vec<Cidr>) -> Self {
        Self {
            allow: (!ranges.is_empty()).then_some(ranges),
            ..Self::default()
        }
    }

    /// Whether a peer may be reached at `ip`; the error says why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), EgressError> {
        let ip = ip.to_canonical();
        let refuse = |why: String| {
            Err(EgressError::Refused {
                address: ip,
                why,
                allow: self.describe_allow(),
            })
        };
        let never = match ip {
            IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
            IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
        };
        if never {
            return refuse("an unspecified, broadcast or multicast address is never a peer".into());
        }
        let allowed_by = self.allow.as_ref().map(|ranges| {
            ranges
                .iter()
                .filter(|r| r.contains(ip))
                .map(Cidr::prefix)
                .max()
        });
        let most_specific_allow = match allowed_by {
            None => None,
            Some(Some(prefix)) => Some(prefix),
            Some(None) => return refuse("it is in no --peer-allow range".into()),
        };
        for (range, why) in &self.denied {
            let lifted = most_specific_allow.is_some_and(|prefix| prefix >= range.prefix());
            if range.contains(ip) && !lifted {
                return refuse(format!(
                    "it is a {why} address ({range}), refused unless --peer-allow names that range"
                ));
            }
        }
        Ok(())
    }

    fn describe_allow(&self) -> String {
        match &self.allow {
            None => "default policy".to_owned(),
            Some(ranges) => {
                let ranges: Vec<String> = ranges.iter().map(Cidr::to_string).collect();
                format!("--peer-allow {}", ranges.join(","))
            }
        }
    }
}

/// Why a peer address is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Discovery listed a peer at an `ip` that is not an address or name.
    #[error(
        "discovery lists `{cell_id}` at ip {ip:?} port {port}, which is not an IP address or a \
         host name of letters, digits, `-`, `_` and `.` with a port from 1 to 65535: refused"
    )]
    InvalidListedAddress {
        /// The listed id.
        cell_id: String,
        /// The listed `ip`.
        ip: String,
        /// The listed port.
        port: u16,
    },
    /// A hand-kept endpoint is not a plain `http://` URL.
    #[error("field `endpoint` {why} (got {endpoint:?})")]
    InvalidEndpoint {
        /// The endpoint given.
        endpoint: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The policy refuses the address.
    #[error("address {address} is not allowed ({allow}): {why}; set --peer-allow to change")]
    Refused {
        /// The refused address.
        address: IpAddr,
        /// Why.
        why: String,
        /// The policy in force.
        allow: String,
    },
}

/// Whether `host` is a host name peers may be listed at: 1 to 253 letters,
/// digits, `-`, `_` and `.` (Docker's container names included).
pub fn is_valid_host_name(host: &str) -> bool {
    cellmesh_wire::limits::is_valid_host_name(host)
}

/// The base URL of the peer discovery lists as `cell_id` at `ip` and
/// `port`: `http://IP:PORT` or `http://NAME:PORT`, built with [`Url`]; an
/// `ip` with a port, path, userinfo or anything but an address or a host
/// name is refused, and so is port 0. An IPv6 address may come in
/// brackets.
pub fn listed_peer_url(cell_id: &str, ip: &str, port: u16) -> Result<Url, EgressError> {
    let invalid = || EgressError::InvalidListedAddress {
        cell_id: cell_id.to_owned(),
        ip: ip.to_owned(),
        port,
    };
    let unbracketed = ip.strip_prefix('[').and_then(|rest| rest.strip_suffix(']'));
    let address = match unbracketed {
        Some(inner) => Some(IpAddr::V6(inner.parse().map_err(|_| invalid())?)),
        None => ip.parse::<IpAddr>().ok(),
    };
    if port == 0 {
        return Err(invalid());
    }
    let mut url = Url::parse("http://peer.invalid/").expect("a valid URL");
    match address {
        Some(address) => url.set_ip_host(address).map_err(|()| invalid())?,
        None if is_valid_host_name(ip) => url.set_host(Some(ip)).map_err(|_| invalid())?,
        None => return Err(invalid()),
    }
    url.set_port(Some(port)).map_err(|()| invalid())?;
    Ok(url)
}

/// A hand-kept peer's `endpoint` checked: `http://HOST[:PORT][/PATH]`,
/// without userinfo, query or fragment, at most [`MAX_ENDPOINT_LEN`] bytes,
/// its host an IP address or a host name as [`is_valid_host_name`] says.
pub fn endpoint_url(endpoint: &str) -> Result<Url, EgressError> {
    let invalid = |why| EgressError::InvalidEndpoint {
        endpoint: endpoint.chars().take(200).collect(),
        why,
    };
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err(invalid("is longer than 2048 bytes"));
    }
    let url = Url::parse(endpoint).map_err(|_| invalid("must be an http:// URL"))?;
    if url.scheme() != "http" {
        return Err(invalid(
            "must be an http:// URL (this host speaks plain HTTP to peers)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not carry a query or fragment"));
    }
    match url.host_str() {
        None | Some("") => Err(invalid("must name a host")),
        Some(_) if literal_address(&url).is_some() => Ok(url),
        Some(name) if is_valid_host_name(name) => Ok(url),
        Some(_) => Err(invalid(
            "must name a host of letters, digits, `-`, `_` and `.`, or an IP address",
        )),
    }
}

/// `base` + `/message` (the original's `endpoint + "/message"`), as a path
/// segment: `http://h:1/api/` and `http://h:1/api` both give
/// `http://h:1/api/message`.
pub fn message_url(base: &Url) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push("message");
    }
    url
}

/// The IP address of `url`'s host when it is an IP literal (the URL
/// parser has normalised every IPv4 spelling, and writes IPv6 in brackets).
fn literal_address(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(addrs.collect::<Vec<SocketAddr>>().into_iter());
            Ok(addrs)
        })
    }
}

/// A resolver that drops the addresses the policy refuses, and fails when
/// none is left: a name is checked on what it resolves to, at connect time.
struct PolicyResolver {
    inner: Arc<dyn Resolve>,
    policy: Arc<PeerPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let resolving = self.inner.resolve(name);
        Box::pin(async move {
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolving
                .await?
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(error) => {
                        refused.get_or_insert(error);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(error)) => {
                    // Boxed as itself, so `SendFailure` finds it by downcast.
                    let error: Box<dyn std::error::Error + Send + Sync> = Box::new(error);
                    Err(error)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The HTTP client a cell calls peers with: never follows redirects, checks
/// every address against its [`PeerPolicy`] before connecting.
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    policy: Arc<PeerPolicy>,
}

impl PeerClient {
    /// A client with `policy`, `timeout` per request (and per connection),
    /// resolving names with the system resolver.
    pub fn new(policy: PeerPolicy, timeout: Duration) -> Self {
        Self::with_resolver(policy, timeout, Arc::new(SystemResolver))
    }

    /// The same with another resolver under the policy check (tests use a
    /// fixed table).
    pub fn with_resolver(policy: PeerPolicy, timeout: Duration, inner: Arc<dyn Resolve>) -> Self {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver {
                inner,
                policy: policy.clone(),
            }))
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a client without TLS or proxies always builds");
        Self { http, policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &PeerPolicy {
        &self.policy
    }

    /// Checks `url`'s host when it is an IP literal (a name is checked when
    /// it is resolved).
    pub fn check_literal(&self, url: &Url) -> Result<(), EgressError> {
        literal_address(url).map_or(Ok(()), |ip| self.policy.check(ip))
    }

    /// POSTs `body` as JSON to `url`, after the literal check; `timeout`
    /// overrides the client's for this request.
    pub async fn post_json<T: serde::Serialize + ?Sized>(
        &self,
        url: Url,
        body: &T,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, SendFailure> {
        self.check_literal(&url)?;
        let mut request = self.http.post(url).json(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        request.send().await.map_err(SendFailure::from_transport)
    }
}

/// Why a request to a peer got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendFailure {
    /// Refused before connecting.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The transport failed (connection refused, timeout...).
    #[error("{0}")]
    Transport(String),
}

impl SendFailure {
    /// A transport error, or the policy refusal the resolver hook raised
    /// inside it.
    pub fn from_transport(error: reqwest::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        let mut parts = Vec::new();
        while let Some(current) = source {
            if let Some(egress) = current.downcast_ref::<EgressError>() {
                return SendFailure::Egress(egress.clone());
            }
            let text = current.to_string();
            if !parts.iter().any(|p: &String| p.contains(&text)) {
                parts.push(text);
            }
            source = current.source();
        }
        SendFailure::Transport(parts.join(": "))
    }
}

#[cfg(test)]
mod tests;
