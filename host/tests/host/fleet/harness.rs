//! Running the `cell-host` binary as a many-cell host: a `cells.toml` in a
//! temporary directory, the child's output drained (a host of hundreds of
//! cells logs more than a pipe holds: an undrained pipe would block it), its
//! admin address read from its log, signals, and the metrics of discovery.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::support::{self, ChildGuard, Discovery, PATIENCE, eventually};

/// Discovery's TTL in these tests: short, so that a dead host's cells are
/// reaped (and a missed heartbeat shows) within seconds.
pub const SHORT_TTL: Duration = Duration::from_secs(3);

/// The heartbeat interval of the hosts under test: six beats per TTL, so
/// that a beat delayed by a busy machine does not expire anyone.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// The shutdown's own bounds, as the binary's defaults give them: 2 s to
/// deregister, 3 s to drain, 1 s for the plugins' hooks.
pub const SHUTDOWN_TARGET: Duration = Duration::from_secs(6);

/// One at a time: each test here runs hundreds of cells, and two at once on
/// a 2-core machine would starve each other's heartbeats (what the tests
/// check). A permit held for a test's whole run, not a data lock.
static CROWDS: Semaphore = Semaphore::const_new(1);

/// Waits for the turn of a many-cell test.
pub async fn crowd_turn() -> SemaphorePermit<'static> {
    CROWDS.acquire().await.expect("never closed")
}

/// A `cells.toml` in a temporary directory (removed on drop).
pub struct CellsFile {
    dir: tempfile::TempDir,
}

impl CellsFile {
    /// Writes `toml` as `cells.toml`.
    pub fn write(toml: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("cells.toml"), toml)?;
        Ok(Self { dir })
    }

    /// Its path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("cells.toml")
    }
}

/// A `[[cell]]` table of `replicas` cells of `plugin` named from `id`, with
/// optional `[cell.limits]` lines.
pub fn cell_table(plugin: &str, id: &str, replicas: usize, limits: &[(&str, u64)]) -> String {
    let mut table = format!(
        "[[cell]]\nplugin = {}\nid = \"{id}\"\nreplicas = {replicas}\n",
        toml_string(plugin)
    );
    if !limits.is_empty() {
        table.push_str("[cell.limits]\n");
        for (key, value) in limits {
            table.push_str(&format!("{key} = {value}\n"));
        }
    }
    table.push('\n');
    table
}

