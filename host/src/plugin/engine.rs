//! The one wasmtime [`Engine`] and [`Linker`] of a process, and the epoch
//! ticker that drives call deadlines.
//!
//! A host of one cell uses the on-demand allocator ([`PluginEngine::new`]).
//! A host of many cells uses the pooling allocator
//! ([`PluginEngine::pooled`]), sized by [`PoolSizing`] from the cell count
//! and what one cell may use at most: every instance then comes from slots
//! reserved once, instead of mappings made and unmade per instance, and the
//! host knows up front how much address space and how many mappings its
//! cells need.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, PoolingAllocationConfig};

use super::bindings::Cell;
use super::limits::SandboxLimits;
use super::state::HostState;

/// How often the epoch advances; the granularity of call deadlines and of
/// the cooperative yields a long-running call makes.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine configuration every plugin runs under: component model,
/// epoch interruption (deadlines), async calls (so deadlines can yield).
pub fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// How many cells a pooled engine holds and what one cell may use at most;
/// every pool of the allocator is sized from it ([`Self::pooling_config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizing {
    /// Cells of the host.
    pub cells: usize,
    /// Most core instances one cell's instance may create (the store
    /// limiter's [`SandboxLimits::max_instances`]).
    pub core_instances_per_cell: u32,
    /// Most linear memories one cell's instance may create.
    pub memories_per_cell: u32,
    /// Most tables one cell's instance may create.
    pub tables_per_cell: u32,
    /// The largest memory cap of any cell, in bytes (each cell's own cap is
    /// still enforced by its store limiter).
    pub max_memory_bytes: usize,
}

impl PoolSizing {
    /// Guard region after each linear memory. Memories are reserved at
    /// their cap rather than at 4 GiB, so bounds are checked explicitly;
    /// the guard only spares the check of small static offsets, and a
    /// small one keeps 10,000 cells within the address space.
    pub const MEMORY_GUARD: u64 = 2 << 20;
    /// Smallest reservation of one linear memory.
    pub const MIN_MEMORY_RESERVATION: u64 = 16 << 20;
    /// Elements of one pooled table (wasmtime's default).
    pub const TABLE_ELEMENTS: usize = 20_000;
    /// Stack of one call on its fiber (wasmtime's default async stack).
    pub const STACK_BYTES: u64 = 2 << 20;
    /// Mappings (`/proc/PID/maps` lines) one fiber stack of the pool adds
    /// from the start: the stack and its guard page.
    pub const MAPS_PER_STACK: usize = 2;
    /// Mappings one linear memory in use adds, measured: its part below
    /// the data image, the image, the rest of its accessible part, and its
    /// reserve.
    pub const MAPS_PER_MEMORY: usize = 4;
    /// Memory slots wasmtime keeps warm (their image still mapped) once
    /// their instance is gone (its `max_unused_warm_slots` default).
    pub const WARM_SLOTS: usize = 100;

    /// The sizing for `cells` cells whose largest limits are `limits` (the
    /// caller takes the maximum of every field over its cells).
    pub fn new(cells: usize, limits: &SandboxLimits) -> Self {
        let count = |n: usize| u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        Self {
            cells: cells.max(1),
            core_instances_per_cell: count(limits.max_instances),
            memories_per_cell: count(limits.max_memories),
            tables_per_cell: count(limits.max_tables),
            max_memory_bytes: limits.memory_limit_bytes,
        }
    }

    /// Slots beyond one per cell: an instance being replaced after a
    /// failure may briefly overlap its successor.
    pub fn headroom(&self) -> usize {
        (self.cells / 16).max(4)
    }

    /// Component instances (and fiber stacks) the pool holds: one per cell
    /// plus [`Self::headroom`].
    pub fn slots(&self) -> usize {
        self.cells.saturating_add(self.headroom())
    }

    /// The largest linear memory, rounded up to whole 64 KiB wasm pages.
    pub fn max_memory_size(&self) -> usize {
        const PAGE: usize = 64 << 10;
        self.max_memory_bytes
            .max(PAGE)
            .checked_next_multiple_of(PAGE)
            .unwrap_or(usize::MAX - PAGE + 1)
    }

    /// Address space reserved for one linear memory: the largest cap
    /// rounded up to a power of two (so that nearby caps share compiled
    /// code in the cache), at least [`Self::MIN_MEMORY_RESERVATION`].
    pub fn memory_reservation(&self) -> u64 {
        (self.max_memory_size() as u64)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .max(Self::MIN_MEMORY_RESERVATION)
    }

    /// Linear memories the pool holds.
    pub fn total_memories(&self) -> u64 {
        self.slots() as u64 * u64::from(self.memories_per_cell)
    }

    /// Tables the pool holds.
    pub fn total_tables(&self) -> u64 {
        self.slots() as u64 * u64::from(self.tables_per_cell)
    }

