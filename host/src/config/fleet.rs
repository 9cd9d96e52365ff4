//! [`FleetConfig`]: the typed configuration of a host of many cells, and
//! [`RunConfig`]: which host the arguments describe.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use cellmesh_wire::batch::HOST_ID_MAX_LEN;

use super::{AdvertiseAddr, Args, ConfigError, HostConfig, parse_advertise, shared_config};
use crate::fleet::spec::{
    CellDefaults, CellSpec, CellTemplate, LimitFlags, MAX_MEMORY_LIMIT_MIB, expand, read_cells_file,
};
use crate::liveness::BatchMode;
use crate::plugin::validate::valid_cell_id;

/// The host's admin API (`--admin-listen`, `--admin-token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Address it listens on.
    pub listen: SocketAddr,
    /// Bearer token every route needs, when set (never empty).
    pub token: Option<String>,
}

/// Everything a host of many cells runs with: the settings all cells
/// share, and one [`CellSpec`] per cell.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Settings every cell shares: discovery, timeouts, server bounds,
    /// lifecycle and shutdown. Its per-cell fields (`plugin`, which is the
    /// first cell's, `plugin_config`, `listen`, `advertise`, `cell_id`,
    /// `unique_id`, `branch`, `limits`) are the flags' values, which
    /// [`Self::cells`] already took in: the host reads them from the cells.
    pub host: HostConfig,
    /// The cells, in order (never empty).
    pub cells: Vec<CellSpec>,
    /// The host's failure-domain name (`--host-id`, or generated).
    pub host_id: String,
    /// The host peers call every cell at (`--advertise`'s HOST); `None`:
    /// each cell's bound address, or this machine's host name when bound
    /// to an unspecified address.
    pub advertise_host: Option<String>,
    /// The admin API, when asked for.
    pub admin: Option<AdminSettings>,
    /// Whether liveness uses discovery's batch calls.
    pub batch: BatchMode,
}

/// The host the arguments describe.
#[derive(Debug, Clone)]
pub enum RunConfig {
    /// One cell, the original host ([`crate::run`]).
    Cell(Box<HostConfig>),
    /// Many cells ([`crate::fleet::run`]).
    Fleet(Box<FleetConfig>),
}

impl TryFrom<Args> for RunConfig {
    type Error = ConfigError;

    /// A [`FleetConfig`] when the arguments ask for many cells
    /// ([`Args::is_fleet`]), else a [`HostConfig`], exactly as before.
    fn try_from(args: Args) -> Result<Self, ConfigError> {
        if args.is_fleet() {
            Ok(RunConfig::Fleet(Box::new(FleetConfig::try_from(args)?)))
        } else {
            Ok(RunConfig::Cell(Box::new(HostConfig::try_from(args)?)))
        }
    }
}

impl TryFrom<Args> for FleetConfig {
    type Error = ConfigError;

    /// Reads the cells file (or the `--plugin` flags), expands replicas,
    /// ids and ports, checks the host-level flags and builds the shared
    /// settings as [`HostConfig::try_from`] does.
    fn try_from(args: Args) -> Result<Self, ConfigError> {
        let advertise_host = args
            .advertise
            .as_deref()
            .map(parse_advertise_host)
            .transpose()?;
        if args.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::AdminToken);
        }
        let host_id = match &args.host_id {
            Some(id) if valid_cell_id(id) && id.len() <= HOST_ID_MAX_LEN => id.clone(),
            Some(id) => return Err(ConfigError::HostId(id.clone())),
            None => default_host_id(&crate::hostname(), std::process::id()),
        };
        if let Some(id) = &args.cell_id {
            if !valid_cell_id(id) {
                return Err(ConfigError::CellId(id.clone()));
            }
            if args.plugin.len() > 1 {
                return Err(ConfigError::CellIdForManyPlugins(args.plugin.len()));
            }
        }
        if args.memory_limit_mb > MAX_MEMORY_LIMIT_MIB {
            return Err(ConfigError::MemoryLimit(args.memory_limit_mb));
        }
        let templates = match &args.cells {
            Some(path) => read_cells_file(path)?,
            None => args
                .plugin
                .iter()
                .enumerate()
                .map(|(index, plugin)| {
                    CellTemplate::from_flag(
                        index,
                        plugin.clone(),
                        args.cell_id.clone(),
                        args.replicas,
                    )
                })
                .collect(),
        };
        let mut listen = args.listen;
        if let Some(port) = args.port {
            listen.set_port(port);
        }
        let defaults = CellDefaults {
            listen,
            unique_id: args.unique_id,
            branch: args.branch.clone(),
            config: args.config.clone(),
            limits: LimitFlags {
                call_timeout_ms: args.call_timeout_ms,
                call_wall_timeout_ms: args.call_wall_timeout_ms,
                memory_limit_mib: args.memory_limit_mb,
                send_budget: args.send_budget,
                send_budget_ms: args.send_budget_ms,
            },
        };
        let cells = expand(&templates, &defaults, args.port_range)?;
        let first = cells
            .first()
            .map(|cell| cell.plugin.clone())
            .unwrap_or_default();
        let admin = args.admin_listen.map(|listen| AdminSettings {
            listen,
            token: args.admin_token.clone(),
        });
        let batch = args.batch;
        let host = shared_config(args, first, None::<AdvertiseAddr>)?;
        Ok(Self {
            host,
            cells,
            host_id,
            advertise_host,
            admin,
            batch,
        })
    }
}

/// `--advertise` in a host of many cells: `HOST`, `HOST:PORT`, an IPv6
/// address bare or in brackets; the port, if any, is dropped.
fn parse_advertise_host(given: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError::AdvertiseHost(given.to_owned());
    let trimmed = given.trim();
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if let Some(AdvertiseAddr { host, .. }) = parse_advertise(trimmed) {
        return valid_host(&host).then_some(host).ok_or_else(bad);
    }
    let host = trimmed.trim_start_matches('[').trim_end_matches(']');
    valid_host(host).then(|| host.to_owned()).ok_or_else(bad)
}

/// A host name or address: not empty, no spaces or slashes, and a colon
/// only in an IPv6 address.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && !host.contains(|c: char| c.is_whitespace() || c == '/')
        && (!host.contains(':') || host.parse::<Ipv6Addr>().is_ok())
}

/// `HOSTNAME-PID-RANDOM` (6 hex digits), every character outside the id
/// alphabet replaced by `-`, the host name shortened to fit
/// [`HOST_ID_MAX_LEN`].
pub(crate) fn default_host_id(hostname: &str, pid: u32) -> String {
    let suffix = format!("-{pid}-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let keep = HOST_ID_MAX_LEN.saturating_sub(suffix.len());
    let name: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(keep)
        .collect();
    let name = if name.is_empty() {
        "host".to_owned()
    } else {
        name
    };
    format!("{name}{suffix}")
}
