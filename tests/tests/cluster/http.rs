//! The client for the APIs the cluster publishes on 127.0.0.1: blocking
//! reqwest, since the test drives `docker` synchronously anyway.
//!
//! Answers stay untyped JSON ([`serde_json::Value`]): the test checks the
//! wire as the original's clients saw it, field by field, and a typed
//! struct would hide an extra field or a number sent as a string.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

/// Deadline of one request, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A status and a body, whatever the status.
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body, lossily decoded.
    pub body: String,
}

impl Answer {
    /// The body as JSON, or an error naming the status and body when the
    /// status is not 2xx or the body is not JSON.
    pub fn json(&self) -> Result<Value> {
        ensure!(
            (200..300).contains(&self.status),
            "answered {}: {}",
            self.status,
            self.body
        );
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// A blocking HTTP client for `host:port` addresses on loopback.
#[derive(Clone)]
pub struct Http {
    client: Client,
}

impl Http {
    /// A client with [`TIMEOUT`] on every request, no proxy (the addresses
    /// are loopback) and no idle connections kept: containers restart and
    /// are cut off the network, and a pooled connection to one that is gone
    /// would turn a quick refusal into a stale-connection error or a hang.
    pub fn new() -> Result<Self> {
        let client = Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()
            .context("building the HTTP client")?;
        Ok(Self { client })
    }

    /// `GET http://{addr}{path}`.
    pub fn get(&self, addr: &str, path: &str) -> Result<Answer> {
        let url = format!("http://{addr}{path}");
        send(self.client.get(&url)).with_context(|| format!("GET {url}"))
    }

    /// `POST http://{addr}{path}` with `body` as JSON.
    pub fn post_json(&self, addr: &str, path: &str, body: &Value) -> Result<Answer> {
        let url = format!("http://{addr}{path}");
        send(self.client.post(&url).json(body)).with_context(|| format!("POST {url}"))
    }
}

fn send(request: RequestBuilder) -> Result<Answer> {
    let response = request.send()?;
    let status = response.status().as_u16();
    let bytes = response.bytes()?;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
