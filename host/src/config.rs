//! Command-line arguments of `cell-host`, each with an environment twin.
//!
//! The struct lives in the library so that tests build it with
//! [`clap::Parser::parse_from`] exactly as the binary does. The original
//! cells' variable names keep working: `AIOS_DISCOVERY_URL`, `AIOS_CELL_ID`,
//! `AIOS_BRANCH` and `PORT`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Discovery URL used when neither `--discovery` nor `AIOS_DISCOVERY_URL` is given.
pub const DEFAULT_DISCOVERY_URL: &str = "http://127.0.0.1:8001";
/// Address the cell's HTTP API listens on by default.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
/// CPU deadline of one plugin call, in milliseconds.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 500;
/// Memory cap of one plugin instance, in MiB.
pub const DEFAULT_MEMORY_LIMIT_MB: u64 = 64;
/// Interval between heartbeats, in milliseconds (the original's 5 s).
pub const DEFAULT_HEARTBEAT_MS: u64 = 5_000;
/// Registration tries before the host says it keeps trying in the background.
pub const DEFAULT_REGISTER_ATTEMPTS: u32 = 10;
/// First registration back-off ceiling, in milliseconds (doubles per try).
pub const DEFAULT_REGISTER_BASE_MS: u64 = 1_000;
/// Largest registration back-off ceiling, in milliseconds.
pub const DEFAULT_REGISTER_CAP_MS: u64 = 30_000;
/// Bound on deregistration at shutdown, in milliseconds.
pub const DEFAULT_DEREGISTER_TIMEOUT_MS: u64 = 2_000;
/// Bound on the plugin's shutdown hook, in milliseconds.
pub const DEFAULT_SHUTDOWN_HOOK_MS: u64 = 1_000;
/// Bound on draining open HTTP connections at shutdown, in milliseconds.
pub const DEFAULT_DRAIN_MS: u64 = 3_000;
/// Timeout of one HTTP request to discovery or to a peer, in milliseconds.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 2_000;
/// Largest request body the API accepts, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Most concurrent requests the API serves; further ones wait.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1_024;

/// `cell-host`: runs one cell plugin (a WebAssembly component targeting the
/// `cellmesh:cell/guest@0.1.0` world) as a networked cell of the mesh.
#[derive(Debug, Clone, Parser)]
#[command(name = "cell-host", version, about, args_override_self = true)]
pub struct Args {
    /// The plugin component (`.wasm`) to run.
    #[arg(long, env = "CELLMESH_PLUGIN")]
    pub plugin: PathBuf,

    /// Base URL of the discovery service.
    #[arg(long, env = "AIOS_DISCOVERY_URL", default_value = DEFAULT_DISCOVERY_URL)]
    pub discovery: String,

    /// Shared token presented to discovery as `Authorization: Bearer`, when
    /// discovery is configured with one.
    #[arg(long, env = "CELLMESH_DISCOVERY_TOKEN", hide_env_values = true)]
    pub discovery_token: Option<String>,

    /// Address the cell's HTTP API listens on.
    #[arg(long, env = "CELLMESH_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Port to listen on; overrides the port of `--listen` (the original's `PORT`).
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// `HOST:PORT` peers should call; default: this machine's hostname and the
    /// listen port. Discovery's `ip` and `hostname` fields come from it.
    #[arg(long, env = "CELLMESH_ADVERTISE")]
    pub advertise: Option<String>,

    /// Cell id to register, overriding the plugin manifest's.
    #[arg(long, env = "AIOS_CELL_ID")]
    pub cell_id: Option<String>,

    /// Appends a stable suffix derived from the advertised address to the
    /// cell id, so replicas of one plugin get distinct ids.
    #[arg(long, env = "CELLMESH_UNIQUE_ID")]
    pub unique_id: bool,

    /// Branch to register, overriding the plugin manifest's.
    #[arg(long, env = "AIOS_BRANCH")]
    pub branch: Option<String>,

    /// Plugin configuration as `key=value`; repeatable, given to the plugin
    /// in order (environment: comma-separated).
    #[arg(long = "config", env = "CELLMESH_CONFIG", value_delimiter = ',', value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,