    /// Bytes of address space the pools reserve (memories with their
    /// guards, tables, fiber stacks); nearly all of it never touched.
    pub fn address_space_bytes(&self) -> u128 {
        let memories = u128::from(self.total_memories())
            * u128::from(self.memory_reservation() + Self::MEMORY_GUARD);
        let tables = u128::from(self.total_tables())
            * (Self::TABLE_ELEMENTS * std::mem::size_of::<usize>()) as u128;
        let stacks = self.slots() as u128 * u128::from(Self::STACK_BYTES + 4096);
        memories + tables + stacks
    }

    /// Mappings the pools add to the process with every cell running one
    /// linear memory (as components built by Rust or C toolchains do):
    /// every fiber stack, each cell's memory, the warm slots. A cell with
    /// more memories adds [`Self::MAPS_PER_MEMORY`] for each.
    pub fn estimated_maps(&self) -> usize {
        let stacks = self.slots() * Self::MAPS_PER_STACK;
        let memories = (self.cells + Self::WARM_SLOTS) * Self::MAPS_PER_MEMORY;
        stacks + memories
    }

    /// The allocator configuration: totals are [`Self::slots`] times the
    /// per-cell maxima, and one component may take no more than a cell's
    /// share, so a plugin cannot starve the others of slots.
    pub fn pooling_config(&self) -> PoolingAllocationConfig {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let slots = self.slots() as u64;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(clamp(slots))
            .total_core_instances(clamp(slots * u64::from(self.core_instances_per_cell)))
            .total_memories(clamp(self.total_memories()))
            .total_tables(clamp(self.total_tables()))
            .total_stacks(clamp(slots))
            .max_core_instances_per_component(self.core_instances_per_cell)
            .max_memories_per_component(self.memories_per_cell)
            .max_tables_per_component(self.tables_per_cell)
            .max_memories_per_module(self.memories_per_cell)
            .max_tables_per_module(self.tables_per_cell)
            .table_elements(Self::TABLE_ELEMENTS)
            .max_memory_size(self.max_memory_size());
        pool
    }

    /// [`engine_config`] with the pooling allocator sized for these cells.
    pub fn engine_config(&self) -> Config {
        let mut config = engine_config();
        config
            .allocation_strategy(self.pooling_config())
            .memory_reservation(self.memory_reservation())
            .memory_guard_size(Self::MEMORY_GUARD)
            .memory_reservation_for_growth(0)
            .memory_may_move(false)
            .async_stack_size(Self::STACK_BYTES as usize);
        config
    }
}

/// An engine plus the linker that provides the `host` interface and the
/// (empty-handed) WASI interfaces. Built once per process and shared by
/// every plugin it loads; cloning it is cheap (the linker is shared).
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
}

impl PluginEngine {
    /// Builds the engine and linker and starts the epoch ticker thread,
    /// which holds only a weak reference and stops with the engine.
    pub fn new() -> wasmtime::Result<Self> {
        Self::with_config(&engine_config())
    }

    /// An engine with the pooling allocator sized by `sizing`, for a host
    /// of many cells.
    pub fn pooled(sizing: &PoolSizing) -> wasmtime::Result<Self> {
        Self::with_config(&sizing.engine_config())
    }

    /// Like [`PluginEngine::new`] with a caller's configuration (which must
    /// keep epoch interruption on, or calls would have no deadline), e.g.
    /// to try the pooling allocator.
    pub fn with_config(config: &Config) -> wasmtime::Result<Self> {
        let engine = Engine::new(config)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        Cell::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
        start_epoch_ticker(&engine);
        Ok(Self {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a dedicated thread
/// (so a busy async runtime cannot delay a deadline) until the engine is
/// dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("cellmesh-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "cannot start the epoch ticker; plugin calls will have no deadline");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_for_ten_thousand_default_cells_fits_the_address_space() {
        let sizing = PoolSizing::new(10_000, &SandboxLimits::default());
        assert_eq!(sizing.slots(), 10_625);
        assert_eq!(sizing.max_memory_size(), 64 << 20);
        assert_eq!(sizing.memory_reservation(), 64 << 20);
        // x86-64 user space is 128 TiB; the pool stays far below.
        assert!(sizing.address_space_bytes() < 16u128 << 40);
        assert!(sizing.estimated_maps() < 65_530);
    }

    #[test]
    fn reservations_round_up_and_never_fall_below_the_cap() {
        let limits = SandboxLimits::new(Duration::from_millis(500), 3);
        let sizing = PoolSizing::new(2, &limits);
        assert_eq!(sizing.max_memory_size(), 3 << 20);
        assert_eq!(
            sizing.memory_reservation(),
            PoolSizing::MIN_MEMORY_RESERVATION
        );
        let limits = SandboxLimits::new(Duration::from_millis(500), 100);
        let sizing = PoolSizing::new(2, &limits);
        assert_eq!(sizing.memory_reservation(), 128 << 20);
        assert!(sizing.memory_reservation() >= sizing.max_memory_size() as u64);
        assert_eq!(sizing.headroom(), 4);
    }
}
