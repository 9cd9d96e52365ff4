//! Load generator for the discovery server: registrations/s, heartbeats/s with latency
//! percentiles, `GET /peers`/s, RSS at 100,000 peers, and the cost of expiring 10,000 peers.
//!
//! It starts the release server binary itself (a child process on a free 127.0.0.1 port), drives
//! it over N keep-alive HTTP/1.1 connections (hyper client, one request in flight per
//! connection), and stops it. Rerun with:
//!
//! ```text
//! cargo bench -p discovery --bench loadgen                  # all scenarios
//! cargo bench -p discovery --bench loadgen -- --help        # options
//! DISCOVERY_WORKER_THREADS=2 cargo bench -p discovery --bench loadgen   # server flags via environment
//! ```

#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use cellmesh_wire::batch::{BATCH_MAX_CELLS, BatchHeartbeatRequest, BatchRegisterAnswer, CellBeat};
use clap::Parser;
use discovery::registry::{PeerRegistry, RegistrySettings};
use discovery::validate::CellInfo;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "Load generator for the discovery server")]
struct Args {
    /// Server binary (default: the `discovery` cargo built with this benchmark).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Use a running server at this address (e.g. 127.0.0.1:8001) instead of starting one;
    /// RSS is then not measured.
    #[arg(long)]
    target: Option<SocketAddr>,
    /// Scenarios to run (comma separated): register,heartbeat,peers,rss,expire, and batch
    /// (not run by default). `peers` also measures `GET /peers?branch=main` (every peer
    /// matches): a filtered listing is never shared, so that is the per-reader (streamed)
    /// rendering. `batch`: `--batch-hosts` hosts of 1,000 cells registered by batch calls,
    /// their batch heartbeats alone, then single heartbeats of `--peers` other peers over
    /// `--connections` while every host keeps sending batch heartbeats.
    #[arg(long, default_value = "register,heartbeat,peers,rss,expire")]
    scenarios: String,
    /// Hosts (of 1,000 cells each, one connection each) in the `batch` scenario.
    #[arg(long, default_value_t = 4)]
    batch_hosts: usize,
    /// Keep-alive connections for heartbeats and registrations.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Keep-alive connections for GET /peers.
    #[arg(long, default_value_t = 8)]
    peers_connections: usize,
    /// Registered peers during the heartbeat run.
    #[arg(long, default_value_t = 10_000)]
    peers: usize,
    /// Registered peers during the GET /peers run.
    #[arg(long, default_value_t = 1_000)]
    list_peers: usize,
    /// Registered peers for the RSS measurement.
    #[arg(long, default_value_t = 100_000)]
    rss_peers: usize,
    /// Seconds per timed run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Client worker threads (the server gets the rest of the machine).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Appended by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

struct Server {
    child: Option<tokio::process::Child>,
    addr: SocketAddr,
}

impl Server {
    /// Starts `bin` with `--max-peers max_peers` (the default cap is below the RSS scenario's
    /// population), or uses `target`.
    async fn start(
        bin: &PathBuf,
        target: Option<SocketAddr>,
        max_peers: usize,
    ) -> anyhow::Result<Self> {
        if let Some(addr) = target {
            return Ok(Self { child: None, addr });
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = tokio::process::Command::new(bin)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--max-peers")
            .arg(max_peers.to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).await.is_err() {
            if Instant::now() > deadline {
                bail!("server did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            child: Some(child),
            addr,
        })
    }

    fn rss_kib(&self) -> u64 {
        let Some(pid) = self.child.as_ref().and_then(tokio::process::Child::id) else {
            return 0;
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    async fn stop(mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill().await;
        }
    }
}

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender })
    }

    async fn send(&mut self, method: &str, uri: &str, body: Bytes) -> anyhow::Result<(u16, usize)> {
        let (status, body) = self.send_for(method, uri, body).await?;
        Ok((status, body.len()))
    }

