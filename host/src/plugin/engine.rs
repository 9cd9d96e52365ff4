//! The one wasmtime [`Engine`] and [`Linker`] of a process, and the epoch
//! ticker that drives call deadlines.

use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::Cell;
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

/// An engine plus the linker that provides the `host` interface and the
/// (empty-handed) WASI interfaces. Built once per process and shared by
/// every plugin it loads.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
}

impl PluginEngine {
    /// Builds the engine and linker and starts the epoch ticker thread,
    /// which holds only a weak reference and stops with the engine.
    pub fn new() -> wasmtime::Result<Self> {
        Self::with_config(&engine_config())
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
        Ok(Self { engine, linker })
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
