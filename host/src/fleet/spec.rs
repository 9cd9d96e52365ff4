//! What a host of many cells runs: [`CellSpec`], one cell after its
//! replicas are expanded, made by [`expand`] from [`CellTemplate`]s, which
//! come from the `--plugin` flags ([`CellTemplate::from_flag`]) or from a
//! cells file ([`read_cells_file`], [`parse_cells_file`]). Every mistake is
//! a [`SpecError`] naming the flag, or the file, line and key.
//!
//! The file (`--cells FILE.toml`):
//!
//! ```toml
//! [defaults]            # optional; any key of [[cell]] but id, port, replicas
//! branch = "main"
//! config = { region = "eu" }
//! [defaults.limits]
//! memory_limit_mib = 64
//!
//! [[cell]]
//! plugin = "pure.wasm"  # relative to the file's directory
//! id = "pure"           # with replicas > 1, the base of each replica's id
//! replicas = 100
//! port = 9100           # replicas take 9100, 9101, ...
//! config = { k = "v" }  # over defaults.config, as --config k=v
//! [cell.limits]         # over defaults.limits
//! call_timeout_ms = 200
//! ```
//!
//! Values are layered: the flags (`--branch`, `--config`, `--call-timeout-ms`
//! ...) first, then `[defaults]`, then the cell's own.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::plugin::SandboxLimits;
use crate::plugin::validate::{CELL_ID_CHARS, MAX_CELL_ID_LEN, valid_cell_id};

/// Most cells one host runs.
pub const MAX_CELLS: usize = 10_000;
/// Largest memory cap of one cell in a host of many cells, in MiB (a
/// 32-bit linear memory's whole range).
pub const MAX_MEMORY_LIMIT_MIB: u64 = 4_096;
/// Largest CPU deadline or wall-clock bound of one call in a cells file,
/// in milliseconds.
pub const MAX_CALL_TIMEOUT_MS: u64 = 600_000;

/// Where a cell was asked for, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The `index`-th `--plugin` (0-based).
    Flag {
        /// Position among the `--plugin` flags.
        index: usize,
    },
    /// The `entry`-th `[[cell]]` (0-based) of a cells file, at `line`.
    File {
        /// The cells file.
        path: PathBuf,
        /// Position among its `[[cell]]` tables.
        entry: usize,
        /// Line of the entry (1-based).
        line: usize,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag { index } => write!(f, "--plugin #{}", index + 1),
            Origin::File { path, entry, line } => {
                write!(
                    f,
                    "{} line {line} ([[cell]] #{})",
                    path.display(),
                    entry + 1
                )
            }
        }
    }
}

/// Why the cells asked for cannot run; each names the flag, or the file,
/// line and key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The cells file cannot be read.
    #[error("--cells {path}: cannot read it: {detail}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        detail: String,
    },
    /// The cells file is not valid TOML, or has an unknown key or a value
    /// of the wrong type (the parser's message names line and column).
    #[error("--cells {path}: {detail}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// A key of the cells file has a value the host cannot use.
    #[error("--cells {path} line {line}: `{key}` {detail}")]
    Value {
        /// The file.
        path: PathBuf,
        /// Line of the value (1-based).
        line: usize,
        /// The key, dotted (`cell.limits.memory_limit_mib`).
        key: String,
        /// What is wrong and what is allowed.
        detail: String,
    },
    /// The cells file has no `[[cell]]`.
    #[error("--cells {0}: lists no [[cell]]; add at least one with its `plugin`")]
    NoCells(PathBuf),
    /// More cells than one host runs.
    #[error(
        "{count} cells asked for ({what}); one host runs at most {max}",
        max = MAX_CELLS
    )]
    TooManyCells {
        /// Cells asked for.
        count: usize,
        /// Where they come from.
        what: String,
    },
    /// A flag's value cannot hold for a host of many cells.
    #[error("{flag} {detail}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `--port-range` has fewer ports than cells that need one.
    #[error(
        "--port-range {range} has {available} free port(s) but {needed} cell(s) need one: \
         widen the range or give cells a `port` in the cells file"
    )]
    PortRange {
        /// The range given.
        range: PortRange,
        /// Ports of the range not taken by a cell's fixed `port`.
        available: usize,
        /// Cells without a fixed port.
        needed: usize,
    },
    /// A fixed port (with its replicas) runs past 65535.
    #[error("{origin}: `port` {port} with {replicas} replicas runs past port 65535")]
    PortOverflow {
        /// The entry.
        origin: Origin,
        /// Its first port.
        port: u16,
        /// Its replicas.
        replicas: u32,
    },
    /// Two cells have the same fixed port.
    #[error("port {port} is given to two cells: {first} and {second}")]
    PortTaken {
        /// The port.
        port: u16,
        /// The first cell asking for it.
        first: Origin,
        /// The second.
        second: Origin,
    },
    /// Two cells have the same id.
    #[error(
        "cell id `{id}` is given to two cells: {first} and {second}; ids must be distinct \
         (give one `replicas` or `--unique-id` to suffix them)"
    )]
    DuplicateId {
        /// The id.
        id: String,
        /// The first cell with it.
        first: Origin,
        /// The second.
        second: Origin,
    },
}

