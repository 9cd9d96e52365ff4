//! [`PluginSandbox`]: one plugin, linked once, run in one instance at a time
//! under a CPU deadline and a memory cap, replaced after any failure.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{
    CapabilityError, Cell, CellPre, CellState, Manifest, Message, Reply, SyncOutcome, SyncRequest,
};
use super::cache::{CacheOutcome, ComponentCache};
use super::engine::PluginEngine;
use super::error::{LoadError, PluginError};
use super::state::{HostServices, HostState};
use super::validate;

/// Limits every call and instance of a sandbox runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// CPU deadline of one call.
    pub call_timeout: Duration,
    /// Memory cap of one instance, in bytes.
    pub memory_limit_bytes: usize,
}

impl SandboxLimits {
    /// The memory cap in MiB, for messages.
    pub fn memory_limit_mib(&self) -> u64 {
        (self.memory_limit_bytes / (1024 * 1024)) as u64
    }
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(crate::config::DEFAULT_CALL_TIMEOUT_MS),
            memory_limit_bytes: (crate::config::DEFAULT_MEMORY_LIMIT_MB as usize) << 20,
        }
    }
}

/// How a plugin file was turned into a component, for logs and benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    /// Whether the compiled form came from the cache.
    pub cache: CacheOutcome,
    /// Reading, hashing and compiling or deserialising the file.
    pub compile: Duration,
    /// Linking (`instantiate_pre`), instantiating and reading the manifest.
    pub instantiate: Duration,
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

/// How [`PluginSandbox::load_with`] treats a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Refuse a manifest that breaks the contract's rules
    /// ([`validate::manifest_problems`]). On by default; the conformance
    /// suite turns it off so that a plugin with an invalid manifest still
    /// gets its behavioural checks (it reports the manifest's problems
    /// itself).
    pub validate_manifest: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            validate_manifest: true,
        }
    }
}

/// The live instance and its store.
struct LiveInstance {
    store: Store<HostState>,
    bindings: Cell,
    /// Set while a call runs; still set at the next call only if the
    /// previous call's future was dropped mid-way (a caller's timeout), in
    /// which case the instance may be inconsistent and is replaced.
    in_call: bool,
}

/// One plugin, ready to call. Cheap to share behind an `Arc`; calls are
/// serialised on the one live instance.
pub struct PluginSandbox {
    path: PathBuf,
    engine: PluginEngine,
    pre: CellPre<HostState>,
    limits: SandboxLimits,
    services: Arc<dyn HostServices>,
    manifest: Manifest,
    /// The live instance; `None` after a failure until the next call. An
    /// async mutex because a plugin call awaits (fiber yields, `send-message`)
    /// while it holds the store: that is the one lock held across `.await`
    /// in this crate, by design (one store, one caller at a time).
    live: Mutex<Option<LiveInstance>>,
    stats: SandboxStats,
    report: LoadReport,
}

impl std::fmt::Debug for PluginSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSandbox")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("cell_id", &self.manifest.cell_id)
            .finish_non_exhaustive()
    }
}

/// Reads a plugin file and turns it into a component: refuses what is not
/// a component, then compiles it or loads it from `cache`.
pub fn load_component(
    engine: &PluginEngine,
    path: &Path,
    cache: Option<&ComponentCache>,
) -> Result<(Component, CacheOutcome), LoadError> {
    let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
        path: path.into(),
        error,
    })?;
    validate::check_header(path, &bytes)?;
    let invalid = |error: wasmtime::Error| LoadError::Invalid {
        path: path.into(),
        detail: format!("{error:#}"),
    };
    match cache {
        Some(cache) => cache
            .load_or_compile(engine.engine(), &bytes)
            .map_err(invalid),
        None => Component::new(engine.engine(), &bytes)
            .map(|c| (c, CacheOutcome::Uncached))
            .map_err(invalid),
    }
}

impl PluginSandbox {
    /// Loads, checks and instantiates a plugin, reads and validates its
    /// manifest. Every way a file can be unfit is a distinct [`LoadError`].
    pub async fn load(
        engine: &PluginEngine,
        path: &Path,
        cache: Option<&ComponentCache>,
        limits: SandboxLimits,
        services: Arc<dyn HostServices>,
    ) -> Result<Self, LoadError> {
        Self::load_with(
            engine,
            path,
            cache,
            limits,
            services,
            LoadOptions::default(),
        )
        .await
    }

    /// [`PluginSandbox::load`] with explicit [`LoadOptions`].
    pub async fn load_with(
        engine: &PluginEngine,
        path: &Path,
        cache: Option<&ComponentCache>,
        limits: SandboxLimits,
        services: Arc<dyn HostServices>,
        options: LoadOptions,
    ) -> Result<Self, LoadError> {
        let started = Instant::now();
        let (component, cache_outcome) = load_component(engine, path, cache)?;
        let compile = started.elapsed();
        Self::from_component(
            engine,
            path,
            &component,
            (cache_outcome, compile),
            limits,
            services,
            options,
        )
        .await
    }

