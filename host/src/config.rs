//! Command-line arguments of `cell-host`, each with an environment twin,
//! and [`HostConfig`], the typed configuration they become at the edge
//! ([`HostConfig::try_from`], failing with a [`ConfigError`] that names the
//! flag). Defaults live with the types they configure ([`SandboxLimits`],
//! [`LifecycleSettings`], [`ShutdownSettings`], [`ApiLimits`]); the flags
//! only show them.
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
//!
//! One run may hold many cells (`--plugin` repeated, `--replicas`,
//! `--cells FILE.toml`...): [`RunConfig::try_from`] decides which host the
//! arguments describe, a [`HostConfig`] (one cell, the original path) or a
//! [`FleetConfig`] (see the `fleet` submodule).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::api::{ApiLimits, DEFAULT_MAX_CONCURRENT_REQUESTS};
use crate::contest::ContestPolicy;
use crate::discovery_client::DiscoveryLimits;
use crate::egress::{Cidr, PeerPolicy};
use crate::fleet::spec::{MAX_CELLS, PortRange, SpecError};
use crate::lifecycle::{BackoffPolicy, LifecycleSettings, ShutdownSettings};
use crate::liveness::BatchMode;
use crate::plugin::SandboxLimits;
use crate::plugin::validate::{CELL_ID_CHARS, MAX_CELL_ID_LEN, valid_cell_id};
use crate::plugin_watch::PluginWatchSettings;
use crate::server::ServerLimits;

/// Discovery URL used when neither `--discovery` nor `AIOS_DISCOVERY_URL` is given.
pub const DEFAULT_DISCOVERY_URL: &str = "http://127.0.0.1:8001";
/// Address the cell's HTTP API listens on by default.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
/// Default timeout of one HTTP request to discovery or to a peer.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// A duration in whole milliseconds, for the flags' defaults.
const fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

