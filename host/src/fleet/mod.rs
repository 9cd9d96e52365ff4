//! Many cells in one host: each cell keeps the original cell contract on a
//! listener of its own, while the host shares everything that need not be
//! per cell: one engine (the pooling allocator for many cells), each
//! plugin file compiled and linked once, one set of HTTP clients, one
//! mesh view, one liveness task for all cells ([`crate::liveness`]), one
//! admin API ([`crate::admin`]).
//!
//! - [`spec`]: [`CellSpec`], the cells to run, from the flags or a cells
//!   file.
//! - `load`: each distinct plugin file read, hashed and compiled once.
//! - `os_limits`: open files, memory mappings and address space, checked
//!   before anything is loaded.
//! - `start`: [`Fleet::start`], every cell built, its failures kept in its
//!   slot.
//! - `serve`: [`Fleet::serve`], serving and the shutdown order.
//! - [`slot`]: [`CellSlot`], one cell asked for and what became of it.
//!
//! [`run`] is the whole host of many cells, driven by a [`FleetConfig`].

mod load;
pub mod os_limits;
mod serve;
pub mod slot;
pub mod spec;
mod start;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use slot::{CellSlot, SlotState};
pub use spec::{CellSpec, MAX_CELLS, PortRange};
pub use start::STARTUP_CONCURRENCY;

use crate::cell::CellRuntime;
use crate::config::FleetConfig;
use crate::discovery_client::DiscoveryClient;
use crate::error::Error;
use crate::plugin::PluginEngine;

/// A cell built and bound, ready to serve.
#[derive(Debug)]
struct ReadyCell {
    slot: Arc<CellSlot>,
    cell: Arc<CellRuntime>,
    listener: TcpListener,
}

/// A host of many cells, started ([`Fleet::start`]) and ready to serve
/// ([`Fleet::serve`]).
pub struct Fleet {
    config: FleetConfig,
    slots: Vec<Arc<CellSlot>>,
    ready: Vec<ReadyCell>,
    discovery: DiscoveryClient,
    admin: Option<TcpListener>,
    /// Kept for the host's lifetime (its epoch ticker drives deadlines).
    engine: PluginEngine,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("host_id", &self.config.host_id)
            .field("cells", &self.slots.len())
            .field("running", &self.ready.len())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Every cell the host was asked to run, in order (index = position).
    pub fn slots(&self) -> &[Arc<CellSlot>] {
        &self.slots
    }

    /// The host's failure-domain name.
    pub fn host_id(&self) -> &str {
        &self.config.host_id
    }

    /// The address the admin API listens on, when asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address cell `index`'s API listens on, when it was bound.
    pub fn local_addr(&self, index: usize) -> Option<SocketAddr> {
        self.ready
            .iter()
            .find(|ready| ready.slot.index == index)
            .and_then(|ready| ready.listener.local_addr().ok())
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The engine every cell runs in.
    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }
}

/// How a host of many cells ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEnd {
    /// Stopped on request; how many cells were running and failed then.
    Stopped {
        /// Cells still running.
        running: usize,
        /// Cells that had failed.
        failed: usize,
    },
    /// Every cell failed (at start or later): the host ended by itself.
    AllFailed {
        /// The cells, all failed.
        cells: usize,
        /// `#INDEX NAME: reason` of the first few.
        reasons: Vec<String>,
    },
}

/// How many failure reasons [`FleetEnd::AllFailed`] keeps.
const REASONS_KEPT: usize = 5;

impl FleetEnd {
    /// Whether every cell failed (the process then exits non-zero).
    pub fn all_failed(&self) -> bool {
        matches!(self, FleetEnd::AllFailed { .. })
    }

    /// The end of a host whose cells are `slots`, stopped now.
    fn of(slots: &[Arc<CellSlot>]) -> Self {
        let failed: Vec<&Arc<CellSlot>> = slots.iter().filter(|s| s.is_failed()).collect();
        if failed.len() == slots.len() {
            let reasons = failed
                .iter()
                .take(REASONS_KEPT)
                .map(|slot| match slot.state() {
                    SlotState::Failed(reason) => format!("#{} {}: {reason}", slot.index, slot.name),
                    SlotState::Running(_) => unreachable!("filtered on failure"),
                })
                .collect();
            FleetEnd::AllFailed {
                cells: slots.len(),
                reasons,
            }
        } else {
            FleetEnd::Stopped {
                running: slots.len() - failed.len(),
                failed: failed.len(),
            }
        }
    }
}

impl fmt::Display for FleetEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FleetEnd::Stopped { running, failed } => {
                write!(f, "stopped: {running} cell(s) running, {failed} failed")
            }
            FleetEnd::AllFailed { cells, reasons } => {
                write!(
                    f,
                    "every cell failed ({cells} of {cells}): {}",
                    reasons.join("; ")
                )?;
                if *cells > reasons.len() {
                    write!(f, "; ...")?;
                }
                Ok(())
            }
        }
    }
}

/// Runs a host of many cells until `shutdown` resolves or every cell has
/// failed, then shuts down cleanly ([`Fleet::start`], [`Fleet::serve`]).
pub async fn run(
    config: FleetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<FleetEnd, Error> {
    Fleet::start(config).await?.serve(shutdown).await
}
