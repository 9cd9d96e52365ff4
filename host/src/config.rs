//! Command-line arguments of `cell-host`, each with an environment twin.
//!
//! The structs live in the library so that tests build them with
//! [`clap::Parser::parse_from`] exactly as the binary does. The original
//! cells' variable names keep working: `AIOS_DISCOVERY_URL`, `AIOS_CELL_ID`,
//! `AIOS_BRANCH` and `PORT`.
//!
//! [`Cli`] is the whole command line: plain `cell-host --plugin X ...`
//! runs a cell ([`Args`], unchanged), `cell-host conformance X` checks a
//! plugin ([`ConformanceArgs`]). The two do not mix: flags of the cell run
//! conflict with a subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::plugin::SandboxLimits;

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

/// `cell-host conformance`: checks that a plugin is a good citizen of the
/// mesh (see [`crate::conformance`] for every check).
#[derive(Debug, Clone, clap::Args)]
pub struct ConformanceArgs {
    /// The plugin component (`.wasm`) to check.
    #[arg(value_name = "PLUGIN.wasm")]
    pub plugin: PathBuf,

    /// Writes the report as JSON to FILE.
    #[arg(long, value_name = "FILE", env = "CELLMESH_CONFORMANCE_JSON")]
    pub json: Option<PathBuf>,

    /// Writes the report as JUnit XML to FILE (for CI systems).
    #[arg(long, value_name = "FILE", env = "CELLMESH_CONFORMANCE_JUNIT")]
    pub junit: Option<PathBuf>,

    /// CPU deadline of one plugin call, in milliseconds (the host's default
    /// unless changed; the same variable as the host's).
    #[arg(
        long,
        env = "CELLMESH_CALL_TIMEOUT_MS",
        default_value_t = DEFAULT_CALL_TIMEOUT_MS,
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub call_timeout_ms: u64,

    /// Memory cap of one plugin instance, in MiB (the host's default unless
    /// changed; the same variable as the host's).
    #[arg(
        long,
        env = "CELLMESH_MEMORY_LIMIT_MB",
        default_value_t = DEFAULT_MEMORY_LIMIT_MB,
        value_parser = clap::value_parser!(u64).range(1..=4_096)
    )]
    pub memory_limit_mb: u64,
}

impl ConformanceArgs {
    /// The sandbox limits the suite runs the plugin under.
    pub fn limits(&self) -> SandboxLimits {
        SandboxLimits {
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            memory_limit_bytes: usize::try_from(self.memory_limit_mb << 20).unwrap_or(usize::MAX),
        }
    }
}

/// The subcommands of `cell-host`.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Checks a plugin against the cell contract: prints each check with
    /// PASS/FAIL/WARN and how to fix it; exits 0 only when every required
    /// check passes (1 otherwise, 2 for usage errors). No network needed.
    Conformance(ConformanceArgs),
}

/// The whole command line: a cell run (no subcommand, as always) or a
/// subcommand.
#[derive(Debug, Clone)]
pub enum Cli {
    /// `cell-host --plugin X ...`: run a cell.
    Run(Box<Args>),
    /// `cell-host SUBCOMMAND ...`.
    Command(Command),
}

impl CommandFactory for Cli {
    fn command() -> clap::Command {
        let run = Args::command();
        // `augment_subcommands` would replace the description with the
        // enum's doc comment; keep the host's.
        let (about, long_about) = (run.get_about().cloned(), run.get_long_about().cloned());
        let mut command = Command::augment_subcommands(run);
        if let Some(about) = about {
            command = command.about(about);
        }
        if let Some(long_about) = long_about {
            command = command.long_about(long_about);
        }
        command
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
    }

    fn command_for_update() -> clap::Command {
        Self::command()
    }
}

impl FromArgMatches for Cli {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        if matches.subcommand_name().is_some() {
            Ok(Cli::Command(Command::from_arg_matches(matches)?))
        } else {
            Ok(Cli::Run(Box::new(Args::from_arg_matches(matches)?)))
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Parser for Cli {}

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
    fn plain_runs_parse_as_before_and_subcommands_do_not_mix_with_them() {
        let Cli::Run(args) = Cli::try_parse_from(["cell-host", "--plugin", "p.wasm"]).unwrap()
        else {
            panic!("a plain run")
        };
        assert_eq!(args.plugin, PathBuf::from("p.wasm"));
        let Cli::Command(Command::Conformance(c)) = Cli::try_parse_from([
            "cell-host",
            "conformance",
            "x.wasm",
            "--json",
            "r.json",
            "--call-timeout-ms",
            "50",
        ])
        .unwrap() else {
            panic!("the conformance subcommand")
        };
        assert_eq!(c.plugin, PathBuf::from("x.wasm"));
        assert_eq!(c.json, Some(PathBuf::from("r.json")));
        assert_eq!(c.limits().call_timeout, Duration::from_millis(50));
        // A run's flags conflict with the subcommand; a run needs --plugin.
        assert!(Cli::try_parse_from(["cell-host", "--plugin", "p", "conformance", "x"]).is_err());
        assert!(Cli::try_parse_from(["cell-host"]).is_err());
        assert!(Cli::try_parse_from(["cell-host", "conformance"]).is_err());
        assert!(
            Cli::try_parse_from(["cell-host", "conformance", "x", "--call-timeout-ms", "0"])
                .is_err()
        );
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