/// `cell-host`: runs cell plugins (WebAssembly components targeting the
/// `cellmesh:cell/guest@0.1.0` world) as networked cells of the mesh, one
/// or many in one process.
#[derive(Debug, Clone, Parser)]
#[command(name = "cell-host", version, about, args_override_self = true)]
pub struct Args {
    /// The plugin component (`.wasm`) to run; repeat it to run several
    /// cells in this host (one per plugin, times `--replicas`).
    #[arg(
        long,
        env = "CELLMESH_PLUGIN",
        value_name = "PATH",
        required_unless_present = "cells",
        conflicts_with = "cells"
    )]
    pub plugin: Vec<PathBuf>,

    /// Runs every `--plugin` this many times in this host; each replica's
    /// id is made distinct as `--unique-id` does (`--cell-id` is then the
    /// base of the ids).
    #[arg(
        long,
        env = "CELLMESH_REPLICAS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=MAX_CELLS as i64),
        conflicts_with = "cells"
    )]
    pub replicas: u32,

    /// The cells to run, from a TOML file (`[defaults]` and `[[cell]]`
    /// tables: see docs/host.md); instead of `--plugin`.
    #[arg(long, env = "CELLMESH_CELLS", value_name = "FILE.toml")]
    pub cells: Option<PathBuf>,

    /// Ports the cells' listeners take in order, `A-B`, on the IP of
    /// `--listen`; default in a host of many cells: any free port each
    /// (slower to bind by the thousand: give a range for thousands of cells).
    #[arg(long, env = "CELLMESH_PORT_RANGE", value_name = "A-B")]
    pub port_range: Option<PortRange>,

    /// Address of the host's admin API (`/cells`, `/health`, `/metrics`
    /// for every cell); off unless given.
    #[arg(long, env = "CELLMESH_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Bearer token every admin route then needs (`Authorization: Bearer
    /// TOKEN`).
    #[arg(
        long,
        env = "CELLMESH_ADMIN_TOKEN",
        hide_env_values = true,
        requires = "admin_listen"
    )]
    pub admin_token: Option<String>,

    /// This host's name for discovery (its failure domain); default
    /// `HOSTNAME-PID-RANDOM`.
    #[arg(long, env = "CELLMESH_HOST_ID", value_name = "ID")]
    pub host_id: Option<String>,

    /// Discovery's batch calls: `auto` uses them when discovery offers
    /// them, `off` sends one request per cell.
    #[arg(long, env = "CELLMESH_BATCH", value_enum, default_value_t = BatchMode::Auto)]
    pub batch: BatchMode,

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
    /// listen port. Discovery's `ip` and `hostname` fields come from it. In a
    /// host of many cells only HOST is used (`HOST` alone will do): each
    /// cell advertises its own port.
    #[arg(long, env = "CELLMESH_ADVERTISE")]
    pub advertise: Option<String>,

    /// Cell id to register, overriding the plugin manifest's (with
    /// `--replicas`, the base of the replicas' ids).
    #[arg(long, env = "AIOS_CELL_ID", conflicts_with = "cells")]
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
    #[arg(long, env = "CELLMESH_CALL_TIMEOUT_MS", default_value_t = ms(SandboxLimits::DEFAULT_CALL_TIMEOUT))]
    pub call_timeout_ms: u64,

    /// Memory cap of one plugin instance, in MiB.
    #[arg(long, env = "CELLMESH_MEMORY_LIMIT_MB", default_value_t = SandboxLimits::DEFAULT_MEMORY_LIMIT_MIB)]
    pub memory_limit_mb: u64,

    /// Wall-clock bound of one plugin call (and of waiting for the plugin's
    /// instance), in milliseconds; default: the CPU deadline plus the send
    /// budget's time plus 250 ms (1750 with the defaults).
    #[arg(long, env = "CELLMESH_CALL_WALL_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub call_wall_timeout_ms: Option<u64>,

    /// Most `send-message` calls one plugin call may make.
    #[arg(long, env = "CELLMESH_SEND_BUDGET", default_value_t = SandboxLimits::DEFAULT_SEND_BUDGET_COUNT)]
    pub send_budget: u32,

    /// Most time one plugin call may spend in `send-message`, all sends
    /// together, in milliseconds.
    #[arg(long, env = "CELLMESH_SEND_BUDGET_MS", default_value_t = ms(SandboxLimits::DEFAULT_SEND_BUDGET_TIME))]
    pub send_budget_ms: u64,

    /// Interval between heartbeats, in milliseconds.
    #[arg(long, env = "CELLMESH_HEARTBEAT_MS", default_value_t = ms(LifecycleSettings::DEFAULT_HEARTBEAT))]
    pub heartbeat_ms: u64,

    /// Registration tries before the host logs that it keeps trying in the background.
    #[arg(long, env = "CELLMESH_REGISTER_ATTEMPTS", default_value_t = BackoffPolicy::DEFAULT_ATTEMPTS)]
    pub register_attempts: u32,

    /// First registration back-off ceiling in milliseconds; doubles per try.
    #[arg(long, env = "CELLMESH_REGISTER_BASE_MS", default_value_t = ms(BackoffPolicy::DEFAULT_BASE))]
    pub register_base_ms: u64,

    /// Largest registration back-off ceiling in milliseconds.
    #[arg(long, env = "CELLMESH_REGISTER_CAP_MS", default_value_t = ms(BackoffPolicy::DEFAULT_CAP))]
    pub register_cap_ms: u64,

    /// Bound on deregistration at shutdown, in milliseconds.
    #[arg(long, env = "CELLMESH_DEREGISTER_TIMEOUT_MS", default_value_t = ms(ShutdownSettings::DEFAULT_DEREGISTER))]
    pub deregister_timeout_ms: u64,

    /// Bound on the plugin's shutdown hook, in milliseconds.
    #[arg(long, env = "CELLMESH_SHUTDOWN_HOOK_MS", default_value_t = ms(ShutdownSettings::DEFAULT_PLUGIN_HOOK))]
    pub shutdown_hook_ms: u64,

    /// Bound on draining open HTTP connections at shutdown, in milliseconds.
    #[arg(long, env = "CELLMESH_DRAIN_MS", default_value_t = ms(ShutdownSettings::DEFAULT_DRAIN))]
    pub drain_ms: u64,

    /// Timeout of one HTTP request to discovery or a peer, in milliseconds.
    #[arg(long, env = "CELLMESH_HTTP_TIMEOUT_MS", default_value_t = ms(DEFAULT_HTTP_TIMEOUT))]
    pub http_timeout_ms: u64,

    /// Deadline for a request's headers, in milliseconds (also closes idle
    /// keep-alive connections).
    #[arg(long, env = "CELLMESH_HEADER_TIMEOUT_MS", default_value_t = ms(ServerLimits::DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout_ms: u64,

    /// Deadline for a request's body once its headers are in, in
    /// milliseconds (408 beyond).
    #[arg(long, env = "CELLMESH_BODY_TIMEOUT_MS", default_value_t = ms(ServerLimits::DEFAULT_BODY_TIMEOUT))]
    pub body_timeout_ms: u64,

    /// Deadline for a whole request, in milliseconds (503 beyond).
    #[arg(long, env = "CELLMESH_REQUEST_TIMEOUT_MS", default_value_t = ms(ServerLimits::DEFAULT_REQUEST_TIMEOUT))]
    pub request_timeout_ms: u64,

    /// Most connections open at once; further ones wait in the listen backlog.
    #[arg(long, env = "CELLMESH_MAX_CONNECTIONS", default_value_t = ServerLimits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most requests handled at once, all routes together (a request takes
    /// its slot once its body is in).
    #[arg(long, env = "CELLMESH_MAX_CONCURRENT_REQUESTS", default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS)]
    pub max_concurrent_requests: usize,

    /// Largest `GET /peers` answer read from discovery, in bytes.
    #[arg(long, env = "CELLMESH_DISCOVERY_MAX_LISTING_BYTES", default_value_t = DiscoveryLimits::DEFAULT_MAX_LISTING_BYTES)]
    pub discovery_max_listing_bytes: usize,

    /// Largest answer to any other discovery call read, in bytes.
    #[arg(long, env = "CELLMESH_DISCOVERY_MAX_ANSWER_BYTES", default_value_t = DiscoveryLimits::DEFAULT_MAX_ANSWER_BYTES)]
    pub discovery_max_answer_bytes: usize,

    /// Longest interval between two reads of the plugin's state for
    /// `/health` and `/metrics`, in milliseconds.
    #[arg(long, env = "CELLMESH_STATE_REFRESH_MS", default_value_t = ms(PluginWatchSettings::DEFAULT_STATE_EVERY))]
    pub state_refresh_ms: u64,

    /// Only send to peers in these ranges (`CIDR,...`, checked on the
    /// resolved address at connect time); default: every address but the
    /// link-local and cloud-metadata ranges, which only a range at least as
    /// specific lifts.
    #[arg(
        long,
        env = "CELLMESH_PEER_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub peer_allow: Vec<Cidr>,

    /// Turns `POST /register_peer` off (403): the cell then sends only to
    /// the cells discovery lists.
    #[arg(long, env = "CELLMESH_NO_REGISTER_PEER")]
    pub no_register_peer: bool,

    /// Delay before the first registration, in milliseconds (the original
    /// waited 2-3 s; back-off makes that unnecessary).
    #[arg(long, env = "CELLMESH_STARTUP_DELAY_MS", default_value_t = ms(LifecycleSettings::DEFAULT_STARTUP_DELAY))]
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
        default_value_t = ms(SandboxLimits::DEFAULT_CALL_TIMEOUT),
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub call_timeout_ms: u64,

    /// Memory cap of one plugin instance, in MiB (the host's default unless
    /// changed; the same variable as the host's).
    #[arg(
        long,
        env = "CELLMESH_MEMORY_LIMIT_MB",
        default_value_t = SandboxLimits::DEFAULT_MEMORY_LIMIT_MIB,
        value_parser = clap::value_parser!(u64).range(1..=4_096)
    )]
    pub memory_limit_mb: u64,

    /// Wall-clock bound of one plugin call, in milliseconds (the host's
    /// default unless changed; the same variable as the host's).
    #[arg(
        long,
        env = "CELLMESH_CALL_WALL_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    pub call_wall_timeout_ms: Option<u64>,
}

