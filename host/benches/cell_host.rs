//! Rerunnable benchmark of `cell-host` (results in BENCHMARKS.md):
//!
//! ```text
//! cargo bench -p cell-host --bench cell_host [-- PLUGIN.wasm ...]
//! ```
//!
//! Measures, for each plugin (default: pure and alpha):
//! - compiled-component load time, warm cache (`Component::deserialize_file`)
//!   and cold (compile + write), in-process;
//! - process start -> registered: spawn the release `cell-host` (warm
//!   cache, no start-up delay) and time until a fake discovery, in this
//!   process, receives `POST /register`;
//! - the process's RSS (VmRSS, VmHWM) after registration and after load;
//! - `/message` round trip over loopback, sequential, one keep-alive
//!   connection: p50/p99/max;
//! - `/message` throughput with concurrent keep-alive clients.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::routing::{delete, get, post};
use cell_host::plugin::{ComponentCache, PluginEngine, load_component};
use tokio::sync::mpsc;

const START_RUNS: usize = 15;
const LATENCY_REQUESTS: usize = 5_000;
const THROUGHPUT_SECONDS: u64 = 5;
const THROUGHPUT_CLIENTS: usize = 16;

#[tokio::main]
async fn main() -> Result<()> {
    let plugins: Vec<PathBuf> = {
        // `cargo bench` appends `--bench`.
        let given: Vec<PathBuf> = std::env::args()
            .skip(1)
            .filter(|arg| arg != "--bench")
            .map(PathBuf::from)
            .collect();
        if given.is_empty() {
            vec![
                PathBuf::from(cellmesh_artifacts::PURE_WASM),
                PathBuf::from(cellmesh_artifacts::ALPHA_WASM),
            ]
        } else {
            given
        }
    };
    // Cargo builds the package's binary, same profile, for every bench.
    let binary = Path::new(env!("CARGO_BIN_EXE_cell-host"));
    let cache_dir =
        std::env::temp_dir().join(format!("cellmesh-bench-cache-{}", std::process::id()));
    println!(
        "binary: {}\ncache:  {}",
        binary.display(),
        cache_dir.display()
    );
    for plugin in &plugins {
        println!(
            "\n== {} ({} KiB)",
            plugin.display(),
            std::fs::metadata(plugin)?.len() / 1024
        );
        component_load(plugin, &cache_dir)?;
        allocator_compare(plugin, &cache_dir).await?;
        process_bench(binary, plugin, &cache_dir).await?;
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// In-process: cold compile (+ cache write) and warm loads.
fn component_load(plugin: &Path, cache_dir: &Path) -> Result<()> {
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let cache = ComponentCache::new(cache_dir);
    let started = Instant::now();
    let (_, outcome) = load_component(&engine, plugin, Some(&cache))?;
    let cold = started.elapsed();
    let mut warm: Vec<Duration> = (0..50)
        .map(|_| {
            let started = Instant::now();
            let (_, outcome) = load_component(&engine, plugin, Some(&cache)).expect("load");
            assert_eq!(outcome, cell_host::plugin::CacheOutcome::Hit);
            started.elapsed()
        })
        .collect();
    warm.sort();
    println!(
        "component load: cold {} ({outcome:?}); warm cache (read + sha256 + deserialize_file) p50 {} p95 {}",
        ms(cold),
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.95))
    );
    Ok(())
}

