//! [`PluginSandbox`]: one plugin, linked once, run in one instance at a time
//! under a CPU deadline and a memory cap, replaced after any failure. Built
//! by [`PluginSandbox::builder`] (see [`super::builder`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::Store;

use super::bindings::exports::cellmesh::cell::guest::Guest;
use super::bindings::{
    CapabilityError, CellState, Manifest, Message, Reply, SyncOutcome, SyncRequest,
};
use super::cache::CacheOutcome;
use super::error::PluginError;
use super::instance::Instances;
pub use super::instance::{SandboxLimits, SandboxStats};
use super::state::HostState;

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

/// One plugin, ready to call. Cheap to share behind an `Arc`; calls are
/// serialised on the one live instance.
pub struct PluginSandbox {
    path: PathBuf,
    manifest: Manifest,
    instances: Instances,
    report: LoadReport,
}

impl std::fmt::Debug for PluginSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSandbox")
            .field("path", &self.path)
            .field("limits", &self.instances.limits())
            .field("cell_id", &self.manifest.cell_id)
            .finish_non_exhaustive()
    }
}

impl PluginSandbox {
    /// A sandbox whose manifest was read from `instances`' live instance.
    pub(super) fn new(
        path: PathBuf,
        manifest: Manifest,
        instances: Instances,
        report: LoadReport,
    ) -> Self {
        Self {
            path,
            manifest,
            instances,
            report,
        }
    }

    /// The manifest read at load time.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The limits calls run under.
    pub fn limits(&self) -> SandboxLimits {
        self.instances.limits()
    }

    /// The plugin file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters: calls, failures, instances.
    pub fn stats(&self) -> &SandboxStats {
        self.instances.stats()
    }

    /// How the plugin was loaded and how long it took.
    pub fn load_report(&self) -> LoadReport {
        self.report
    }

    /// Drops the live instance (waiting for a running call to end), so the
    /// next call runs in a fresh one: e.g. to compare what two instances
    /// answer.
    pub async fn discard_instance(&self) {
        self.instances.discard().await;
    }

    /// Calls `manifest` (the load-time copy is in [`Self::manifest`]).
    pub async fn call_manifest(&self) -> Result<Manifest, PluginError> {
        self.call("manifest", async |guest, store| {
            guest.call_manifest(store).await
        })
        .await
    }

    /// Calls `state`.
    pub async fn state(&self) -> Result<CellState, PluginError> {
        self.call("state", async |guest, store| guest.call_state(store).await)
            .await
    }

    /// Calls `handle-message`.
    pub async fn handle_message(&self, msg: &Message) -> Result<Option<Reply>, PluginError> {
        self.call("handle-message", async |guest, store| {
            guest.call_handle_message(store, msg).await
        })
        .await
    }

    /// Calls `sync`.
    pub async fn sync(&self, req: &SyncRequest) -> Result<SyncOutcome, PluginError> {
        self.call("sync", async |guest, store| {
            guest.call_sync(store, req).await
        })
        .await
    }

    /// Calls `evolve`; a non-finite level is an [`PluginError::InvalidOutput`].
    pub async fn evolve(&self, elapsed_ms: u64) -> Result<f64, PluginError> {
        let level = self
            .call("evolve", async |guest, store| {
                guest.call_evolve(store, elapsed_ms).await
            })
            .await?;
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
        self.call("invoke", async |guest, store| {
            guest.call_invoke(store, capability, input).await
        })
        .await
    }

    /// Calls `shutdown`.
    pub async fn shutdown(&self) -> Result<(), PluginError> {
        self.call("shutdown", async |guest, store| {
            guest.call_shutdown(store).await
        })
        .await
    }

    /// Runs one export in the live instance (see [`Instances::call`]).
    async fn call<R>(
        &self,
        export: &'static str,
        call: impl AsyncFnOnce(&Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        self.instances
            .call(Some(&self.manifest.cell_id), export, call)
            .await
    }
}