impl ConformanceArgs {
    /// The sandbox limits the suite runs the plugin under.
    pub fn limits(&self) -> SandboxLimits {
        SandboxLimits::new(
            Duration::from_millis(self.call_timeout_ms),
            self.memory_limit_mb,
        )
        .with_wall_timeout(self.call_wall_timeout_ms.map(Duration::from_millis))
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

/// Where peers reach a cell: the parsed `--advertise HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertiseAddr {
    /// Host name or address (IPv6 without its brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Why the command line cannot run a cell; each names the flag at fault
/// (or the cells file's key and line, or the system limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--advertise` is not `HOST:PORT`.
    #[error("--advertise must be HOST:PORT, got `{0}`")]
    Advertise(String),
    /// `--cell-id` breaks the contract's rule for ids.
    #[error("--cell-id {0:?} must be 1 to {max} characters from {CELL_ID_CHARS}", max = MAX_CELL_ID_LEN)]
    CellId(String),
    /// [`HostConfig`] describes one cell; the arguments describe many.
    #[error(
        "these arguments describe a host of many cells (--plugin repeated, --cells, \
         --replicas, --port-range or --admin-listen): use RunConfig or FleetConfig"
    )]
    ManyCells,
    /// `--advertise` in a host of many cells is not `HOST` or `HOST:PORT`.
    #[error("--advertise must be HOST or HOST:PORT (only HOST is used with many cells), got `{0}`")]
    AdvertiseHost(String),
    /// `--cell-id` with several `--plugin`.
    #[error(
        "--cell-id names the cells of one plugin, but {0} --plugin are given: give each \
         plugin's id in a --cells file instead"
    )]
    CellIdForManyPlugins(usize),
    /// `--host-id` breaks the rule for ids.
    #[error(
        "--host-id {0:?} must be 1 to {max} characters from {CELL_ID_CHARS}",
        max = cellmesh_wire::batch::HOST_ID_MAX_LEN
    )]
    HostId(String),
    /// `--admin-token` is empty.
    #[error("--admin-token must not be empty (leave it out for an open admin API)")]
    AdminToken,
    /// A memory cap a pool of cells cannot hold.
    #[error(
        "--memory-limit-mb {0} is more than a host of many cells allows ({max} MiB, a 32-bit \
         memory's whole range)",
        max = crate::fleet::spec::MAX_MEMORY_LIMIT_MIB
    )]
    MemoryLimit(u64),
    /// The cells asked for (flags or cells file) cannot run.
    #[error(transparent)]
    Cells(#[from] SpecError),
    /// The process may not open enough files for its cells.
    #[error(
        "{cells} cells need about {needed} open files, but this process may open at most \
         {limit} (RLIMIT_NOFILE, already raised to its hard limit): raise the hard limit \
         (`ulimit -Hn {needed}` as root, LimitNOFILE={needed} in a systemd unit, `nofile` in \
         /etc/security/limits.conf, `--ulimit nofile={needed}` for docker) or run fewer cells"
    )]
    FileDescriptors {
        /// Cells asked for.
        cells: usize,
        /// Descriptors they need, with the host's own.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// The memory pool of the cells would need more mappings than the
    /// kernel allows a process.
    #[error(
        "{cells} cells may need up to {needed} memory mappings, but vm.max_map_count is \
         {limit}: raise it (`sysctl -w vm.max_map_count={needed}`, or in /etc/sysctl.d/) or \
         run fewer cells"
    )]
    MapCount {
        /// Cells asked for.
        cells: usize,
        /// Mappings they may need, with the process's own.
        needed: u64,
        /// `/proc/sys/vm/max_map_count`.
        limit: u64,
    },
    /// The memory pool of the cells would not fit the address space.
    #[error(
        "{cells} cells with a memory cap of {memory_mib} MiB need {needed_gib} GiB of address \
         space for their memory pool, more than the {limit_gib} GiB a host allows itself: lower \
         the memory cap (--memory-limit-mb, memory_limit_mib in the cells file) or run fewer \
         cells"
    )]
    AddressSpace {
        /// Cells asked for.
        cells: usize,
        /// The largest memory cap of a cell, in MiB.
        memory_mib: u64,
        /// Address space the pool needs, in GiB.
        needed_gib: u64,
        /// What the host allows itself, in GiB.
        limit_gib: u64,
    },
}

