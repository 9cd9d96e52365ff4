//! What one plugin instance's `Store` holds, and the host imports it serves.
//!
//! Each instance gets its own `HostState`: a WASI context that grants
//! nothing, its resource table, its resource limiter, its call deadline,
//! the call's `send-message` budget, its `host.log` rate limit and a handle
//! on the [`HostServices`] the cell provides (mesh view, delivery).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::cellmesh::cell::host::Host;
use super::bindings::cellmesh::cell::types::Host as TypesHost;
use super::bindings::{Delivery, LogLevel, Message, Peer, SendError};
use super::limiter::InstanceLimiter;
use super::limits::SandboxLimits;
use super::log::{LOG_FIELD_MAX_BYTES, LOG_FIELDS_MAX, LOG_MESSAGE_MAX_BYTES, LogLimiter, escape};
use super::stats::SandboxStats;

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

/// What is left of a call's `send-message` budget.
#[derive(Debug, Clone, Copy)]
struct SendBudget {
    /// The budget every call starts with.
    count: u32,
    time: Duration,
    /// What this call has left.
    sends_left: u32,
    time_left: Duration,
}

impl SendBudget {
    fn new(limits: &SandboxLimits) -> Self {
        Self {
            count: limits.send_budget_count,
            time: limits.send_budget_time,
            sends_left: limits.send_budget_count,
            time_left: limits.send_budget_time,
        }
    }

    /// Starts the next call with a full budget.
    fn refill(&mut self) {
        self.sends_left = self.count;
        self.time_left = self.time;
    }

    /// Why the next send is refused, if it is.
    fn spent(&self) -> Option<String> {
        (self.sends_left == 0 || self.time_left.is_zero()).then(|| {
            format!(
                "send budget spent: one plugin call may make {} sends taking {} ms in all",
                self.count,
                self.time.as_millis()
            )
        })
    }
}

/// The data of one plugin instance's `Store`.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: InstanceLimiter,
    pub(crate) stderr: StderrTail,
    /// When the running call must stop (its CPU deadline); `None` between
    /// calls.
    pub(crate) deadline: Option<Instant>,
    call_timeout: Duration,
    sends: SendBudget,
    log: LogLimiter,
    stats: Arc<SandboxStats>,
    services: Arc<dyn HostServices>,
    started: Instant,
}

impl HostState {
    /// A fresh state: WASI that grants nothing (no preopens, no network,
    /// no environment, no arguments, stdin closed), stderr kept in memory,
    /// resources limited by `limits`; dropped log lines are counted in
    /// `stats`.
    pub(crate) fn new(
        services: Arc<dyn HostServices>,
        limits: &SandboxLimits,
        stats: Arc<SandboxStats>,
    ) -> Self {
        let stderr = StderrTail::default();
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let now = Instant::now();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: InstanceLimiter::new(limits),
            stderr,
            deadline: None,
            call_timeout: limits.call_timeout,
            sends: SendBudget::new(limits),
            log: LogLimiter::new(limits.log_lines_per_second, limits.log_burst, now),
            stats,
            services,
            started: now,
        }
    }

    /// Prepares a call: arms the CPU deadline, refills the send budget,
    /// forgets the last call's memory-cap hit and stderr.
    pub(crate) fn arm(&mut self) {
        self.deadline = Some(Instant::now() + self.call_timeout);
        self.sends.refill();
        self.limiter.hit = false;
        self.stderr.clear();
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
    /// Rate-limited ([`LogLimiter`]), escaped and cut ([`escape`]): a
    /// plugin can neither flood nor forge the host's log.
    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        // A line the subscriber would not write costs nothing more (no
        // escaping, no rate-limit token): plugins log on hot paths.
        let enabled = match level {
            LogLevel::Trace => tracing::enabled!(tracing::Level::TRACE),
            LogLevel::Debug => tracing::enabled!(tracing::Level::DEBUG),
            LogLevel::Info => tracing::enabled!(tracing::Level::INFO),
            LogLevel::Warn => tracing::enabled!(tracing::Level::WARN),
            LogLevel::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        if !enabled {
            return;
        }
        let cell_id = self.services.cell_id();
        let verdict = self.log.admit(Instant::now());
        if let Some(dropped) = verdict.report_dropped {
            tracing::warn!(
                cell_id = %cell_id,
                plugin = true,
                dropped,
                "plugin log lines dropped by the rate limit"
            );
        }
        if !verdict.write {
            self.stats.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut shown: Vec<String> = fields
            .iter()
            .take(LOG_FIELDS_MAX)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    escape(k, LOG_FIELD_MAX_BYTES),
                    escape(v, LOG_FIELD_MAX_BYTES)
                )
            })
            .collect();
        if fields.len() > LOG_FIELDS_MAX {
            shown.push(format!(
                "…[{} fields dropped]",
                fields.len() - LOG_FIELDS_MAX
            ));
        }
        let fields = shown.join(" ");
        let message = escape(&message, LOG_MESSAGE_MAX_BYTES);
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

    /// Within the call's send budget ([`SandboxLimits::send_budget_count`]
    /// sends taking [`SandboxLimits::send_budget_time`] in all): past it,
    /// or when a send outlasts what is left of the time, `refused`.
    async fn send_message(
        &mut self,
        to_cell: String,
        mut msg: Message,
    ) -> Result<Delivery, SendError> {
        if let Some(why) = self.sends.spent() {
            return Err(SendError::Refused(why));
        }
        self.sends.sends_left -= 1;
        msg.from_cell = self.services.cell_id();
        // tokio's clock for the budget (paused in tests), the real one for
        // the CPU deadline's credit.
        let (started, started_cpu) = (tokio::time::Instant::now(), Instant::now());
        let sent = self.services.send_message(to_cell, msg);
        let outcome = tokio::time::timeout(self.sends.time_left, sent).await;
        self.sends.time_left = self.sends.time_left.saturating_sub(started.elapsed());
        self.credit_host_time(started_cpu.elapsed());
        match outcome {
            Ok(outcome) => outcome,
            Err(_) => Err(SendError::Refused(format!(
                "{} (this send was cut short)",
                self.sends.spent().unwrap_or_default()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A tracing writer that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Finding: `host.log` wrote a plugin's newlines and control characters
    /// as they were (a plugin could forge host log lines) and had no rate
    /// limit. Through the real import: one line per call, escaped; past the
    /// burst, lines are dropped and counted.
    #[test]
    fn a_plugin_can_neither_forge_nor_flood_host_log_lines() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        let stats = Arc::new(SandboxStats::default());
        let limits = SandboxLimits {
            log_burst: 5,
            log_lines_per_second: 1,
            ..SandboxLimits::default()
        };
        let services = Arc::new(IsolatedServices {
            cell_id: "c".into(),
            config: Vec::new(),
        });
        let mut state = HostState::new(services, &limits, stats.clone());
        tracing::subscriber::with_default(subscriber, || {
            state.log(
                LogLevel::Info,
                "hello\n2026-01-01T00:00:00.000000Z  INFO cell_host: forged".into(),
                vec![("k\n".into(), "v\r\n".into())],
            );
            for _ in 0..20 {
                state.log(LogLevel::Info, "spam".into(), Vec::new());
            }
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].contains(r"hello\n2026-01-01T00:00:00.000000Z  INFO cell_host: forged"),
            "{text}"
        );
        assert!(lines[0].contains(r"k\n=v\r\n"), "{text}");
        assert_eq!(stats.log_lines_dropped.load(Ordering::Relaxed), 16);
    }
}