/// A TOML basic string holding `text` (paths: backslashes and quotes
/// escaped).
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The flags every host under test gets: `--cells FILE` against
/// `discovery`, cells on ephemeral ports of 127.0.0.1, the admin API on an
/// ephemeral port, fast heartbeats and retries, the shared compile cache.
pub fn host_flags(cells: &Path, discovery: &str) -> Vec<String> {
    [
        "--cells",
        &cells.display().to_string(),
        "--discovery",
        discovery,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--heartbeat-ms",
        &HEARTBEAT.as_millis().to_string(),
        "--register-base-ms",
        "20",
        "--register-cap-ms",
        "500",
        "--cache-dir",
        &support::cache_dir().display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The `cell-host` binary running as a child process, its output collected
/// line by line; killed (SIGKILL) and reaped when dropped.
pub struct HostProcess {
    guard: ChildGuard,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    started: Instant,
}

impl HostProcess {
    /// Starts `cell-host` with `flags` (info logs, so its admin address
    /// shows).
    pub fn spawn(flags: &[String]) -> Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cell-host"))
            .args(flags)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("PORT")
            .env_remove("AIOS_CELL_ID")
            .env_remove("CELLMESH_PLUGIN")
            .env_remove("CELLMESH_CELLS")
            .env_remove("CELLMESH_PORT_RANGE")
            .env_remove("CELLMESH_BATCH")
            .env_remove("CELLMESH_ADMIN_LISTEN")
            .env_remove("CELLMESH_ADMIN_TOKEN")
            .env_remove("CELLMESH_HOST_ID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn cell-host")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            drain(out, lines.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, lines.clone());
        }
        Ok(Self {
            pid: child.id(),
            guard: ChildGuard(Some(child)),
            lines,
            started: Instant::now(),
        })
    }

    /// Time since it was started.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Everything it wrote so far (stdout and stderr, interleaved by line).
    pub fn output(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// The last `n` lines it wrote, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().expect("lines");
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The admin API's address, from the host's log: the first line that
    /// mentions the `admin API` and an address of 127.0.0.1 (`INFO ... admin
    /// API serving admin=http://127.0.0.1:PORT`).
    pub async fn admin_addr(&mut self) -> SocketAddr {
        let lines = self.lines.clone();
        let pid = self.pid;
        eventually("the host logging its admin address", PATIENCE, || {
            let found = lines
                .lock()
                .expect("lines")
                .iter()
                .filter(|line| line.to_ascii_lowercase().contains("admin api"))
                .find_map(|line| loopback_addr(line));
            let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
            async move {
                assert!(alive || found.is_some(), "the host exited before serving");
                found
            }
        })
        .await
    }

    /// Waits until it has a SIGTERM handler installed (a SIGTERM before
    /// that kills it outright).
    pub async fn catching_sigterm(&self) {
        let pid = self.pid;
        eventually("the host catching SIGTERM", PATIENCE, || async move {
            catches(pid, 15).then_some(())
        })
        .await;
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid);
    }

    /// Sends SIGKILL (`kill -9`) and reaps it.
    pub fn kill_9(&mut self) -> Result<()> {
        let mut child = self.guard.take();
        let killed = child.kill();
        child.wait().context("reaping")?;
        killed.context("SIGKILL")?;
        Ok(())
    }

    /// SIGTERM once its handler is installed; the host must exit 0 within
    /// 5x the shutdown's own bounds. Answers how long it took.
    pub async fn stop_cleanly(&mut self) -> Result<Duration> {
        self.catching_sigterm().await;
        self.terminate();
        let (status, took) = self.exited_within(5 * SHUTDOWN_TARGET).await?;
        assert!(
            status.success(),
            "exit {status}; output:\n{}",
            self.tail(40)
        );
        Ok(took)
    }

    /// Waits (at most `within`) for it to exit by itself; kills it and
    /// fails past that. Answers the status and how long it took.
    pub async fn exited_within(&mut self, within: Duration) -> Result<(ExitStatus, Duration)> {
        let since = Instant::now();
        loop {
            let child = self.guard.0.as_mut().context("already reaped")?;
            if let Some(status) = child.try_wait()? {
                // Reaped by `try_wait`: nothing left for the guard.
                self.guard.0 = None;
                // The readers end at the pipes' end: let them catch up.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Ok((status, since.elapsed()));
            }
            if since.elapsed() > within {
                bail!(
                    "still running {within:?} later; last output:\n{}",
                    self.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.guard
            .0
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

/// Reads `pipe` line by line into `lines` until it closes.
fn drain(pipe: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            lines.lock().expect("lines").push(line);
        }
    });
}

/// The first `127.0.0.1:PORT` in `line`.
fn loopback_addr(line: &str) -> Option<SocketAddr> {
    line.match_indices("127.0.0.1:").find_map(|(at, prefix)| {
        let rest = &line[at + prefix.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let port: u16 = digits.parse().ok()?;
        (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
    })
}

/// Whether process `pid` has a handler for signal `signo`: its bit in
/// `SigCgt` of `/proc/PID/status` (Linux); `true` without `/proc`.
fn catches(pid: u32, signo: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signo - 1)) != 0)
}

/// `GET url` as JSON with the status; `None` when it could not be asked.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Discovery's `/metrics` text.
pub async fn discovery_metrics(discovery: &Discovery) -> Result<String> {
    Ok(support::client()
        .get(format!("{}/metrics", discovery.url()))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The value of `series` (a name with its labels, as rendered:
/// `discovery_batch_requests_total{call="heartbeat"}`) in a Prometheus
/// text; `None` when absent.
pub fn series(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// [`series`], failing when discovery does not render it.
pub fn required_series(metrics: &str, name: &str) -> f64 {
    series(metrics, name).unwrap_or_else(|| panic!("no series {name} in discovery's metrics"))
}

/// The listed peers whose id starts with `prefix`.
pub async fn peers_named(discovery: &Discovery, prefix: &str) -> Result<Vec<Value>> {
    Ok(discovery
        .peers()
        .await?
        .into_iter()
        .filter(|p| {
            p["cell_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .collect())
}

/// Waits until discovery lists exactly `count` peers whose id starts with
/// `prefix` (polling every 100 ms: a listing of 1,000 peers is not free),
/// and answers them. Fails early if `host` exits.
pub async fn listed(
    discovery: &Discovery,
    host: &mut HostProcess,
    prefix: &str,
    count: usize,
    within: Duration,
) -> Result<Vec<Value>> {
    let since = Instant::now();
    loop {
        let peers = peers_named(discovery, prefix).await.unwrap_or_default();
        if peers.len() == count {
            return Ok(peers);
        }
        if !host.is_running() {
            bail!(
                "the host exited with {} of {count} `{prefix}*` cells listed; output:\n{}",
                peers.len(),
                host.tail(40)
            );
        }
        if since.elapsed() > within {
            bail!(
                "{} of {count} `{prefix}*` cells listed after {within:?}; last output:\n{}",
                peers.len(),
                host.tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The admin API's `GET path` (`/cells`...) as JSON, with the status.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, Value)> {
    let response = support::client()
        .get(format!("http://{admin}{path}"))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[test]
fn loopback_addresses_are_found_in_log_lines() {
    let line = "2026-01-01T00:00:00Z  INFO cell_host::fleet::serve: admin API serving admin=http://127.0.0.1:41234";
    assert_eq!(
        loopback_addr(line),
        Some(SocketAddr::from(([127, 0, 0, 1], 41234)))
    );
    assert_eq!(loopback_addr("admin on 127.0.0.1:0 requested"), None);
    assert_eq!(loopback_addr("no address"), None);
    let metrics = "# TYPE x counter\nx{call=\"heartbeat\"} 12\nx{call=\"register\"} 1.0000\n";
    assert_eq!(series(metrics, "x{call=\"heartbeat\"}"), Some(12.0));
    assert_eq!(series(metrics, "x{call=\"register\"}"), Some(1.0));
    assert_eq!(series(metrics, "x"), None);
}