/// `--port-range A-B`: the ports cells' listeners take, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (included).
    pub last: u16,
}

impl PortRange {
    /// Ports in the range (never none).
    pub fn ports(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// `A-B` with `1 <= A <= B <= 65535`.
    fn from_str(raw: &str) -> Result<Self, String> {
        let bad = || format!("expected A-B with 1 <= A <= B <= 65535, got `{raw}`");
        let (first, last) = raw.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

/// Limits a cells file may set, each over the layer below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// CPU deadline of one call, in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// Wall-clock bound of one call, in milliseconds.
    pub call_wall_timeout_ms: Option<u64>,
    /// Memory cap of one instance, in MiB.
    pub memory_limit_mib: Option<u64>,
}

impl LimitOverrides {
    /// These overrides over `below`: a value set here wins.
    pub fn over(self, below: Self) -> Self {
        Self {
            call_timeout_ms: self.call_timeout_ms.or(below.call_timeout_ms),
            call_wall_timeout_ms: self.call_wall_timeout_ms.or(below.call_wall_timeout_ms),
            memory_limit_mib: self.memory_limit_mib.or(below.memory_limit_mib),
        }
    }
}

/// The sandbox limits the flags set, the bottom layer of every cell's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitFlags {
    /// `--call-timeout-ms`.
    pub call_timeout_ms: u64,
    /// `--call-wall-timeout-ms` (`None`: derived).
    pub call_wall_timeout_ms: Option<u64>,
    /// `--memory-limit-mb`.
    pub memory_limit_mib: u64,
    /// `--send-budget`.
    pub send_budget: u32,
    /// `--send-budget-ms`.
    pub send_budget_ms: u64,
}

impl LimitFlags {
    /// The limits of a cell: `over` over these flags.
    pub fn limits(&self, over: LimitOverrides) -> SandboxLimits {
        let millis = Duration::from_millis;
        SandboxLimits::new(
            millis(over.call_timeout_ms.unwrap_or(self.call_timeout_ms)),
            over.memory_limit_mib.unwrap_or(self.memory_limit_mib),
        )
        .with_send_budget(self.send_budget, millis(self.send_budget_ms))
        .with_wall_timeout(
            over.call_wall_timeout_ms
                .or(self.call_wall_timeout_ms)
                .map(millis),
        )
    }
}

/// What every cell starts from: the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellDefaults {
    /// `--listen` (with `--port`): the IP every cell binds; its port only
    /// for a host of one cell without `--port-range`.
    pub listen: SocketAddr,
    /// `--unique-id`: suffix every id.
    pub unique_id: bool,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--config` pairs, in order.
    pub config: Vec<(String, String)>,
    /// The limits flags.
    pub limits: LimitFlags,
}

/// One entry of the cells to run, before its replicas are expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellTemplate {
    /// The plugin file.
    pub plugin: PathBuf,
    /// Id (with replicas, the base of theirs); `None`: the manifest's.
    pub id: Option<String>,
    /// Branch over the flags'.
    pub branch: Option<String>,
    /// How many cells of it.
    pub replicas: u32,
    /// Fixed first port.
    pub port: Option<u16>,
    /// Configuration over the flags' (a key given here replaces the
    /// flags' value in place; new keys come after).
    pub config: Vec<(String, String)>,
    /// Limits over the flags'.
    pub limits: LimitOverrides,
    /// Where it was asked for.
    pub origin: Origin,
}

impl CellTemplate {
    /// The `index`-th `--plugin`, `replicas` times, id `id` (`--cell-id`).
    pub fn from_flag(index: usize, plugin: PathBuf, id: Option<String>, replicas: u32) -> Self {
        Self {
            plugin,
            id,
            branch: None,
            replicas,
            port: None,
            config: Vec::new(),
            limits: LimitOverrides::default(),
            origin: Origin::Flag { index },
        }
    }
}

/// One cell to run, after expansion: everything that differs from cell to
/// cell. The settings all cells share are in
/// [`FleetConfig::host`](crate::config::FleetConfig::host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellSpec {
    /// Position in the host (0-based); also its slot's index.
    pub index: usize,
    /// The plugin file.
    pub plugin: PathBuf,
    /// Id overriding the manifest's (with [`Self::unique_id`], the base).
    pub cell_id: Option<String>,
    /// Appends a stable suffix derived from the advertised address.
    pub unique_id: bool,
    /// Branch overriding the manifest's (empty counts as none).
    pub branch: Option<String>,
    /// Plugin configuration pairs, in order.
    pub plugin_config: Vec<(String, String)>,
    /// The sandbox's limits.
    pub limits: SandboxLimits,
    /// Address the cell's API binds (port 0: any free port).
    pub listen: SocketAddr,
    /// Where it was asked for.
    pub origin: Origin,
}

/// `layer` over `below`: a key of `layer` replaces its value in place, new
/// keys are appended in `layer`'s order.
fn merge_config(below: &[(String, String)], layer: &[(String, String)]) -> Vec<(String, String)> {
    let mut merged = below.to_vec();
    for (key, value) in layer {
        match merged.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => merged.push((key.clone(), value.clone())),
        }
    }
    merged
}

/// Expands `templates` into one [`CellSpec`] per replica, in order: ids,
/// ports (a fixed `port`, else the next free one of `range`, else any free
/// port; a host of one cell without either keeps `--listen`), layered
/// configuration and limits. Refuses more than [`MAX_CELLS`] cells, a range
/// too small, ports given twice and ids given twice.
pub fn expand(
    templates: &[CellTemplate],
    defaults: &CellDefaults,
    range: Option<PortRange>,
) -> Result<Vec<CellSpec>, SpecError> {
    let count: usize = templates.iter().map(|t| t.replicas as usize).sum();
    if count > MAX_CELLS {
        let what = match templates.first().map(|t| &t.origin) {
            Some(Origin::File { path, .. }) => {
                format!("the replicas of --cells {}", path.display())
            }
            _ => format!(
                "{} --plugin x --replicas {}",
                templates.len(),
                templates.first().map_or(1, |t| t.replicas)
            ),
        };
        return Err(SpecError::TooManyCells { count, what });
    }
    let fixed = fixed_ports(templates)?;
    check_ids(templates, defaults.unique_id)?;
    let needed: usize = templates
        .iter()
        .filter(|t| t.port.is_none())
        .map(|t| t.replicas as usize)
        .sum();
    let mut free = range.map(|range| {
        (range.first..=range.last)
            .filter(|port| !fixed.contains_key(port))
            .collect::<Vec<u16>>()
            .into_iter()
    });
    if let (Some(range), Some(free)) = (range, &free)
        && free.len() < needed
    {
        return Err(SpecError::PortRange {
            range,
            available: free.len(),
            needed,
        });
    }
    let lone = count == 1;
    let mut specs = Vec::with_capacity(count);
    for template in templates {
        let unique_id = defaults.unique_id || template.replicas > 1;
        let branch = template.branch.clone().or_else(|| defaults.branch.clone());
        let plugin_config = merge_config(&defaults.config, &template.config);
        let limits = defaults.limits.limits(template.limits);
        for replica in 0..template.replicas {
            let port = match (template.port, free.as_mut()) {
                // Checked by `fixed_ports`: no overflow.
                (Some(port), _) => port + replica as u16,
                (None, Some(free)) => free.next().expect("counted above"),
                (None, None) if lone => defaults.listen.port(),
                (None, None) => 0,
            };
            specs.push(CellSpec {
                index: specs.len(),
                plugin: template.plugin.clone(),
                cell_id: template.id.clone(),
                unique_id,
                branch: branch.clone(),
                plugin_config: plugin_config.clone(),
                limits,
                listen: SocketAddr::new(defaults.listen.ip(), port),
                origin: template.origin.clone(),
            });
        }
    }
    Ok(specs)
}

/// Every fixed port and the entry that asks for it; refuses overflows and
/// ports asked for twice.
fn fixed_ports(templates: &[CellTemplate]) -> Result<HashMap<u16, Origin>, SpecError> {
    let mut taken: HashMap<u16, Origin> = HashMap::new();
    for template in templates {
        let Some(port) = template.port else { continue };
        let last = u32::from(port) + template.replicas.saturating_sub(1);
        if last > u32::from(u16::MAX) {
            return Err(SpecError::PortOverflow {
                origin: template.origin.clone(),
                port,
                replicas: template.replicas,
            });
        }
        for port in port..=last as u16 {
            if let Some(first) = taken.insert(port, template.origin.clone()) {
                return Err(SpecError::PortTaken {
                    port,
                    first,
                    second: template.origin.clone(),
                });
            }
        }
    }
    Ok(taken)
}

/// Refuses two cells given the same id that no suffix will tell apart.
fn check_ids(templates: &[CellTemplate], unique_id: bool) -> Result<(), SpecError> {
    if unique_id {
        return Ok(());
    }
    let mut seen: HashMap<&str, &Origin> = HashMap::new();
    for template in templates.iter().filter(|t| t.replicas == 1) {
        let Some(id) = template.id.as_deref() else {
            continue;
        };
        if let Some(first) = seen.insert(id, &template.origin) {
            return Err(SpecError::DuplicateId {
                id: id.to_owned(),
                first: first.clone(),
                second: template.origin.clone(),
            });
        }
    }
    Ok(())
}

/// The `[defaults]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDefaults {
    plugin: Option<Spanned<String>>,
    branch: Option<String>,
    config: Option<BTreeMap<String, Spanned<toml::Value>>>,
    limits: Option<Spanned<LimitOverrides>>,
}

/// One `[[cell]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCell {
    plugin: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    branch: Option<String>,
    replicas: Option<Spanned<u32>>,
    port: Option<Spanned<u16>>,
    config: Option<BTreeMap<String, Spanned<toml::Value>>>,
    limits: Option<Spanned<LimitOverrides>>,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CellsFile {
    #[serde(default)]
    defaults: FileDefaults,
    #[serde(default)]
    cell: Vec<Spanned<FileCell>>,
}

/// Reads and parses the cells file at `path` ([`parse_cells_file`]).
pub fn read_cells_file(path: &Path) -> Result<Vec<CellTemplate>, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|error| SpecError::Read {
        path: path.into(),
        detail: error.to_string(),
    })?;
    parse_cells_file(path, &text)
}