/// Everything a cell host runs with, as typed values: [`Args`] checked and
/// converted at the edge ([`HostConfig::try_from`]). The library
/// ([`crate::start`], [`crate::run`]) works from this, never from flags.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The plugin component (`.wasm`).
    pub plugin: PathBuf,
    /// Plugin configuration pairs, in the order given.
    pub plugin_config: Vec<(String, String)>,
    /// Address the API binds: `--listen` with `--port` applied.
    pub listen: SocketAddr,
    /// Where peers reach the cell; `None`: the bound address, or this
    /// machine's host name when bound to an unspecified address.
    pub advertise: Option<AdvertiseAddr>,
    /// Cell id overriding the manifest's (a valid id).
    pub cell_id: Option<String>,
    /// Appends a stable suffix derived from the advertised address to the
    /// cell id, so replicas of one plugin get distinct ids.
    pub unique_id: bool,
    /// Branch overriding the manifest's (an empty one counts as none).
    pub branch: Option<String>,
    /// Base URL of the discovery service.
    pub discovery_url: String,
    /// Shared token presented to discovery as `Authorization: Bearer`.
    pub discovery_token: Option<String>,
    /// Timeout of one HTTP request to discovery or a peer.
    pub http_timeout: Duration,
    /// Where the cell may send (`--peer-allow`).
    pub peer_policy: PeerPolicy,
    /// Whether `POST /register_peer` is on (`--no-register-peer` turns it off).
    pub register_peer: bool,
    /// Directory of compiled components; `None`: compile on every start.
    pub cache_dir: Option<PathBuf>,
    /// CPU deadline and memory cap of the plugin.
    pub limits: SandboxLimits,
    /// Heartbeat interval, registration back-off, start-up delay.
    pub lifecycle: LifecycleSettings,
    /// Bounds on each shutdown step.
    pub shutdown: ShutdownSettings,
    /// Limits of the HTTP API.
    pub api: ApiLimits,
    /// Timeouts and caps of the HTTP server.
    pub server: ServerLimits,
    /// How much of discovery's answers the host reads.
    pub discovery_limits: DiscoveryLimits,
    /// When the host calls the plugin for itself (`evolve`, `state`).
    pub plugin_watch: PluginWatchSettings,
}

