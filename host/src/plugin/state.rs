//! What one plugin instance's `Store` holds, and the host imports it serves.
//!
//! Each instance gets its own `HostState`: a WASI context that grants
//! nothing, its resource table, its memory limiter, its call deadline and
//! a handle on the [`HostServices`] the cell provides (mesh view, delivery).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::cellmesh::cell::host::Host;
use super::bindings::cellmesh::cell::types::Host as TypesHost;
use super::bindings::{Delivery, LogLevel, Message, Peer, SendError};

/// A boxed future returned by [`HostServices::send_message`].
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Delivery, SendError>> + Send>>;

/// Services a running cell provides to its plugin through the `host`
/// interface. The conformance suite can supply a stub; [`IsolatedServices`]
/// is one that knows no mesh.
pub trait HostServices: Send + Sync + 'static {
    /// The cell id log records are tagged with and `from-cell` is set to.
    fn cell_id(&self) -> String;
    /// Plugin configuration pairs in the order given.
    fn config(&self) -> &[(String, String)];
    /// The mesh as last seen, without this cell; must not block.
    fn mesh_peers(&self) -> Vec<Peer>;
    /// Delivers a message to another cell; `msg.from_cell` is already set.
    fn send_message(&self, to_cell: String, msg: Message) -> SendFuture;
}

/// [`HostServices`] for a plugin outside any mesh: no peers, every send
/// refused.
#[derive(Debug, Clone, Default)]
pub struct IsolatedServices {
    /// Cell id to report.
    pub cell_id: String,
    /// Configuration pairs to hand out.
    pub config: Vec<(String, String)>,
}

impl HostServices for IsolatedServices {
    fn cell_id(&self) -> String {
        self.cell_id.clone()
    }
    fn config(&self) -> &[(String, String)] {
        &self.config
    }
    fn mesh_peers(&self) -> Vec<Peer> {
        Vec::new()
    }
    fn send_message(&self, to_cell: String, _msg: Message) -> SendFuture {
        Box::pin(async move {
            Err(SendError::Refused(format!(
                "this host is not part of a mesh; cannot send to {to_cell}"
            )))
        })
    }
}

/// How many bytes of the plugin's stderr are kept to explain a trap.
const STDERR_TAIL_BYTES: usize = 2048;

/// The last bytes a plugin wrote to stderr (a Rust panic message, say),
/// kept so that a trap can be reported with its cause. Never fails a write.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    /// The kept text, lossily decoded and trimmed.
    /// Rust's "note: run with `RUST_BACKTRACE=1`" hint is dropped: the
    /// plugin has no environment to set.
    pub(crate) fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf)
            .lines()
            .filter(|line| !line.starts_with("note: run with `RUST_BACKTRACE"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_owned()
    }

    /// Forgets what was written so far.
    pub(crate) fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        buf.extend_from_slice(data);
        if buf.len() > STDERR_TAIL_BYTES {
            let excess = buf.len() - STDERR_TAIL_BYTES;
            buf.drain(..excess);
        }
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Caps an instance's linear memory and remembers whether the cap was hit,
/// so that the trap that usually follows (an allocator abort) is reported
/// as what it is.
#[derive(Debug)]
pub(crate) struct MemoryCap {
    pub(crate) limit_bytes: usize,
    pub(crate) hit: bool,
    /// The largest size any one memory of the instance was allowed to reach.
    pub(crate) peak_bytes: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element costs a pointer; keep tables within the same cap.
        Ok(desired.saturating_mul(std::mem::size_of::<usize>()) <= self.limit_bytes)
    }
}

/// The data of one plugin instance's `Store`.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) stderr: StderrTail,
    /// When the running call must stop; `None` between calls.
    pub(crate) deadline: Option<Instant>,
    services: Arc<dyn HostServices>,
    started: Instant,
}

impl HostState {
    /// A fresh state: WASI that grants nothing (no preopens, no network,
    /// no environment, no arguments, stdin closed), stderr kept in memory.
    pub(crate) fn new(services: Arc<dyn HostServices>, memory_limit_bytes: usize) -> Self {
        let stderr = StderrTail::default();
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit_bytes: memory_limit_bytes,
                hit: false,
                peak_bytes: 0,
            },
            stderr,
            deadline: None,
            services,
            started: Instant::now(),
        }
    }

    /// Moves the deadline of the running call later by `spent`: time the
    /// host spent on the plugin's behalf (network) is not the plugin's CPU.
    fn credit_host_time(&mut self, spent: Duration) {
        if let Some(deadline) = self.deadline.as_mut() {
            *deadline += spent;
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl TypesHost for HostState {}

impl Host for HostState {
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        let cell_id = self.services.cell_id();
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        match level {
            LogLevel::Trace => {
                tracing::trace!(cell_id = %cell_id, plugin = true, %fields, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(cell_id = %cell_id, plugin = true, %fields, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(cell_id = %cell_id, plugin = true, %fields, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(cell_id = %cell_id, plugin = true, %fields, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(cell_id = %cell_id, plugin = true, %fields, "{message}")
            }
        }
    }

    fn now_ms(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic_ms(&mut self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.services
            .config()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    fn config_all(&mut self) -> Vec<(String, String)> {
        self.services.config().to_vec()
    }

    fn mesh_peers(&mut self) -> Vec<Peer> {
        self.services.mesh_peers()
    }

    async fn send_message(
        &mut self,
        to_cell: String,
        mut msg: Message,
    ) -> Result<Delivery, SendError> {
        msg.from_cell = self.services.cell_id();
        let started = Instant::now();
        let outcome = self.services.send_message(to_cell, msg).await;
        self.credit_host_time(started.elapsed());
        outcome
    }
}
