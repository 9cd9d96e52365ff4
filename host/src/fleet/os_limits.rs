//! The system limits a host of many cells runs into, checked before
//! anything is loaded so that a host asked for too many cells stops at
//! once with the limit, its value, what the cells need and how to raise
//! it, instead of failing cell by cell later:
//!
//! - open files (`RLIMIT_NOFILE`): the soft limit is raised to the hard
//!   one first (and the hard one, when the process may); each cell needs
//!   its listener, the host a reserve shared by every cell's connections;
//! - memory mappings (`vm.max_map_count`): each slot of the pooling
//!   allocator may split its reservations into several mappings
//!   ([`PoolSizing::estimated_maps`]);
//! - address space: the pools reserve every cell's memories, tables and
//!   stacks up front ([`PoolSizing::address_space_bytes`]).

use crate::config::ConfigError;
use crate::plugin::engine::PoolSizing;

/// File descriptors one cell needs of its own: its listener.
pub const FDS_PER_CELL: u64 = 1;
/// File descriptors the host needs for itself (runtime, clients, admin
/// API, compiled code) and a reserve of connections shared by every cell
/// (connections are short-lived: most cells have none open at a time;
/// the limit above this reserve is there for them too).
pub const FDS_FOR_HOST: u64 = 1_024;
/// Mappings left free for the process's own needs beyond those it has.
pub const MAPS_MARGIN: u64 = 1_024;
/// Address space the pools may reserve: half of x86-64's 128 TiB user
/// space, the rest left to the process.
pub const ADDRESS_SPACE_LIMIT: u128 = 64 << 40;

/// The open-files limit `cells` cells need.
pub fn open_files_needed(cells: usize) -> u64 {
    (cells as u64).saturating_mul(FDS_PER_CELL) + FDS_FOR_HOST
}

/// Raises the soft limit on open files to the hard one, and, when the
/// hard one is below `wanted` and the process may raise it (root or
/// `CAP_SYS_RESOURCE`), both to `wanted` (at most `fs.nr_open`); answers
/// the limit in force (`None`: unlimited or unknown).
pub fn raise_open_files(wanted: u64) -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let hard = limit.maximum;
        if let Some(hard) = hard
            && hard < wanted
        {
            let ceiling = nr_open().unwrap_or(wanted);
            let raised = Rlimit {
                current: Some(wanted.min(ceiling)),
                maximum: Some(wanted.min(ceiling)),
            };
            if wanted.min(ceiling) > hard && setrlimit(Resource::Nofile, raised).is_ok() {
                tracing::info!(from = hard, to = ?raised.maximum, "raised the open-files hard limit");
                return raised.maximum;
            }
        }
        if limit.current != hard {
            let raised = Rlimit {
                current: hard,
                maximum: hard,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => {
                    tracing::debug!(from = ?limit.current, to = ?hard, "raised the open-files limit");
                    return hard;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot raise the open-files limit to its hard limit")
                }
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    {
        let _ = wanted;
        None
    }
}

/// `fs.nr_open`: the most a privileged process may raise its limit to.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `vm.max_map_count`, where the system says.
fn max_map_count() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Mappings the process has now, where the system says.
fn maps_in_use() -> Option<u64> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
}

/// Raises the open-files limit, then checks that `cells` cells (and the
/// pool `sizing`, when the host pools its instances) fit the system's
/// limits; an error names the limit and how to raise it (and is logged).
pub fn check(cells: usize, sizing: Option<&PoolSizing>) -> Result<(), ConfigError> {
    let open_files = raise_open_files(open_files_needed(cells));
    let result = check_against(
        cells,
        sizing,
        open_files,
        max_map_count(),
        maps_in_use().unwrap_or(0),
    );
    if let Err(error) = &result {
        tracing::error!(cells, %error, "the system cannot hold the cells asked for");
    }
    result
}

/// [`check`] against given limits.
pub(crate) fn check_against(
    cells: usize,
    sizing: Option<&PoolSizing>,
    open_files: Option<u64>,
    max_map_count: Option<u64>,
    maps_in_use: u64,
) -> Result<(), ConfigError> {
    let needed = open_files_needed(cells);
    if let Some(limit) = open_files
        && needed > limit
    {
        return Err(ConfigError::FileDescriptors {
            cells,
            needed,
            limit,
        });
    }
    let Some(sizing) = sizing else {
        return Ok(());
    };
    let needed = sizing.estimated_maps() as u64 + maps_in_use + MAPS_MARGIN;
    if let Some(limit) = max_map_count
        && needed > limit
    {
        return Err(ConfigError::MapCount {
            cells,
            needed,
            limit,
        });
    }
    let space = sizing.address_space_bytes();
    if space > ADDRESS_SPACE_LIMIT {
        return Err(ConfigError::AddressSpace {
            cells,
            memory_mib: (sizing.max_memory_size() >> 20) as u64,
            needed_gib: u64::try_from(space >> 30).unwrap_or(u64::MAX),
            limit_gib: (ADDRESS_SPACE_LIMIT >> 30) as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::SandboxLimits;

    #[test]
    fn too_few_open_files_name_the_limit_and_the_need() {
        let error = check_against(1_000, None, Some(1_024), None, 0).unwrap_err();
        assert_eq!(
            error,
            ConfigError::FileDescriptors {
                cells: 1_000,
                needed: 2_024,
                limit: 1_024
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("RLIMIT_NOFILE") && text.contains("ulimit -Hn 2024"),
            "{text}"
        );
        assert!(check_against(1_000, None, Some(2_024), None, 0).is_ok());
        assert!(check_against(1_000, None, None, None, 0).is_ok());
    }

    #[test]
    fn too_few_mappings_and_too_little_address_space_are_refused() {
        // 10,000 cells fit the kernel's default limit; not a smaller one.
        let sizing = PoolSizing::new(10_000, &SandboxLimits::default());
        assert!(check_against(10_000, Some(&sizing), None, Some(65_530), 200).is_ok());
        let error = check_against(10_000, Some(&sizing), None, Some(32_768), 200).unwrap_err();
        assert!(
            matches!(error, ConfigError::MapCount { limit: 32_768, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("sysctl -w vm.max_map_count="));

        let huge = SandboxLimits::new(std::time::Duration::from_millis(500), 4_096);
        let sizing = PoolSizing::new(10_000, &huge);
        let error = check_against(10_000, Some(&sizing), None, None, 0).unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::AddressSpace {
                    memory_mib: 4_096,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