impl Args {
    /// Whether these arguments ask for a host of many cells: more than one
    /// `--plugin`, or any flag only such a host has (`--cells`,
    /// `--replicas` above 1, `--port-range`, `--admin-listen`).
    pub fn is_fleet(&self) -> bool {
        self.plugin.len() > 1
            || self.cells.is_some()
            || self.replicas > 1
            || self.port_range.is_some()
            || self.admin_listen.is_some()
    }
}

impl TryFrom<Args> for HostConfig {
    type Error = ConfigError;

    /// Checks `--advertise` and `--cell-id`, applies `--port` to
    /// `--listen`, turns milliseconds into durations (intervals of 0 ms
    /// become 1 ms) and resolves the cache directory (`--no-cache` wins,
    /// then `--cache-dir`, then the platform's cache directory). Refuses
    /// arguments that describe many cells ([`Args::is_fleet`]).
    fn try_from(mut args: Args) -> Result<Self, ConfigError> {
        if args.is_fleet() {
            return Err(ConfigError::ManyCells);
        }
        let plugin = args.plugin.pop().ok_or(ConfigError::ManyCells)?;
        let advertise = args
            .advertise
            .as_ref()
            .map(|given| {
                parse_advertise(given).ok_or_else(|| ConfigError::Advertise(given.clone()))
            })
            .transpose()?;
        shared_config(args, plugin, advertise)
    }
}