    /// Checks, links and instantiates a component already compiled by
    /// [`load_component`] (`compiled` says how it was obtained and how long
    /// that took, for [`PluginSandbox::load_report`]), then reads its
    /// manifest. Lets a caller inspect the component (its imports, say)
    /// without compiling it twice.
    pub async fn from_component(
        engine: &PluginEngine,
        path: &Path,
        component: &Component,
        compiled: (CacheOutcome, Duration),
        limits: SandboxLimits,
        services: Arc<dyn HostServices>,
        options: LoadOptions,
    ) -> Result<Self, LoadError> {
        let (cache_outcome, compile) = compiled;
        let linking = Instant::now();
        validate::check_exports(path, engine.engine(), component)?;
        let link = |error: wasmtime::Error| LoadError::Link {
            path: path.into(),
            detail: format!("{error:#}"),
        };
        let instance_pre = engine.linker().instantiate_pre(component).map_err(link)?;
        let pre = CellPre::new(instance_pre).map_err(link)?;
        let mut sandbox = Self {
            path: path.into(),
            engine: engine.clone(),
            pre,
            limits,
            services,
            manifest: placeholder_manifest(),
            live: Mutex::new(None),
            stats: SandboxStats::default(),
            report: LoadReport {
                cache: cache_outcome,
                compile,
                instantiate: Duration::ZERO,
            },
        };
        let manifest = sandbox
            .call_manifest()
            .await
            .map_err(|failure| LoadError::Call {
                path: path.into(),
                failure,
            })?;
        let problems = validate::manifest_problems(&manifest);
        if options.validate_manifest && !problems.is_empty() {
            return Err(LoadError::Manifest {
                path: path.into(),
                problems,
            });
        }
        sandbox.manifest = manifest;
        sandbox.report.instantiate = linking.elapsed();
        Ok(sandbox)
    }

    /// The manifest read at load time.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The limits calls run under.
    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// The plugin file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters: calls, failures, instances.
    pub fn stats(&self) -> &SandboxStats {
        &self.stats
    }

    /// How the plugin was loaded and how long it took.
    pub fn load_report(&self) -> LoadReport {
        self.report
    }

    /// Drops the live instance (waiting for a running call to end), so the
    /// next call runs in a fresh one: e.g. to compare what two instances
    /// answer.
    pub async fn discard_instance(&self) {
        *self.live.lock().await = None;
    }

    /// Calls `manifest` (the load-time copy is in [`Self::manifest`]).
    pub async fn call_manifest(&self) -> Result<Manifest, PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_manifest(&mut live.store)
            .await;
        self.finish(&mut guard, "manifest", result)
    }

    /// Calls `state`.
    pub async fn state(&self) -> Result<CellState, PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_state(&mut live.store)
            .await;
        self.finish(&mut guard, "state", result)
    }

    /// Calls `handle-message`.
    pub async fn handle_message(&self, msg: &Message) -> Result<Option<Reply>, PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_handle_message(&mut live.store, msg)
            .await;
        self.finish(&mut guard, "handle-message", result)
    }

    /// Calls `sync`.
    pub async fn sync(&self, req: &SyncRequest) -> Result<SyncOutcome, PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_sync(&mut live.store, req)
            .await;
        self.finish(&mut guard, "sync", result)
    }

    /// Calls `evolve`; a non-finite level is an [`PluginError::InvalidOutput`].
    pub async fn evolve(&self, elapsed_ms: u64) -> Result<f64, PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_evolve(&mut live.store, elapsed_ms)
            .await;
        let level = self.finish(&mut guard, "evolve", result)?;
        if !level.is_finite() {
            return Err(PluginError::InvalidOutput {
                export: "evolve",
                detail: format!("level {level} is not finite"),
            });
        }
        Ok(level)
    }

    /// Calls `invoke`.
    pub async fn invoke(
        &self,
        capability: &str,
        input: &str,
    ) -> Result<Result<String, CapabilityError>, PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_invoke(&mut live.store, capability, input)
            .await;
        self.finish(&mut guard, "invoke", result)
    }

    /// Calls `shutdown`.
    pub async fn shutdown(&self) -> Result<(), PluginError> {
        let mut guard = self.begin().await?;
        let live = guard.as_mut().expect("begin leaves an instance");
        let result = live
            .bindings
            .cellmesh_cell_guest()
            .call_shutdown(&mut live.store)
            .await;
        self.finish(&mut guard, "shutdown", result)
    }

    /// Takes the instance lock, creates an instance if there is none, and
    /// arms the call deadline.
    async fn begin(&self) -> Result<MutexGuard<'_, Option<LiveInstance>>, PluginError> {
        let mut guard = self.live.lock().await;
        if guard.as_ref().is_some_and(|live| live.in_call) {
            tracing::debug!("the previous plugin call was abandoned; replacing the instance");
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.instantiate().await?);
        }
        let live = guard.as_mut().expect("just filled");
        live.in_call = true;
        let data = live.store.data_mut();
        data.deadline = Some(Instant::now() + self.limits.call_timeout);
        data.memory.hit = false;
        data.stderr.clear();
        live.store.set_epoch_deadline(1);
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        Ok(guard)
    }

    /// Disarms the deadline; on failure classifies it and drops the instance.
    fn finish<R>(
        &self,
        guard: &mut MutexGuard<'_, Option<LiveInstance>>,
        export: &'static str,
        result: wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let live = guard.as_mut().expect("begin leaves an instance");
        live.in_call = false;
        let peak = live.store.data().memory.peak_bytes as u64;
        self.stats
            .peak_memory_bytes
            .fetch_max(peak, Ordering::Relaxed);
        match result {
            Ok(value) => {
                live.store.data_mut().deadline = None;
                Ok(value)
            }
            Err(error) => {
                let failure = self.classify(export, &error, live.store.data());
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    cell_id = %self.manifest.cell_id,
                    export,
                    kind = failure.kind(),
                    error = %format!("{error:#}"),
                    "plugin call failed; replacing the instance"
                );
                **guard = None;
                Err(failure)
            }
        }
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

/// Stands in for the manifest until the real one has been read.
fn placeholder_manifest() -> Manifest {
    Manifest {
        cell_id: String::new(),
        cell_type: String::new(),
        branch: String::new(),
        identity: String::new(),
        evolutionary_stage: String::new(),
        health_status: String::new(),
        capabilities: Vec::new(),
        consciousness_level: 0.0,
        primitives: Vec::new(),
        labels: Vec::new(),
    }
}
