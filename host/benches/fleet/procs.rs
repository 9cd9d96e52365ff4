//! The processes of a run: a fresh discovery, a host running many cells, the start
//! measurement (spawn until discovery lists every cell), discovery's counters and SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::memory::Memory;
use crate::sys::{free_port, ms, tail};

/// How often discovery's `/health` is polled while timing a start.
const POLL: Duration = Duration::from_millis(10);

/// discovery's TTL, in heartbeat intervals.
pub const TTL_HEARTBEATS: u32 = 5;

/// What discovery counted per heartbeat interval (its own `/metrics` and `/health` left out).
#[derive(Default)]
pub struct Traffic {
    /// Every request.
    pub requests: f64,
    /// `POST /batch/heartbeat`.
    pub batch_heartbeats: f64,
    /// `POST /heartbeat` (one cell each).
    pub single_heartbeats: f64,
    /// `GET /peers` (the host's shared view).
    pub listings: f64,
    /// Cells renewed (`discovery_heartbeats_total`).
    pub cells_renewed: f64,
}

pub struct Bins {
    pub host: PathBuf,
    pub discovery: PathBuf,
}

pub struct Bench {
    pub bins: Bins,
    pub cache: PathBuf,
    pub work: PathBuf,
    pub heartbeat: Duration,
}

/// Which cells a host runs.
pub enum HostCells {
    /// `--plugin FILE --replicas N`, on ephemeral ports.
    Replicas(PathBuf, usize),
    /// `--plugin FILE --replicas N --port-range FIRST-(FIRST + N - 1)`.
    ReplicasOnPorts(PathBuf, usize, u16),
    /// `--cells FILE.toml`.
    Toml(PathBuf),
}

impl Bench {
    /// A cells.toml with `n` pure cells and one loop cell, either if given.
    pub fn cells_toml(
        &self,
        name: &str,
        pure: Option<(&Path, usize)>,
        looping: Option<&Path>,
    ) -> Result<PathBuf> {
        let mut text = String::new();
        if let Some((pure, n)) = pure {
            let _ = write!(
                text,
                "[[cell]]\nplugin = {:?}\nid = \"pure\"\nreplicas = {n}\n",
                pure.display().to_string()
            );
        }
        if let Some(looping) = looping {
            let _ = write!(
                text,
                "\n[[cell]]\nplugin = {:?}\nid = \"loop\"\n",
                looping.display().to_string()
            );
        }
        let path = self.work.join(format!("{name}.toml"));
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// A fresh discovery and a host running `cells`; waits until discovery lists `expected`.
    pub async fn start(
        &self,
        cells: &HostCells,
        expected: usize,
        max_peers: usize,
        name: &str,
    ) -> Result<Run> {
        let discovery = self.start_discovery(max_peers.max(100), name).await?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let log = self.work.join(format!("{name}-host.log"));
        let mut cmd = Command::new(&self.bins.host);
        match cells {
            HostCells::Replicas(plugin, n) => {
                cmd.arg("--plugin")
                    .arg(plugin)
                    .args(["--replicas", &n.to_string()]);
            }
            HostCells::ReplicasOnPorts(plugin, n, first) => {
                let last = usize::from(*first) + n - 1;
                cmd.arg("--plugin")
                    .arg(plugin)
                    .args(["--replicas", &n.to_string()])
                    .args(["--port-range", &format!("{first}-{last}")]);
            }
            HostCells::Toml(file) => {
                cmd.arg("--cells").arg(file);
            }
        }
        let admin = free_port()?;
        cmd.arg("--cache-dir")
            .arg(&self.cache)
            .args(["--discovery", &discovery.url])
            .args(["--listen", "127.0.0.1:0", "--advertise", "127.0.0.1"])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .args(["--host-id", &format!("bench-{name}")])
            .args(["--heartbeat-ms", &self.heartbeat.as_millis().to_string()])
            .args(["--startup-delay-ms", "0"])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = cmd.spawn().context("spawning cell-host")?;
        let pid = child.id().context("cell-host's pid")?;
        let deadline = Duration::from_secs(30) + Duration::from_millis(10) * expected as u32;
        let took = loop {
            if discovery.peers_count(&http).await.unwrap_or(0) >= expected {
                break spawned.elapsed();
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "cell-host exited ({status}) before every cell was listed:\n{}",
                    tail(&log)
                );
            }
            if spawned.elapsed() > deadline {
                bail!(
                    "not every cell was listed within {deadline:?} ({} of {expected}):\n{}",
                    discovery.peers_count(&http).await.unwrap_or(0),
                    tail(&log)
                );
            }
            tokio::time::sleep(POLL).await;
        };
        Ok(Run {
            discovery,
            child,
            pid,
            took,
            expected,
            admin: format!("127.0.0.1:{admin}"),
            http,
            log,
        })
    }

