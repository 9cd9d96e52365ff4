//! Shared helpers of the host integration tests: a real discovery server on
//! port 0, in-process hosts, polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cell_host::{Args, HostConfig};
use clap::Parser;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a poll waits before failing the test: an upper bound only
/// (polls end as soon as the condition holds), so generous enough for a
/// loaded machine, including a child process that compiles its plugin on a
/// cold cache.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `check` every 10 ms until it answers `Some`, failing after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A shared compiled-component cache, kept across test runs.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cell-host-cache")
}

/// An HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A discovery server running in this process.
pub struct Discovery {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Discovery {
    /// Starts discovery on 127.0.0.1:0 with a TTL of `ttl`.
    pub async fn start(ttl: Duration) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(listener, ttl)
    }

    /// Starts discovery on a bound listener.
    pub fn start_on(listener: TcpListener, ttl: Duration) -> Result<Self> {
        let config = discovery::Config {
            ttl,
            startup_grace: Duration::ZERO,
            ..discovery::Config::default()
        };
        Self::start_with(listener, config)
    }

    /// Starts discovery on 127.0.0.1:0 with a TTL of `ttl` and tokens: a
    /// shared one and, optionally, an admin one (per-cell secrets enforced).
    pub async fn start_secured(ttl: Duration, token: &str, admin: Option<&str>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let config = discovery::Config {
            ttl,
            startup_grace: Duration::ZERO,
            token: Some(token.into()),
            admin_token: admin.map(Into::into),
            ..discovery::Config::default()
        };
        Self::start_with(listener, config)
    }

    /// Starts discovery with `config` on a bound listener.
    pub fn start_with(listener: TcpListener, config: discovery::Config) -> Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = discovery::serve(listener, config, shutdown).await {
                eprintln!("discovery stopped: {error}");
            }
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops it and starts a fresh one (empty registry) on the same port.
    pub async fn restart(&mut self, ttl: Duration) -> Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr)
            .await
            .context("rebinding discovery's port")?;
        *self = Self::start_on(listener, ttl)?;
        Ok(())
    }

    /// `GET /peers`.
    pub async fn peers(&self) -> Result<Vec<Value>> {
        let body: Value = client()
            .get(format!("{}/peers", self.url()))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["peers"].as_array().cloned().unwrap_or_default())
    }

    /// The peer entry of `cell_id`, if listed.
    pub async fn peer(&self, cell_id: &str) -> Option<Value> {
        self.peers()
            .await
            .ok()?
            .into_iter()
            .find(|p| p["cell_id"] == cell_id)
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The configuration of a host of `plugin` against `discovery`, parsed
/// from flags as the binary does, with fast intervals; `extra` are more
/// flags.
pub fn args(plugin: &str, discovery: &str, extra: &[&str]) -> HostConfig {
    let cache = cache_dir();
    let mut argv: Vec<String> = vec![
        "cell-host".into(),
        "--plugin".into(),
        plugin.into(),
        "--discovery".into(),
        discovery.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--heartbeat-ms".into(),
        "200".into(),
        "--register-base-ms".into(),
        "20".into(),
        "--register-cap-ms".into(),
        "200".into(),
        "--cache-dir".into(),
        cache.display().to_string(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    let args = Args::try_parse_from(argv).expect("test arguments parse");
    HostConfig::try_from(args).expect("test arguments are valid")
}

/// A host running in this process.
pub struct Host {
    pub addr: SocketAddr,
    pub cell_id: String,
    /// The cell's shared state, to look inside from tests.
    pub cell: std::sync::Arc<cell_host::cell::CellRuntime>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), cell_host::Error>>>,
}

impl Host {
    /// Loads the plugin and serves it on 127.0.0.1:0.
    pub async fn start(config: HostConfig) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let host = cell_host::start(config, listener).await?;
        let addr = host.local_addr()?;
        let cell_id = host.cell().cell_id().to_owned();
        let cell = host.cell().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(host.serve(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            cell_id,
            cell,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Base URL of its API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether `serve` is still running.
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Waits (at most `within`) for `serve` to end by itself, and returns
    /// how it ended; `Err` when it was still running after `within`.
    pub async fn ended_within(&mut self, within: Duration) -> Result<Result<(), cell_host::Error>> {
        let task = self.task.as_mut().context("already stopped")?;
        let ended = tokio::time::timeout(within, task)
            .await
            .with_context(|| format!("serve still running after {within:?}"))?;
        self.task = None;
        Ok(ended?)
    }

    /// `GET path` as text, with the status.
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = client()
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Shuts it down and returns how `serve` ended.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => Ok(task.await??),
            None => bail!("already stopped"),
        }
    }

    /// Waits until discovery lists this host's cell, and returns the entry.
    pub async fn registered_with(&self, discovery: &Discovery) -> Value {
        let id = self.cell_id.clone();
        eventually(&format!("{id} registered"), PATIENCE, || async {
            discovery.peer(&id).await
        })
        .await
    }

    /// `GET path` as JSON, with the status.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = client()
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` with a JSON body, as JSON with the status.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = client()
            .post(format!("{}{path}", self.url()))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Registers `cell_id` at `ip:port` with the discovery at `url`, as
/// another party would (with `token` as bearer, if given); answers the
/// status and body.
pub async fn register_as(
    url: &str,
    cell_id: &str,
    ip: &str,
    port: u16,
    token: Option<&str>,
) -> Result<(u16, Value)> {
    let mut request = client()
        .post(format!("{url}/register"))
        .json(&serde_json::json!({"cell_id": cell_id, "ip": ip, "port": port}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// Serves `router` on 127.0.0.1:0 until the returned guard is dropped.
pub async fn serve_router(router: axum::Router) -> Result<(SocketAddr, TaskGuard)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, TaskGuard(task)))
}

/// Aborts its task when dropped.
pub struct TaskGuard(pub JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A child process killed (SIGKILL) and reaped if the test ends early.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    /// Takes the child out, disarming the guard.
    pub fn take(&mut self) -> std::process::Child {
        self.0.take().expect("child present")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
