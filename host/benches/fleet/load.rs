//! `POST /message` load over keep-alive connections spread over every cell, and the
//! looping cell's own traffic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::sys::{CLK_TCK, cpu_ticks, ms3};

/// The original `/message` body (docs/contract.md).
const MESSAGE: &str =
    r#"{"from_cell":"bench","content":"hello from the fleet benchmark","message_type":"text"}"#;

/// How requests are paced.
#[derive(Clone, Copy)]
pub enum Pace {
    /// Closed loop: each worker sends its next request as soon as the last is answered, so
    /// the run measures capacity and the latency at saturation.
    Closed,
    /// Open loop: this many requests a second in all, spread evenly over the workers; the
    /// latency at a fixed offered load, below saturation.
    Rate(f64),
}

/// What one timed `/message` run measured.
pub struct Load {
    latencies: Vec<Duration>,
    elapsed: Duration,
    errors: u64,
    /// Paced sends that started more than 1 ms after their slot (the client fell behind).
    late: u64,
    pace: Pace,
    cells: usize,
    host_cpu: f64,
}

impl Load {
    pub fn at(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
    pub fn p99(&self) -> Duration {
        self.at(0.99)
    }
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pace {
            Pace::Closed => write!(f, "closed loop: ")?,
            Pace::Rate(rate) => write!(f, "offered {rate:.0}/s ({} sends late): ", self.late)?,
        }
        write!(
            f,
            "{} requests to {} cells in {:.1} s = {:.0}/s, p50 {} p99 {} p99.9 {} max {}; \
             errors {}; host CPU {:.0} % of one core",
            self.latencies.len(),
            self.cells,
            self.elapsed.as_secs_f64(),
            self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            ms3(self.at(0.5)),
            ms3(self.p99()),
            ms3(self.at(0.999)),
            ms3(*self.latencies.last().unwrap_or(&Duration::ZERO)),
            self.errors,
            self.host_cpu
        )
    }
}

/// `POST /message` over `connections` workers (one request in flight each), worker w serving
/// cells w, w + C, ... round-robin over one keep-alive connection per cell; 1 s of warm-up,
/// then `seconds` timed. Latency is from the send to the whole answer.
pub async fn message_load(
    targets: &[SocketAddr],
    connections: usize,
    seconds: u64,
    pace: Pace,
    host_pid: u32,
) -> Result<Load> {
    ensure!(!targets.is_empty(), "no cells to send to");
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(seconds);
    let workers = connections.min(targets.len());
    // Each worker's interval between sends when paced.
    let interval = match pace {
        Pace::Closed => None,
        Pace::Rate(rate) => Some(Duration::from_secs_f64(workers as f64 / rate)),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let mine: Vec<SocketAddr> = targets
            .iter()
            .skip(w)
            .step_by(connections)
            .copied()
            .collect();
        tasks.spawn(async move {
            let mut conns: Vec<Option<http1::SendRequest<Full<Bytes>>>> =
                (0..mine.len()).map(|_| None).collect();
            let (mut latencies, mut errors, mut late) = (Vec::new(), 0u64, 0u64);
            let mut i = 0;
            // Workers start staggered over one interval, so sends do not come in bursts.
            let mut slot = interval.map(|every| Instant::now() + every * w as u32 / workers as u32);
            loop {
                if let (Some(at), Some(every)) = (slot.as_mut(), interval) {
                    let now = Instant::now();
                    if *at > now {
                        tokio::time::sleep_until((*at).into()).await;
                    } else if now - *at > Duration::from_millis(1) {
                        late += u64::from(now >= warm_until);
                    }
                    // Behind by more than a second: skip ahead rather than send a burst.
                    *at = (*at + every).max(now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
                }
                let now = Instant::now();
                if now >= end {
                    break;
                }
                let ok = post_message(&mut conns[i], mine[i]).await;
                if now >= warm_until {
                    match ok {
                        Ok(()) => latencies.push(now.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                i = (i + 1) % mine.len();
            }
            (latencies, errors, late)
        });
    }
    tokio::time::sleep_until(warm_until.into()).await;
    let cpu_before = cpu_ticks(host_pid);
    let measured = Instant::now();
    let mut load = Load {
        latencies: Vec::new(),
        elapsed: Duration::ZERO,
        errors: 0,
        late: 0,
        pace,
        cells: targets.len(),
        host_cpu: 0.0,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, errors, late) = done?;
        load.latencies.extend(latencies);
        load.errors += errors;
        load.late += late;
    }
    load.elapsed = measured.elapsed();
    load.host_cpu =
        (cpu_ticks(host_pid) - cpu_before) as f64 / CLK_TCK / load.elapsed.as_secs_f64() * 100.0;
    load.latencies.sort();
    ensure!(!load.latencies.is_empty(), "no /message answered 200");
    Ok(load)
}

/// One `POST /message` on `conn` (opened when missing or closed); any failure drops it.
pub async fn post_message(
    conn: &mut Option<http1::SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
) -> Result<()> {
    let outcome = async {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = Some(open(addr).await?);
        }
        let sender = conn.as_mut().expect("opened above");
        sender.ready().await?;
        let request = hyper::Request::post("/message")
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(MESSAGE.as_bytes())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        ensure!(status == 200, "/message answered {status}");
        anyhow::Ok(())
    }
    .await;
    if outcome.is_err() {
        *conn = None;
    }
    outcome
}

pub async fn open(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Two senders keeping the loop cell busy: each call spins until its CPU deadline.
pub struct LoopTraffic {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<BTreeMap<String, u64>>,
}

impl LoopTraffic {
    pub fn start(addr: SocketAddr) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                let mut outcomes = BTreeMap::new();
                let mut conn = None;
                while !*stopped.borrow() {
                    let started = Instant::now();
                    let outcome = tokio::select! {
                        o = post_message(&mut conn, addr) => o,
                        _ = stopped.changed() => break,
                    };
                    let key = match outcome {
                        Ok(()) => "200".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    let took = started.elapsed();
                    *outcomes.entry(key).or_insert(0) += 1;
                    *outcomes.entry("total ms".to_owned()).or_insert(0) += took.as_millis() as u64;
                }
                outcomes
            });
        }
        Self { stop, tasks }
    }

    pub async fn stop(mut self) -> String {
        let _ = self.stop.send(true);
        let mut all: BTreeMap<String, u64> = BTreeMap::new();
        while let Some(Ok(outcomes)) = self.tasks.join_next().await {
            for (k, v) in outcomes {
                *all.entry(k).or_insert(0) += v;
            }
        }
        let total_ms = all.remove("total ms").unwrap_or(0);
        let calls: u64 = all.values().sum();
        format!(
            "{calls} calls answered (mean {:.0} ms each): {all:?}",
            total_ms as f64 / calls.max(1) as f64
        )
    }
}