    pub async fn start_discovery(&self, max_peers: usize, name: &str) -> Result<Discovery> {
        let port = free_port()?;
        let log = self.work.join(format!("{name}-discovery.log"));
        let ttl = self.heartbeat * TTL_HEARTBEATS;
        let child = Command::new(&self.bins.discovery)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--ttl", &format!("{}ms", ttl.as_millis())])
            .args(["--startup-grace", "0s"])
            .args(["--max-peers", &max_peers.to_string()])
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("spawning discovery")?;
        let discovery = Discovery {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = reqwest::Client::builder().no_proxy().build()?;
        let started = Instant::now();
        while discovery.peers_count(&http).await.is_err() {
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "discovery did not answer within 10 s:\n{}",
                tail(&log)
            );
            tokio::time::sleep(POLL).await;
        }
        Ok(discovery)
    }
}

pub struct Discovery {
    url: String,
    child: Child,
}

impl Discovery {
    pub async fn peers_count(&self, http: &reqwest::Client) -> Result<usize> {
        let health: Value = http
            .get(format!("{}/health", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        health["peers_count"]
            .as_u64()
            .map(|n| n as usize)
            .context("no peers_count in discovery's /health")
    }

    pub async fn peers(&self, http: &reqwest::Client) -> Result<Value> {
        Ok(http
            .get(format!("{}/peers", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Every sample of discovery's `/metrics`, by name and labels.
    pub async fn metrics(&self, http: &reqwest::Client) -> Result<BTreeMap<String, f64>> {
        let text = http
            .get(format!("{}/metrics", self.url))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect())
    }
}

/// One host (and its discovery) that listed every cell.
pub struct Run {
    pub discovery: Discovery,
    pub child: Child,
    pub pid: u32,
    pub took: Duration,
    pub expected: usize,
    pub admin: String,
    pub http: reqwest::Client,
    pub log: PathBuf,
}

impl Run {
    /// Prints the start time and checks that the listing holds every cell on its own port.
    pub async fn report_start(&self) -> Result<()> {
        let peers = self.discovery.peers(&self.http).await?;
        let list = peers["peers"].as_array().context("no peers array")?;
        let ids: BTreeSet<&str> = list.iter().filter_map(|p| p["cell_id"].as_str()).collect();
        let ports: BTreeSet<u64> = list.iter().filter_map(|p| p["port"].as_u64()).collect();
        ensure!(
            ids.len() == self.expected && ports.len() == self.expected,
            "discovery lists {} ids on {} ports, expected {}",
            ids.len(),
            ports.len(),
            self.expected
        );
        let admin = match self.admin_health().await {
            Ok(health) => health.to_string(),
            Err(e) => format!("(admin /health: {e:#})"),
        };
        println!(
            "start: spawn -> all {} cells listed by discovery: {} (warm cache); distinct ids \
             and ports: {}; admin /health: {admin}",
            self.expected,
            ms(self.took),
            ids.len()
        );
        Ok(())
    }

    pub async fn admin_health(&self) -> Result<Value> {
        Ok(self
            .http
            .get(format!("http://{}/health", self.admin))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Memory after the first state reads and two heartbeats have passed.
    pub async fn settled_memory(&self, heartbeat: Duration) -> Memory {
        tokio::time::sleep((heartbeat * 2).max(Duration::from_secs(2))).await;
        Memory::read(self.pid)
    }

    /// The requests discovery counts over `intervals` heartbeat intervals, per interval.
    pub async fn discovery_traffic(&self, heartbeat: Duration, intervals: u32) -> Result<Traffic> {
        let before = self.discovery.metrics(&self.http).await?;
        let started = Instant::now();
        tokio::time::sleep(heartbeat * intervals).await;
        let after = self.discovery.metrics(&self.http).await?;
        let per = started.elapsed().as_secs_f64() / heartbeat.as_secs_f64();
        let mut line = String::new();
        let mut traffic = Traffic::default();
        for (key, value) in &after {
            let counted = key.starts_with("discovery_request_duration_seconds_count{")
                || key.starts_with("discovery_batch_")
                || key == "discovery_heartbeats_total"
                || key == "discovery_registrations_total";
            // Our own scrapes are not the host's.
            if !counted || key.contains("/metrics") || key.contains("/health") {
                continue;
            }
            let delta = value - before.get(key).copied().unwrap_or(0.0);
            if delta > 0.0 {
                let _ = write!(line, "\n    {key}: {:.2}", delta / per);
            }
            if key.starts_with("discovery_request_duration_seconds_count{") {
                traffic.requests += delta / per;
            }
            match key.as_str() {
                r#"discovery_batch_requests_total{call="heartbeat"}"# => {
                    traffic.batch_heartbeats = delta / per
                }
                r#"discovery_request_duration_seconds_count{route="/heartbeat"}"# => {
                    traffic.single_heartbeats = delta / per
                }
                r#"discovery_request_duration_seconds_count{route="/peers"}"# => {
                    traffic.listings = delta / per
                }
                "discovery_heartbeats_total" => traffic.cells_renewed = delta / per,
                _ => {}
            }
        }
        println!(
            "discovery, per heartbeat interval ({:.2} intervals of {}; counters that moved):{line}",
            per,
            ms(heartbeat)
        );
        if !after
            .keys()
            .any(|k| k.starts_with("discovery_batch_requests_total"))
        {
            println!("    (discovery has no discovery_batch_requests_total)");
        }
        Ok(traffic)
    }

    /// Waits past one TTL and checks discovery still lists every cell (heartbeats renew them).
    pub async fn still_listed_after_ttl(&self, n: usize, ttl: Duration) -> Result<()> {
        tokio::time::sleep(ttl + self.took.min(Duration::from_secs(10))).await;
        let listed = self.discovery.peers_count(&self.http).await?;
        println!(
            "heartbeats: {listed} of {n} cells still listed {} after start (TTL {})",
            ms(ttl + self.took.min(Duration::from_secs(10))),
            ms(ttl)
        );
        ensure!(
            listed == n,
            "cells expired: heartbeats did not renew them:\n{}",
            tail(&self.log)
        );
        Ok(())
    }

    /// The listed addresses of the cells whose id starts with `prefix`.
    pub async fn cell_addrs(&self, prefix: &str) -> Result<Vec<SocketAddr>> {
        let peers = self.discovery.peers(&self.http).await?;
        let mut addrs = Vec::new();
        for p in peers["peers"].as_array().context("no peers array")? {
            if p["cell_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
            {
                let ip = p["ip"].as_str().context("ip")?;
                let port = p["port"].as_u64().context("port")?;
                addrs.push(format!("{ip}:{port}").parse()?);
            }
        }
        addrs.sort();
        Ok(addrs)
    }

    /// SIGTERM: how long until every cell left discovery and until the host exited.
    pub async fn stop(mut self) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(self.pid as i32).context("pid")?;
        let issued = Instant::now();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let mut gone = None;
        let status = loop {
            if gone.is_none() && self.discovery.peers_count(&self.http).await.ok() == Some(0) {
                gone = Some(issued.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            ensure!(
                issued.elapsed() < Duration::from_secs(30),
                "cell-host did not exit within 30 s of SIGTERM"
            );
            tokio::time::sleep(POLL).await;
        };
        let exited = issued.elapsed();
        if gone.is_none() && self.discovery.peers_count(&self.http).await.ok() == Some(0) {
            gone = Some(issued.elapsed());
        }
        println!(
            "SIGTERM -> every cell deregistered: {}; -> exited ({status}): {}",
            gone.map_or("not within the exit".to_owned(), ms),
            ms(exited)
        );
        let _ = self.discovery.child.kill().await;
        ensure!(
            status.success(),
            "cell-host exited {status}:\n{}",
            tail(&self.log)
        );
        Ok(())
    }
}
