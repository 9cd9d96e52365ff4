//! One plugin's instances: [`Instances`] makes them from the linked
//! component and runs one call at a time in the live one through a [`Call`]
//! guard, under the CPU deadline and memory cap of [`SandboxLimits`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::exports::cellmesh::cell::guest::Guest;
use super::bindings::{Cell, CellPre};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::state::{HostServices, HostState};

/// Limits every call and instance of a sandbox runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// CPU deadline of one call.
    pub call_timeout: Duration,
    /// Memory cap of one instance, in bytes.
    pub memory_limit_bytes: usize,
}

impl SandboxLimits {
    /// Default CPU deadline of one call.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(500);
    /// Default memory cap of one instance, in MiB.
    pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 64;

    /// Limits from a deadline and a memory cap in MiB (a cap too large
    /// for this machine's address space saturates).
    pub fn new(call_timeout: Duration, memory_limit_mib: u64) -> Self {
        Self {
            call_timeout,
            memory_limit_bytes: usize::try_from(memory_limit_mib.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
        }
    }

    /// The memory cap in MiB, for messages.
    pub fn memory_limit_mib(&self) -> u64 {
        (self.memory_limit_bytes / (1024 * 1024)) as u64
    }
}

impl Default for SandboxLimits {
    /// 500 ms per call, 64 MiB per instance.
    fn default() -> Self {
        Self::new(Self::DEFAULT_CALL_TIMEOUT, Self::DEFAULT_MEMORY_LIMIT_MIB)
    }
}

/// Counters of a sandbox's life.
#[derive(Debug, Default)]
pub struct SandboxStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed (trap, deadline, memory).
    pub failures: AtomicU64,
    /// Instances created, the first included.
    pub instances: AtomicU64,
    /// The largest size, in bytes, any one linear memory of any instance
    /// has grown to (the memory cap applies to each memory).
    pub peak_memory_bytes: AtomicU64,
}

/// An instance and its store.
struct LiveInstance {
    store: Store<HostState>,
    bindings: Cell,
    /// Set while a call runs. An instance dropped with it set belonged to
    /// an abandoned call (its future dropped mid-way, by a caller's
    /// timeout say): it may be inconsistent, so it never goes back.
    in_call: bool,
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        if self.in_call {
            tracing::debug!("a plugin call was abandoned; the next call gets a fresh instance");
        }
    }
}

/// Makes a plugin's instances and runs its calls, one at a time, in the
/// live one; replaces the instance after any failure.
pub(super) struct Instances {
    engine: PluginEngine,
    pre: CellPre<HostState>,
    limits: SandboxLimits,
    services: Arc<dyn HostServices>,
    /// The live instance; `None` until the first call and after a failure.
    /// An async mutex because a plugin call awaits (fiber yields,
    /// `send-message`) while it holds the store: that is the one lock held
    /// across `.await` in this crate, by design (one store, one caller at a
    /// time).
    live: Mutex<Option<LiveInstance>>,
    stats: SandboxStats,
}

/// One call in progress: the instance lock, and the instance itself, taken
/// out of it while the plugin runs with its deadline armed. Only
/// [`Call::finish`] with a success puts the instance back; a failure drops
/// it, and so does an abandoned call (the guard dropped unfinished).
struct Call<'s> {
    instances: &'s Instances,
    slot: MutexGuard<'s, Option<LiveInstance>>,
    live: LiveInstance,
}

impl Instances {
    /// Instances of the linked component `pre`; none is made yet.
    pub(super) fn new(
        engine: PluginEngine,
        pre: CellPre<HostState>,
        limits: SandboxLimits,
        services: Arc<dyn HostServices>,
    ) -> Self {
        Self {
            engine,
            pre,
            limits,
            services,
            live: Mutex::new(None),
            stats: SandboxStats::default(),
        }
    }

    pub(super) fn limits(&self) -> SandboxLimits {
        self.limits
    }

    pub(super) fn stats(&self) -> &SandboxStats {
        &self.stats
    }