/// [`HostConfig`] from `args` for `plugin`, `--advertise` already parsed.
pub(crate) fn shared_config(
    args: Args,
    plugin: PathBuf,
    advertise: Option<AdvertiseAddr>,
) -> Result<HostConfig, ConfigError> {
    if let Some(id) = &args.cell_id
        && !valid_cell_id(id)
    {
        return Err(ConfigError::CellId(id.clone()));
    }
    let mut listen = args.listen;
    if let Some(port) = args.port {
        listen.set_port(port);
    }
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir
            .or_else(crate::plugin::cache::default_cache_dir)
    };
    let millis = Duration::from_millis;
    Ok(HostConfig {
        plugin,
        plugin_config: args.config,
        listen,
        advertise,
        cell_id: args.cell_id,
        unique_id: args.unique_id,
        branch: args.branch,
        discovery_url: args.discovery,
        discovery_token: args.discovery_token,
        http_timeout: millis(args.http_timeout_ms),
        peer_policy: PeerPolicy::allow_only(args.peer_allow),
        register_peer: !args.no_register_peer,
        cache_dir,
        limits: SandboxLimits::new(millis(args.call_timeout_ms), args.memory_limit_mb)
            .with_send_budget(args.send_budget, millis(args.send_budget_ms))
            .with_wall_timeout(args.call_wall_timeout_ms.map(millis)),
        lifecycle: LifecycleSettings {
            heartbeat: millis(args.heartbeat_ms.max(1)),
            backoff: BackoffPolicy {
                base: millis(args.register_base_ms.max(1)),
                cap: millis(args.register_cap_ms.max(1)),
                attempts: args.register_attempts,
            },
            startup_delay: millis(args.startup_delay_ms),
            contest: ContestPolicy::default(),
        },
        shutdown: ShutdownSettings {
            drain: millis(args.drain_ms),
            plugin_hook: millis(args.shutdown_hook_ms),
            deregister: millis(args.deregister_timeout_ms),
        },
        api: ApiLimits {
            max_concurrent: args.max_concurrent_requests.max(1),
            ..ApiLimits::default()
        },
        server: ServerLimits {
            header_timeout: millis(args.header_timeout_ms.max(1)),
            body_timeout: millis(args.body_timeout_ms.max(1)),
            request_timeout: millis(args.request_timeout_ms.max(1)),
            max_connections: args.max_connections.max(1),
            max_concurrent_requests: args.max_concurrent_requests.max(1),
            max_body_bytes: ApiLimits::default().max_body_bytes,
        },
        discovery_limits: DiscoveryLimits {
            max_listing_bytes: args.discovery_max_listing_bytes,
            max_answer_bytes: args.discovery_max_answer_bytes,
        },
        plugin_watch: PluginWatchSettings {
            evolve_every: millis(args.heartbeat_ms.max(1)),
            state_every: millis(args.state_refresh_ms.max(1)),
        },
    })
}

/// Parses `HOST:PORT` (`[v6]:PORT` too); `None` when it is not that.
pub(crate) fn parse_advertise(given: &str) -> Option<AdvertiseAddr> {
    let (host, port) = given.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| AdvertiseAddr {
        host: host.to_owned(),
        port,
    })
}

mod fleet;

pub use fleet::{AdminSettings, FleetConfig, RunConfig};

#[cfg(test)]
mod tests;