    async fn send_for(
        &mut self,
        method: &str,
        uri: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

fn registration(i: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"cell_id":"bench-{i:06}","ip":"10.0.{}.{}","port":8000,"consciousness_level":0.5,"services":["consciousness-primitives","code-analysis"],"branch":"main","type":"pure_cell","hostname":"bench-host-{i:06}"}}"#,
        (i / 250) % 256,
        i % 250
    ))
}

/// Registers `n` peers over `conns` connections; returns registrations/s.
async fn register_all(addr: SocketAddr, n: usize, conns: usize) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let (status, _) = c.send("POST", "/register", registration(i)).await?;
                if status != 200 {
                    bail!("register answered {status}");
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

struct RunResult {
    requests: usize,
    rate: f64,
    p50_us: u32,
    p99_us: u32,
    p999_us: u32,
    max_us: u32,
    bytes: usize,
    errors: usize,
}

/// Sends requests made by `make(conn, i)` on `conns` connections for `secs` seconds.
async fn timed_run(
    addr: SocketAddr,
    conns: usize,
    secs: u64,
    method: &'static str,
    make: Arc<dyn Fn(usize, usize) -> (String, Bytes) + Send + Sync>,
) -> anyhow::Result<RunResult> {
    let warmup = Duration::from_millis(500);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for ci in 0..conns {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await?;
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            let (mut bytes, mut errors) = (0usize, 0usize);
            let mut i = 0;
            loop {
                let (uri, body) = make(ci, i);
                i += 1;
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let (status, len) = c.send(method, &uri, body).await?;
                let done = Instant::now();
                if t >= measure_from {
                    lat.push(u32::try_from(done.duration_since(t).as_micros()).unwrap_or(u32::MAX));
                    bytes += len;
                    if status != 200 {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((lat, bytes, errors))
        }));
    }
    let mut all = Vec::new();
    let (mut bytes, mut errors) = (0, 0);
    for t in tasks {
        let (lat, b, e) = t.await??;
        all.extend(lat);
        bytes += b;
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Ok(RunResult {
        requests: all.len(),
        rate: all.len() as f64 / secs as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        max_us: all.last().copied().unwrap_or(0),
        bytes,
        errors,
    })
}

fn print_run(name: &str, r: &RunResult) {
    println!(
        "{name}: {:.0} req/s ({} requests, {} non-200), latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, {:.1} KiB/answer",
        r.rate,
        r.requests,
        r.errors,
        f64::from(r.p50_us) / 1000.0,
        f64::from(r.p99_us) / 1000.0,
        f64::from(r.p999_us) / 1000.0,
        f64::from(r.max_us) / 1000.0,
        r.bytes as f64 / r.requests.max(1) as f64 / 1024.0
    );
}

/// The `batch` scenario (see `--scenarios`): registrations and heartbeats of `hosts` hosts of
/// [`BATCH_MAX_CELLS`] cells by batch calls, then single heartbeats of `singles` peers over
/// `conns` connections alongside the hosts' batch heartbeats (the registry lock is taken once
/// per 256 cells of a batch: single heartbeats must not wait long behind it).
async fn batch_bench(
    addr: SocketAddr,
    hosts: usize,
    singles: usize,
    conns: usize,
    secs: u64,
) -> anyhow::Result<()> {
    let mut beats = Vec::with_capacity(hosts);
    let mut took = Vec::with_capacity(hosts);
    for h in 0..hosts {
        let mut cells = Vec::with_capacity(BATCH_MAX_CELLS);
        for i in 0..BATCH_MAX_CELLS {
            let mut cell: serde_json::Value = serde_json::from_slice(&registration(i))?;
            cell["cell_id"] = serde_json::Value::from(format!("bench-h{h}-{i:04}"));
            cells.push(cell);
        }
        let body = serde_json::to_vec(
            &serde_json::json!({"host_id": format!("bench-host-{h}"), "cells": cells}),
        )?;
        let mut c = Conn::open(addr).await?;
        let t = Instant::now();
        let (status, answer) = c
            .send_for("POST", "/batch/register", Bytes::from(body))
            .await?;
        took.push(t.elapsed());
        if status != 200 {
            bail!("batch register answered {status}");
        }
        let answer: BatchRegisterAnswer = serde_json::from_slice(&answer)?;
        let cells: Vec<CellBeat> = answer
            .results
            .into_iter()
            .map(|r| CellBeat {
                cell_id: r.cell_id,
                consciousness_level: 0.5,
                incarnation: r.incarnation.unwrap_or_default(),
                secret: r.secret.unwrap_or_default(),
            })
            .collect();
        let body = BatchHeartbeatRequest {
            host_id: answer.host_id,
            cells,
        };
        beats.push(Bytes::from(serde_json::to_vec(&body)?));
    }
    let mean_ms = took.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / hosts as f64;
    println!(
        "batch register: {hosts} hosts x {BATCH_MAX_CELLS} cells, {mean_ms:.2} ms per batch ({:.0} cells/s)",
        BATCH_MAX_CELLS as f64 / (mean_ms / 1e3)
    );
    let beats = Arc::new(beats);
    let batch_make = {
        let beats = beats.clone();
        Arc::new(move |c: usize, _: usize| ("/batch/heartbeat".to_owned(), beats[c].clone()))
    };
    let r = timed_run(addr, hosts, secs, "POST", batch_make.clone()).await?;
    print_run(
        &format!(
            "batch heartbeat alone ({hosts} hosts x {BATCH_MAX_CELLS} cells, one connection each)"
        ),
        &r,
    );
    println!(
        "batch heartbeat alone: {:.0} cells renewed/s",
        r.rate * BATCH_MAX_CELLS as f64
    );
    register_all(addr, singles, conns).await?;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..singles)
            .map(|i| {
                Bytes::from(format!(
                    r#"{{"cell_id":"bench-{i:06}","consciousness_level":0.5}}"#
                ))
            })
            .collect(),
    );
    let single_make = Arc::new(move |c: usize, i: usize| {
        (
            "/heartbeat".to_owned(),
            bodies[(i * conns + c) % singles].clone(),
        )
    });
    let (batch, single) = tokio::join!(
        timed_run(addr, hosts, secs, "POST", batch_make),
        timed_run(addr, conns, secs, "POST", single_make)
    );
    let (batch, single) = (batch?, single?);
    print_run(
        &format!(
            "single heartbeats ({singles} peers, {conns} connections) alongside batch heartbeats"
        ),
        &single,
    );
    print_run(
        &format!("batch heartbeats ({hosts} hosts) alongside single heartbeats"),
        &batch,
    );
    Ok(())
}

