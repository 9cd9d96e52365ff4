//! Discovery's published API as the test reads it: `/peers` and the
//! eviction counters of `/metrics`.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::http::Http;

/// Discovery at its published address, which changes when it restarts.
pub struct Discovery {
    http: Http,
    addr: String,
}

impl Discovery {
    /// Discovery reached through `http`; no address until [`Self::set_addr`].
    pub fn new(http: Http) -> Self {
        Self {
            http,
            addr: String::new(),
        }
    }

    /// Points at discovery's (new) published `127.0.0.1:PORT`.
    pub fn set_addr(&mut self, addr: String) {
        self.addr = addr;
    }

    /// `GET /peers` as JSON; an error unless it answers 200.
    pub fn peers(&self) -> Result<Value> {
        let answer = self.http.get(&self.addr, "/peers")?;
        ensure!(
            answer.status == 200,
            "GET /peers answered {}: {}",
            answer.status,
            answer.body
        );
        answer.json()
    }

    /// The listed cell ids, or `None` while discovery does not answer.
    pub fn peer_ids(&self) -> Option<BTreeSet<String>> {
        let peers = self.peers().ok()?;
        Some(
            peer_list(&peers)
                .iter()
                .filter_map(|p| p["cell_id"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// `discovery_evictions_total{reason="<reason>"}` from `/metrics`.
    pub fn evictions(&self, reason: &str) -> Result<u64> {
        let text = self.http.get(&self.addr, "/metrics")?.body;
        let prefix = format!("discovery_evictions_total{{reason=\"{reason}\"}}");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .with_context(|| format!("discovery's /metrics has no {prefix}"))?;
        let value: f64 = line[prefix.len()..]
            .trim()
            .parse()
            .with_context(|| line.to_owned())?;
        Ok(value as u64)
    }
}

/// The `peers` array of a `/peers` answer (empty when missing).
pub fn peer_list(peers: &Value) -> &[Value] {
    peers["peers"].as_array().map_or(&[], Vec::as_slice)
}
