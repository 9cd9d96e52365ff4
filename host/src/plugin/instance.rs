//! One plugin's instances: [`Instances`] makes them from the linked
//! component and runs one call at a time in the live one through a [`Call`]
//! guard, under the bounds of [`SandboxLimits`]: the CPU deadline (epoch
//! interruption), the wall-clock bound (the call's future dropped, which
//! drops its fiber), the same bound on waiting for the instance, and the
//! memory cap. Every replacement of the instance is counted by cause in
//! [`SandboxStats`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::{Mutex, MutexGuard};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::exports::cellmesh::cell::guest::Guest;
use super::bindings::{Cell, CellPre};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::limits::SandboxLimits;
use super::state::{HostServices, HostState};
use super::stats::{ResetCause, SandboxStats};

/// A boxed future borrowing the store for `'a`.
pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One export call, ready to run: given the guest interface and the store
/// of the live instance, the call's future. Owned and `Send`, so that a
/// call can run on a task of its own (see [`super::PluginSandbox`]).
pub(super) type ExportCall<R> = Box<
    dyn for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send,
>;

/// Makes an [`ExportCall`] from a closure, giving the closure its
/// higher-ranked signature.
pub(super) fn export_call<R, F>(call: F) -> ExportCall<R>
where
    F: for<'a> FnOnce(&'a Guest, &'a mut Store<HostState>) -> BoxFuture<'a, wasmtime::Result<R>>
        + Send
        + 'static,
{
    Box::new(call)
}