/// In-process: the registry work of expiring `n` peers that share one deadline.
fn expire_bench(n: usize) {
    let settings = RegistrySettings {
        ttl: Duration::from_secs(15),
        startup_grace: Duration::ZERO,
        mass_eviction_share: 1.0,
        mass_eviction_min_peers: usize::MAX,
        mass_eviction_hold: Duration::from_secs(15),
        history: 1024,
        max_peers: usize::MAX,
        max_bytes: usize::MAX,
    };
    let t0 = tokio::time::Instant::now();
    let mut reg = PeerRegistry::new(settings, t0, 1);
    for i in 0..n {
        let info = CellInfo {
            cell_id: format!("bench-{i:06}"),
            ip: "10.0.0.1".into(),
            port: 8000,
            consciousness_level: 0.5,
            services: vec!["code-analysis".into()],
            branch: "main".into(),
            cell_type: "pure_cell".into(),
            hostname: "h".into(),
        };
        reg.register(&info, [0; 16], t0, 0).expect("register");
    }
    let now = t0 + Duration::from_secs(15);
    let start = Instant::now();
    let mut longest = Duration::ZERO;
    let mut batches = 0;
    loop {
        let b = Instant::now();
        let out = reg.reap(now, discovery::reaper::REAP_BATCH);
        longest = longest.max(b.elapsed());
        batches += 1;
        if !out.more {
            break;
        }
    }
    let total = start.elapsed();
    assert!(reg.is_empty());
    println!(
        "expire: {n} peers expired at once in {:.2} ms of registry work ({:.0} ns/peer), {batches} batches of <= {}, longest lock hold {:.2} ms",
        total.as_secs_f64() * 1000.0,
        total.as_nanos() as f64 / n as f64,
        discovery::reaper::REAP_BATCH,
        longest.as_secs_f64() * 1000.0
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let bin = match &args.server {
        Some(p) => p.clone(),
        None => PathBuf::from(env!("CARGO_BIN_EXE_discovery")),
    };
    println!(
        "loadgen: server {}, {} client thread(s), {} connections, {} s runs",
        bin.display(),
        args.client_threads,
        args.connections,
        args.seconds
    );
    let scenarios: Vec<&str> = args.scenarios.split(',').map(str::trim).collect();
    let max_peers = args.peers.max(args.list_peers).max(args.rss_peers);
    let want = |s: &str| scenarios.contains(&s);

    if want("register") || want("heartbeat") {
        let server = Server::start(&bin, args.target, max_peers).await?;
        let rate = register_all(server.addr, args.peers, args.connections).await?;
        println!(
            "register: {} peers at {rate:.0} registrations/s ({} connections)",
            args.peers, args.connections
        );
        if want("heartbeat") {
            let n = args.peers;
            let bodies: Arc<Vec<Bytes>> = Arc::new(
                (0..n)
                    .map(|i| {
                        Bytes::from(format!(
                            r#"{{"cell_id":"bench-{i:06}","consciousness_level":0.5}}"#
                        ))
                    })
                    .collect(),
            );
            let conns = args.connections;
            let make = Arc::new(move |c: usize, i: usize| {
                ("/heartbeat".to_owned(), bodies[(i * conns + c) % n].clone())
            });
            let r = timed_run(server.addr, conns, args.seconds, "POST", make).await?;
            print_run(&format!("heartbeat ({n} peers, {conns} connections)"), &r);
        }
        println!(
            "rss: {} KiB with {} peers after the runs",
            server.rss_kib(),
            args.peers
        );
        server.stop().await;
    }

    if want("peers") {
        let server = Server::start(&bin, args.target, max_peers).await?;
        register_all(server.addr, args.list_peers, args.connections).await?;
        let make = Arc::new(|_: usize, _: usize| ("/peers".to_owned(), Bytes::new()));
        let r = timed_run(
            server.addr,
            args.peers_connections,
            args.seconds,
            "GET",
            make,
        )
        .await?;
        print_run(
            &format!(
                "GET /peers ({} peers, {} connections)",
                args.list_peers, args.peers_connections
            ),
            &r,
        );
        let make = Arc::new(|_: usize, _: usize| ("/peers?branch=main".to_owned(), Bytes::new()));
        let r = timed_run(
            server.addr,
            args.peers_connections,
            args.seconds,
            "GET",
            make,
        )
        .await?;
        print_run(
            &format!(
                "GET /peers?branch=main, rendered per reader ({} peers, {} connections)",
                args.list_peers, args.peers_connections
            ),
            &r,
        );
        server.stop().await;
    }

    if want("rss") {
        let server = Server::start(&bin, args.target, max_peers).await?;
        let before = server.rss_kib();
        let rate = register_all(server.addr, args.rss_peers, args.connections).await?;
        // One full listing, as a dashboard or cell would make.
        let mut c = Conn::open(server.addr).await?;
        let (_, len) = c.send("GET", "/peers", Bytes::new()).await?;
        let after = server.rss_kib();
        println!(
            "rss: {before} KiB empty, {after} KiB ({:.1} MiB) with {} peers (registered at {rate:.0}/s; /peers answer {:.1} MiB)",
            after as f64 / 1024.0,
            args.rss_peers,
            len as f64 / 1024.0 / 1024.0
        );
        server.stop().await;
    }

    if want("batch") {
        let cap = args.batch_hosts * BATCH_MAX_CELLS + args.peers;
        let server = Server::start(&bin, args.target, cap).await?;
        batch_bench(
            server.addr,
            args.batch_hosts,
            args.peers,
            args.connections,
            args.seconds,
        )
        .await?;
        server.stop().await;
    }

    if want("expire") {
        expire_bench(10_000);
    }
    Ok(())
}