    /// Drops the live instance, waiting for a running call to end.
    pub(super) async fn discard(&self) {
        *self.live.lock().await = None;
    }

    /// Calls one export: `call` gets the guest interface and the store of
    /// the live instance (made first if there is none). `cell_id` tags the
    /// failure log when known.
    pub(super) async fn call<R>(
        &self,
        cell_id: Option<&str>,
        export: &'static str,
        call: impl AsyncFnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let mut guard = self.begin().await?;
        let live = &mut guard.live;
        let result = call(live.bindings.cellmesh_cell_guest(), &mut live.store).await;
        guard.finish(cell_id, export, result)
    }

    /// Takes the instance lock and the instance (a fresh one if there is
    /// none), and arms the call deadline.
    async fn begin(&self) -> Result<Call<'_>, PluginError> {
        let mut slot = self.live.lock().await;
        let mut live = match slot.take() {
            Some(live) => live,
            None => self.instantiate().await?,
        };
        live.in_call = true;
        let data = live.store.data_mut();
        data.deadline = Some(Instant::now() + self.limits.call_timeout);
        data.memory.hit = false;
        data.stderr.clear();
        live.store.set_epoch_deadline(1);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Call {
            instances: self,
            slot,
            live,
        })
    }

    /// Names what happened to a failed call.
    fn classify(
        &self,
        export: &'static str,
        error: &wasmtime::Error,
        state: &HostState,
    ) -> PluginError {
        let trap = error.downcast_ref::<Trap>().copied();
        if state.memory.hit {
            return PluginError::MemoryExceeded {
                export,
                limit_mib: self.limits.memory_limit_mib(),
            };
        }
        if trap == Some(Trap::Interrupt) {
            return PluginError::Timeout {
                export,
                limit: self.limits.call_timeout,
            };
        }
        let mut detail = match trap {
            Some(trap) => trap.to_string(),
            None => format!("{error:#}"),
        };
        let stderr = state.stderr.text();
        if !stderr.is_empty() {
            detail.push_str("; plugin stderr: ");
            detail.push_str(&stderr);
        }
        PluginError::Trapped { export, detail }
    }

    /// Creates a fresh store and instance.
    async fn instantiate(&self) -> Result<LiveInstance, PluginError> {
        let engine = self.engine.engine();
        let mut store = Store::new(
            engine,
            HostState::new(self.services.clone(), self.limits.memory_limit_bytes),
        );
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_callback(|ctx| {
            let expired = ctx.data().deadline.is_none_or(|d| Instant::now() >= d);
            Ok(if expired {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        // Instantiation runs the component's start functions: bound them too.
        store.data_mut().deadline = Some(Instant::now() + self.limits.call_timeout);
        store.set_epoch_deadline(1);
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| {
                let state = store.data();
                match self.classify("instantiate", &error, state) {
                    PluginError::Trapped { detail, .. } => PluginError::Instantiate(detail),
                    other => other,
                }
            })?;
        self.stats.instances.fetch_add(1, Ordering::Relaxed);
        Ok(LiveInstance {
            store,
            bindings,
            in_call: false,
        })
    }
}

impl Call<'_> {
    /// Disarms the deadline and puts the instance back; on failure
    /// classifies it and drops the instance instead.
    fn finish<R>(
        self,
        cell_id: Option<&str>,
        export: &'static str,
        result: wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let Call {
            instances,
            mut slot,
            mut live,
        } = self;
        live.in_call = false;
        let peak = live.store.data().memory.peak_bytes as u64;
        instances
            .stats
            .peak_memory_bytes
            .fetch_max(peak, Ordering::Relaxed);
        match result {
            Ok(value) => {
                live.store.data_mut().deadline = None;
                *slot = Some(live);
                Ok(value)
            }
            Err(error) => {
                let failure = instances.classify(export, &error, live.store.data());
                instances.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    cell_id,
                    export,
                    kind = failure.kind(),
                    error = %format!("{error:#}"),
                    "plugin call failed; replacing the instance"
                );
                Err(failure)
            }
        }
    }
}