/// In-process: `PluginSandbox::builder(..).load()` from a warm cache (component load,
/// `instantiate_pre`, instantiation, `manifest` call), with wasmtime's
/// default on-demand allocator and with the pooling allocator.
async fn allocator_compare(plugin: &Path, cache_dir: &Path) -> Result<()> {
    use cell_host::plugin::PluginSandbox;
    use cell_host::plugin::engine::engine_config;
    use wasmtime::{InstanceAllocationStrategy, PoolingAllocationConfig};

    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(4)
        .total_core_instances(64)
        .total_memories(16)
        .total_tables(16)
        .max_memory_size(64 << 20);
    let mut pooled = engine_config();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    let cache = ComponentCache::new(cache_dir);
    for (name, config) in [("on-demand", engine_config()), ("pooling", pooled)] {
        let engine = PluginEngine::with_config(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut times = Vec::new();
        for _ in 0..30 {
            let started = Instant::now();
            let sandbox = PluginSandbox::builder(&engine, plugin)
                .cache(Some(&cache))
                .load()
                .await?;
            times.push(started.elapsed());
            drop(sandbox);
        }
        times.sort();
        println!(
            "load + instantiate + manifest ({name} allocator, warm cache): p50 {} p95 {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95))
        );
    }
    Ok(())
}

/// A fake discovery that reports when registrations arrive.
async fn fake_discovery() -> Result<(String, mpsc::UnboundedReceiver<Instant>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx = Arc::new(tx);
    let app = Router::new()
        .route(
            "/register",
            post(move |body: String| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(Instant::now());
                    let id = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["cell_id"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    axum::Json(serde_json::json!({"status": "registered", "cell_id": id}))
                }
            }),
        )
        .route(
            "/heartbeat",
            // The original's answer: status, cell_id, peers_count.
            post(|body: String| async move {
                let id = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["cell_id"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                axum::Json(serde_json::json!({"status": "ok", "cell_id": id, "peers_count": 1}))
            }),
        )
        .route(
            "/peers",
            get(|| async {
                axum::Json(serde_json::json!({"peers": [], "count": 0, "my_host": "bench"}))
            }),
        )
        .route(
            "/peer/{id}",
            delete(|| async { axum::Json(serde_json::json!({"status": "deregistered"})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn spawn_host(
    binary: &Path,
    plugin: &Path,
    cache_dir: &Path,
    discovery: &str,
    port: u16,
) -> Result<Child> {
    Ok(Command::new(binary)
        .arg("--plugin")
        .arg(plugin)
        .arg("--cache-dir")
        .arg(cache_dir)
        .args([
            "--discovery",
            discovery,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--heartbeat-ms", "5000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?)
}

fn stop(mut child: Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let status = child.wait()?;
    if !status.success() {
        bail!("cell-host exited with {status}");
    }
    Ok(())
}

const MESSAGE: &str =
    r#"{"from_cell":"bench","content":"hello from the benchmark","message_type":"text"}"#;

async fn send(client: reqwest::Client, target: String) -> Result<()> {
    let response = client
        .post(&target)
        .header("content-type", "application/json")
        .body(MESSAGE)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    response.bytes().await?;
    Ok(())
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn process_bench(binary: &Path, plugin: &Path, cache_dir: &Path) -> Result<()> {
    let (url, mut registered) = fake_discovery().await?;
    // Start -> registered, warm cache (the in-process step above filled it).
    let mut starts = Vec::new();
    for _ in 0..START_RUNS {
        let port = free_port()?;
        let spawned = Instant::now();
        let child = spawn_host(binary, plugin, cache_dir, &url, port)?;
        let at = tokio::time::timeout(Duration::from_secs(10), registered.recv())
            .await
            .context("no registration within 10 s")?
            .context("channel closed")?;
        starts.push(at - spawned);
        stop(child)?;
    }
    starts.sort();
    println!(
        "start -> registered (warm cache, {START_RUNS} runs): p50 {} min {} max {}",
        ms(percentile(&starts, 0.5)),
        ms(starts[0]),
        ms(*starts.last().unwrap())
    );

    // One long-running process for RSS, latency and throughput.
    let port = free_port()?;
    let child = spawn_host(binary, plugin, cache_dir, &url, port)?;
    tokio::time::timeout(Duration::from_secs(10), registered.recv()).await?;
    let (rss, _) = rss_kib(child.id());
    println!("RSS after registration: {:.1} MiB", rss as f64 / 1024.0);
    let target = format!("http://127.0.0.1:{port}/message");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    for _ in 0..500 {
        send(client.clone(), target.clone()).await?;
    }
    let mut latencies = Vec::with_capacity(LATENCY_REQUESTS);
    for _ in 0..LATENCY_REQUESTS {
        let started = Instant::now();
        send(client.clone(), target.clone()).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "/message round trip, sequential ({LATENCY_REQUESTS} requests, reqwest keep-alive): p50 {} p99 {} max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );

    let deadline = Instant::now() + Duration::from_secs(THROUGHPUT_SECONDS);
    let mut tasks = Vec::new();
    for _ in 0..THROUGHPUT_CLIENTS {
        let client = client.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                send(client.clone(), target.clone()).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let started = Instant::now();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = started.elapsed();
    let (rss, hwm) = rss_kib(child.id());
    println!(
        "/message throughput ({THROUGHPUT_CLIENTS} keep-alive clients in this process, {THROUGHPUT_SECONDS} s): {:.0} messages/s",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "RSS after load: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    stop(child)?;
    Ok(())
}
