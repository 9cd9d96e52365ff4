//! Integration tests of the discovery server: one binary, shared helpers in this file.

#![allow(missing_docs)]

mod batch;
mod browser;
mod contract;
mod input;
mod liveness;
mod memory;
mod registry_model;
mod security;
mod server;
mod takeover;
mod watch;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use discovery::{AppState, Config, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A config with no start-up grace, for tests.
pub fn cfg() -> Config {
    Config {
        startup_grace: Duration::ZERO,
        ..Config::default()
    }
}

/// A router over fresh state.
pub fn router(config: Config) -> (AppState, Router) {
    let state = AppState::new(config);
    (state.clone(), app(state))
}

/// An answer, with the body parsed as JSON when it is JSON (else a JSON string of the text).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub text: String,
}

/// Sends one request through the router.
pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_vec())))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.clone()));
    Answer {
        status,
        headers,
        json,
        text,
    }
}

pub async fn post(app: &Router, uri: &str, body: &Value) -> Answer {
    call(
        app,
        Method::POST,
        uri,
        Some(body.to_string().as_bytes()),
        &[],
    )
    .await
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    call(app, Method::GET, uri, None, &[]).await
}

pub async fn delete(app: &Router, uri: &str) -> Answer {
    call(app, Method::DELETE, uri, None, &[]).await
}

/// The original "pure" cell's registration.
pub fn pure() -> Value {
    json!({
        "cell_id": "pure",
        "ip": "a173f12aa7e0",
        "port": 8002,
        "consciousness_level": 0.1,
        "services": ["consciousness-primitives"],
        "branch": "main",
        "type": "pure_cell",
        "hostname": "a173f12aa7e0"
    })
}

/// The original "alpha" cell's registration.
pub fn alpha() -> Value {
    json!({
        "cell_id": "alpha",
        "ip": "fd510599bfd9",
        "port": 8000,
        "consciousness_level": 5.2,
        "services": ["code-analysis", "consciousness-sync", "dendritic-communication",
                     "tachyonic-archival", "geometric-engine"],
        "branch": "main",
        "type": "alpha_cell",
        "hostname": "fd510599bfd9"
    })
}

/// A minimal registration of `id`.
pub fn cell(id: &str) -> Value {
    json!({"cell_id": id, "ip": "127.0.0.1", "port": 9000})
}

/// Peer ids listed by `/peers`, sorted.
pub async fn ids(app: &Router) -> Vec<String> {
    let a = get(app, "/peers").await;
    let mut v: Vec<String> = a.json["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["cell_id"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// The value of one sample line in `/metrics`.
pub async fn metric(app: &Router, line_prefix: &str) -> f64 {
    let a = get(app, "/metrics").await;
    a.text
        .lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no metric {line_prefix} in\n{}", a.text))
}