/// An instance and its store.
struct LiveInstance {
    store: Store<HostState>,
    bindings: Cell,
    /// Set while a call runs: an instance dropped with it set belonged to
    /// a call that never finished, so it may be inconsistent.
    in_call: bool,
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
    /// time), and waiting for it is bounded by the wall-clock bound.
    live: Mutex<Option<LiveInstance>>,
    /// The export running now and since when, for [`Instances::running_call`].
    running: std::sync::Mutex<Option<(&'static str, Instant)>>,
    stats: Arc<SandboxStats>,
}

/// One call in progress: the instance lock, and the instance itself, taken
/// out of it while the plugin runs with its deadline armed. Only a success
/// puts the instance back; a failure drops it (counted by cause), and so
/// does a call whose future is dropped unfinished (counted as abandoned).
struct Call<'s> {
    instances: &'s Instances,
    slot: MutexGuard<'s, Option<LiveInstance>>,
    live: Option<LiveInstance>,
    cell_id: Option<&'s str>,
    export: &'static str,
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
            running: std::sync::Mutex::new(None),
            stats: Arc::new(SandboxStats::default()),
        }
    }

    pub(super) fn limits(&self) -> SandboxLimits {
        self.limits
    }

    pub(super) fn stats(&self) -> &SandboxStats {
        &self.stats
    }

    /// The export running now and for how long.
    pub(super) fn running_call(&self) -> Option<(&'static str, std::time::Duration)> {
        self.running_slot()
            .map(|(export, since)| (export, since.elapsed()))
    }

    fn running_slot(&self) -> Option<(&'static str, Instant)> {
        *self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_running(&self, running: Option<(&'static str, Instant)>) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = running;
    }

    /// Drops the live instance, waiting for a running call to end (at most
    /// the wall-clock bound).
    pub(super) async fn discard(&self) {
        *self.live.lock().await = None;
    }

    /// Calls one export: `call` gets the guest interface and the store of
    /// the live instance (made first if there is none). Waiting for the
    /// instance and running the call (instantiation included) are each
    /// bounded by the wall-clock bound. `cell_id` tags the failure log when
    /// known.
    pub(super) async fn call<R>(
        &self,
        cell_id: Option<&str>,
        export: &'static str,
        call: ExportCall<R>,
    ) -> Result<R, PluginError> {
        let wall = self.limits.call_wall_timeout;
        let Ok(slot) = tokio::time::timeout(wall, self.live.lock()).await else {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                cell_id,
                export,
                waited_ms = wall.as_millis() as u64,
                "plugin instance busy; call refused"
            );
            return Err(PluginError::Busy {
                export,
                waited: wall,
            });
        };
        let mut guard = Call {
            instances: self,
            slot,
            live: None,
            cell_id,
            export,
        };
        match tokio::time::timeout(wall, guard.run(call)).await {
            Ok(result) => result,
            // The call's future, and with it the fiber, is dropped here.
            Err(_) => guard.fail(
                PluginError::WallTimeout {
                    export,
                    limit: wall,
                },
                ResetCause::WallTimeout,
                "ran past its wall-clock bound",
            ),
        }
    }

    /// Names what happened to a failed call, and the reset it causes.
    fn classify(
        &self,
        export: &'static str,
        error: &wasmtime::Error,
        state: &HostState,
    ) -> (PluginError, ResetCause) {
        let trap = error.downcast_ref::<Trap>().copied();
        if state.limiter.hit {
            let error = PluginError::MemoryExceeded {
                export,
                limit_mib: self.limits.memory_limit_mib(),
            };
            return (error, ResetCause::Memory);
        }
        if trap == Some(Trap::Interrupt) {
            let error = PluginError::Timeout {
                export,
                limit: self.limits.call_timeout,
            };
            return (error, ResetCause::CpuDeadline);
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
        (PluginError::Trapped { export, detail }, ResetCause::Trap)
    }

    /// Creates a fresh store and instance.
    async fn instantiate(&self) -> Result<LiveInstance, PluginError> {
        let engine = self.engine.engine();
        let mut store = Store::new(
            engine,
            HostState::new(self.services.clone(), &self.limits, self.stats.clone()),
        );
        store.limiter(|state| &mut state.limiter);
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
        let instantiated = self.pre.instantiate_async(&mut store).await;
        self.record_peak(&store);
        let bindings = instantiated.map_err(|error| {
            match self.classify("instantiate", &error, store.data()).0 {
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

    fn record_peak(&self, store: &Store<HostState>) {
        let peak = store.data().limiter.peak_bytes as u64;
        self.stats
            .peak_memory_bytes
            .fetch_max(peak, Ordering::Relaxed);
    }
}

impl Call<'_> {
    /// Takes the live instance (a fresh one if there is none), arms the
    /// deadline and the send budget, runs `call` and finishes.
    async fn run<R>(&mut self, call: ExportCall<R>) -> Result<R, PluginError> {
        let instances = self.instances;
        instances.set_running(Some((self.export, Instant::now())));
        let live = match self.slot.take() {
            Some(live) => live,
            None => match instances.instantiate().await {
                Ok(live) => live,
                Err(error) => {
                    instances.stats.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
            },
        };
        let live = self.live.insert(live);
        live.in_call = true;
        live.store.data_mut().arm();
        live.store.set_epoch_deadline(1);
        instances.stats.calls.fetch_add(1, Ordering::Relaxed);
        let result = call(live.bindings.cellmesh_cell_guest(), &mut live.store).await;
        self.finish(result)
    }

    /// Disarms the deadline and puts the instance back; on failure
    /// classifies it and drops the instance instead.
    fn finish<R>(&mut self, result: wasmtime::Result<R>) -> Result<R, PluginError> {
        let instances = self.instances;
        let Some(mut live) = self.live.take() else {
            unreachable!("finish runs after the instance was taken")
        };
        live.in_call = false;
        instances.record_peak(&live.store);
        match result {
            Ok(value) => {
                live.store.data_mut().deadline = None;
                *self.slot = Some(live);
                Ok(value)
            }
            Err(error) => {
                let (failure, cause) = instances.classify(self.export, &error, live.store.data());
                self.live = Some(live);
                let detail = format!("{error:#}");
                self.fail(failure, cause, &detail)
            }
        }
    }

    /// Drops the instance (if the call had one) after a failure, counting
    /// the failure and the reset.
    fn fail<R>(
        &mut self,
        failure: PluginError,
        cause: ResetCause,
        detail: &str,
    ) -> Result<R, PluginError> {
        let stats = &self.instances.stats;
        stats.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(live) = self.live.take() {
            self.instances.record_peak(&live.store);
            stats.record_reset(cause, self.export);
            drop(live);
        }
        tracing::warn!(
            cell_id = self.cell_id,
            export = self.export,
            kind = failure.kind(),
            reset = cause.as_str(),
            error = %detail,
            "plugin call failed; replacing the instance"
        );
        Err(failure)
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.instances.set_running(None);
        if let Some(live) = self.live.take()
            && live.in_call
        {
            self.instances
                .stats
                .record_reset(ResetCause::Abandoned, self.export);
            tracing::warn!(
                cell_id = self.cell_id,
                export = self.export,
                reset = ResetCause::Abandoned.as_str(),
                "a plugin call was abandoned mid-way; the next call gets a fresh instance"
            );
        }
    }
}