/// Parses `text`, the cells file at `path`, into one template per
/// `[[cell]]` with `[defaults]` applied (the flags are applied by
/// [`expand`]); relative plugin paths are taken from `path`'s directory.
pub fn parse_cells_file(path: &Path, text: &str) -> Result<Vec<CellTemplate>, SpecError> {
    let file: CellsFile = toml::from_str(text).map_err(|error| SpecError::Toml {
        path: path.into(),
        detail: error.to_string().trim_end().to_owned(),
    })?;
    let at = |span: std::ops::Range<usize>| line_of(text, span.start);
    let value_error = |line: usize, key: &str, detail: String| SpecError::Value {
        path: path.into(),
        line,
        key: key.to_owned(),
        detail,
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let defaults = &file.defaults;
    let default_config = match &defaults.config {
        Some(table) => config_pairs(table, "defaults.config", &at, &value_error)?,
        None => Vec::new(),
    };
    let default_limits = match &defaults.limits {
        Some(limits) => {
            check_limits(
                limits.get_ref(),
                at(limits.span()),
                "defaults.limits",
                &value_error,
            )?;
            *limits.get_ref()
        }
        None => LimitOverrides::default(),
    };
    if let Some(plugin) = &defaults.plugin
        && plugin.get_ref().trim().is_empty()
    {
        let detail = "must name a plugin file".to_owned();
        return Err(value_error(at(plugin.span()), "defaults.plugin", detail));
    }
    if file.cell.is_empty() {
        return Err(SpecError::NoCells(path.into()));
    }
    let mut templates = Vec::with_capacity(file.cell.len());
    for (entry, spanned) in file.cell.iter().enumerate() {
        let line = at(spanned.span());
        let cell = spanned.get_ref();
        let origin = Origin::File {
            path: path.into(),
            entry,
            line,
        };
        let plugin = match cell.plugin.as_ref().or(defaults.plugin.as_ref()) {
            Some(plugin) if !plugin.get_ref().trim().is_empty() => base.join(plugin.get_ref()),
            Some(plugin) => {
                let detail = "must name a plugin file".to_owned();
                return Err(value_error(at(plugin.span()), "cell.plugin", detail));
            }
            None => {
                let detail = "is missing: every [[cell]] needs its plugin file (or set \
                              defaults.plugin)"
                    .to_owned();
                return Err(value_error(line, "cell.plugin", detail));
            }
        };
        if let Some(id) = &cell.id
            && !valid_cell_id(id.get_ref())
        {
            let detail = format!(
                "{:?} must be 1 to {MAX_CELL_ID_LEN} characters from {CELL_ID_CHARS}",
                id.get_ref()
            );
            return Err(value_error(at(id.span()), "cell.id", detail));
        }
        let replicas = match &cell.replicas {
            Some(replicas)
                if *replicas.get_ref() == 0 || *replicas.get_ref() as usize > MAX_CELLS =>
            {
                let detail = format!("must be 1 to {MAX_CELLS}, got {}", replicas.get_ref());
                return Err(value_error(at(replicas.span()), "cell.replicas", detail));
            }
            Some(replicas) => *replicas.get_ref(),
            None => 1,
        };
        if let Some(port) = &cell.port
            && *port.get_ref() == 0
        {
            let detail = "must be 1 to 65535 (leave it out for any free port)".to_owned();
            return Err(value_error(at(port.span()), "cell.port", detail));
        }
        let config = match &cell.config {
            Some(table) => merge_config(
                &default_config,
                &config_pairs(table, "cell.config", &at, &value_error)?,
            ),
            None => default_config.clone(),
        };
        let limits = match &cell.limits {
            Some(limits) => {
                check_limits(
                    limits.get_ref(),
                    at(limits.span()),
                    "cell.limits",
                    &value_error,
                )?;
                limits.get_ref().over(default_limits)
            }
            None => default_limits,
        };
        templates.push(CellTemplate {
            plugin,
            id: cell.id.as_ref().map(|id| id.get_ref().clone()),
            branch: cell.branch.clone().or_else(|| defaults.branch.clone()),
            replicas,
            port: cell.port.as_ref().map(|port| *port.get_ref()),
            config,
            limits,
            origin,
        });
    }
    Ok(templates)
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A `config` table as `key=value` pairs: strings as they are, numbers
/// and booleans as TOML writes them; refuses empty keys, arrays and tables.
fn config_pairs(
    table: &BTreeMap<String, Spanned<toml::Value>>,
    key: &str,
    at: &impl Fn(std::ops::Range<usize>) -> usize,
    error: &impl Fn(usize, &str, String) -> SpecError,
) -> Result<Vec<(String, String)>, SpecError> {
    let mut pairs = Vec::with_capacity(table.len());
    for (name, value) in table {
        let line = at(value.span());
        if name.is_empty() {
            return Err(error(line, key, "has an empty key".to_owned()));
        }
        let text = match value.get_ref() {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                let detail = format!(
                    "must be a string, number or boolean (as --config {name}=VALUE), got {}",
                    other.type_str()
                );
                return Err(error(line, &format!("{key}.{name}"), detail));
            }
        };
        pairs.push((name.clone(), text));
    }
    Ok(pairs)
}

/// Refuses limits of zero or beyond what a host can hold.
fn check_limits(
    limits: &LimitOverrides,
    line: usize,
    key: &str,
    error: &impl Fn(usize, &str, String) -> SpecError,
) -> Result<(), SpecError> {
    let checks = [
        (
            "call_timeout_ms",
            limits.call_timeout_ms,
            MAX_CALL_TIMEOUT_MS,
        ),
        (
            "call_wall_timeout_ms",
            limits.call_wall_timeout_ms,
            MAX_CALL_TIMEOUT_MS,
        ),
        (
            "memory_limit_mib",
            limits.memory_limit_mib,
            MAX_MEMORY_LIMIT_MIB,
        ),
    ];
    for (name, value, max) in checks {
        if let Some(value) = value
            && !(1..=max).contains(&value)
        {
            let detail = format!("must be 1 to {max}, got {value}");
            return Err(error(line, &format!("{key}.{name}"), detail));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