    /// CPU deadline of one plugin call, in milliseconds.
    #[arg(long, env = "CELLMESH_CALL_TIMEOUT_MS", default_value_t = DEFAULT_CALL_TIMEOUT_MS)]
    pub call_timeout_ms: u64,

    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, env = "CELLMESH_MEMORY_LIMIT_MB", default_value_t = DEFAULT_MEMORY_LIMIT_MB)]
    pub memory_limit_mb: u64,

    /// Interval between heartbeats, in milliseconds.
    #[arg(long, env = "CELLMESH_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS)]
    pub heartbeat_ms: u64,

    /// Registration tries before the host logs that it keeps trying in the background.
    #[arg(long, env = "CELLMESH_REGISTER_ATTEMPTS", default_value_t = DEFAULT_REGISTER_ATTEMPTS)]
    pub register_attempts: u32,

    /// First registration back-off ceiling in milliseconds; doubles per try.
    #[arg(long, env = "CELLMESH_REGISTER_BASE_MS", default_value_t = DEFAULT_REGISTER_BASE_MS)]
    pub register_base_ms: u64,

    /// Largest registration back-off ceiling in milliseconds.
    #[arg(long, env = "CELLMESH_REGISTER_CAP_MS", default_value_t = DEFAULT_REGISTER_CAP_MS)]
    pub register_cap_ms: u64,

    /// Bound on deregistration at shutdown, in milliseconds.
    #[arg(long, env = "CELLMESH_DEREGISTER_TIMEOUT_MS", default_value_t = DEFAULT_DEREGISTER_TIMEOUT_MS)]
    pub deregister_timeout_ms: u64,

    /// Bound on the plugin's shutdown hook, in milliseconds.
    #[arg(long, env = "CELLMESH_SHUTDOWN_HOOK_MS", default_value_t = DEFAULT_SHUTDOWN_HOOK_MS)]
    pub shutdown_hook_ms: u64,

    /// Bound on draining open HTTP connections at shutdown, in milliseconds.
    #[arg(long, env = "CELLMESH_DRAIN_MS", default_value_t = DEFAULT_DRAIN_MS)]
    pub drain_ms: u64,

    /// Timeout of one HTTP request to discovery or a peer, in milliseconds.
    #[arg(long, env = "CELLMESH_HTTP_TIMEOUT_MS", default_value_t = DEFAULT_HTTP_TIMEOUT_MS)]
    pub http_timeout_ms: u64,

    /// Delay before the first registration, in milliseconds (the original
    /// waited 2-3 s; back-off makes that unnecessary).
    #[arg(long, env = "CELLMESH_STARTUP_DELAY_MS", default_value_t = 0)]
    pub startup_delay_ms: u64,

    /// Directory of compiled components; default `$XDG_CACHE_HOME/cellmesh`
    /// or `~/.cache/cellmesh`.
    #[arg(long, env = "CELLMESH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compiles the plugin on every start instead of using the cache.
    #[arg(long, env = "CELLMESH_NO_CACHE")]
    pub no_cache: bool,
}

/// Parses one `key=value` pair of `--config`.
fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected key=value, got `{raw}`")),
    }
}

impl Args {
    /// The address to bind: `--listen` with `--port` applied.
    pub fn listen_addr(&self) -> SocketAddr {
        let mut addr = self.listen;
        if let Some(port) = self.port {
            addr.set_port(port);
        }
        addr
    }

    /// CPU deadline of one plugin call.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Interval between heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(1))
    }

    /// The cache directory to use, or `None` when caching is off or no
    /// directory can be found.
    pub fn effective_cache_dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(crate::plugin::cache::default_cache_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_keep_their_order_and_reject_missing_equals() {
        let args = Args::try_parse_from([
            "cell-host",
            "--plugin",
            "p.wasm",
            "--config",
            "b=2",
            "--config",
            "a=x=y",
        ])
        .unwrap();
        assert_eq!(
            args.config,
            vec![("b".into(), "2".into()), ("a".into(), "x=y".into())]
        );
        assert!(Args::try_parse_from(["cell-host", "--plugin", "p", "--config", "nokey"]).is_err());
    }

    #[test]
    fn port_overrides_listen_port() {
        let args = Args::try_parse_from([
            "cell-host",
            "--plugin",
            "p",
            "--listen",
            "127.0.0.1:1",
            "--port",
            "9",
        ])
        .unwrap();
        assert_eq!(args.listen_addr(), "127.0.0.1:9".parse().unwrap());
    }
}
