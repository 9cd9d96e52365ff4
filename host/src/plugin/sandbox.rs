//! [`PluginSandbox`]: one plugin, linked once, run in one instance at a time
//! under the bounds of [`SandboxLimits`], replaced after any failure. Built
//! by [`PluginSandbox::builder`] (see [`super::builder`]).
//!
//! Every call runs on a task of its own that the caller awaits: a caller
//! that gives up (a client that disconnects, a timeout around the call)
//! never cancels it. The call completes, or hits its own bounds, and its
//! answer is dropped; the instance is never left half-way through a call.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::bindings::{
    CapabilityError, CellState, Manifest, Message, Reply, SyncOutcome, SyncRequest,
};
use super::cache::CacheOutcome;
use super::error::PluginError;
use super::instance::{ExportCall, Instances, export_call};
pub use super::limits::SandboxLimits;
use super::output;
pub use super::stats::SandboxStats;

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
    instances: Arc<Instances>,
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
            instances: Arc::new(instances),
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

    /// Counters: calls, failures, instances, resets by cause
    /// ([`SandboxStats::resets`]).
    pub fn stats(&self) -> &SandboxStats {
        self.instances.stats()
    }

    /// The export running now and for how long, if a call is running: a
    /// plugin stuck in a call shows here long before its call ends.
    pub fn running_call(&self) -> Option<(&'static str, Duration)> {
        self.instances.running_call()
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
        self.call(
            "manifest",
            export_call(|guest, store| Box::pin(guest.call_manifest(store))),
        )
        .await
    }

    /// Calls `state`; a value past the size limits of [`super::output`] is
    /// an [`PluginError::InvalidOutput`].
    pub async fn state(&self) -> Result<CellState, PluginError> {
        let state = self
            .call(
                "state",
                export_call(|guest, store| Box::pin(guest.call_state(store))),
            )
            .await?;
        self.checked(output::check_state(&state))?;
        Ok(state)
    }

    /// Calls `handle-message`; a reply past the size limits is an
    /// [`PluginError::InvalidOutput`].
    pub async fn handle_message(&self, msg: &Message) -> Result<Option<Reply>, PluginError> {
        let msg = msg.clone();
        let reply = self
            .call(
                "handle-message",
                export_call(move |guest, store| {
                    Box::pin(async move { guest.call_handle_message(store, &msg).await })
                }),
            )
            .await?;
        self.checked(output::check_reply(&reply))?;
        Ok(reply)
    }

    /// Calls `sync`; an outcome past the size limits is an
    /// [`PluginError::InvalidOutput`].
    pub async fn sync(&self, req: &SyncRequest) -> Result<SyncOutcome, PluginError> {
        let req = req.clone();
        let outcome = self
            .call(
                "sync",
                export_call(move |guest, store| {
                    Box::pin(async move { guest.call_sync(store, &req).await })
                }),
            )
            .await?;
        self.checked(output::check_sync(&outcome))?;
        Ok(outcome)
    }

    /// Calls `evolve`; a non-finite level is an [`PluginError::InvalidOutput`].
    pub async fn evolve(&self, elapsed_ms: u64) -> Result<f64, PluginError> {
        let level = self
            .call(
                "evolve",
                export_call(move |guest, store| Box::pin(guest.call_evolve(store, elapsed_ms))),
            )
            .await?;
        if !level.is_finite() {
            return self.checked(Err(PluginError::InvalidOutput {
                export: "evolve",
                detail: format!("level {level} is not finite"),
            }));
        }
        Ok(level)
    }

    /// Calls `invoke`; an output or error text past the size limits is an
    /// [`PluginError::InvalidOutput`].
    pub async fn invoke(
        &self,
        capability: &str,
        input: &str,
    ) -> Result<Result<String, CapabilityError>, PluginError> {
        let (capability, input) = (capability.to_owned(), input.to_owned());
        let output = self
            .call(
                "invoke",
                export_call(move |guest, store| {
                    Box::pin(async move { guest.call_invoke(store, &capability, &input).await })
                }),
            )
            .await?;
        self.checked(output::check_invoke(&output))?;
        Ok(output)
    }

    /// Calls `shutdown`.
    pub async fn shutdown(&self) -> Result<(), PluginError> {
        self.call(
            "shutdown",
            export_call(|guest, store| Box::pin(guest.call_shutdown(store))),
        )
        .await
    }

    /// Counts a refused answer as a failure.
    fn checked<T>(&self, check: Result<T, PluginError>) -> Result<T, PluginError> {
        if let Err(error) = &check {
            self.stats()
                .failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                cell_id = %self.manifest.cell_id,
                kind = error.kind(),
                %error,
                "plugin answer refused"
            );
        }
        check
    }

    /// Runs one export in the live instance (see [`Instances::call`]) on a
    /// task of its own, so that dropping the returned future never cancels
    /// the call.
    async fn call<R: Send + 'static>(
        &self,
        export: &'static str,
        call: ExportCall<R>,
    ) -> Result<R, PluginError> {
        let instances = Arc::clone(&self.instances);
        let cell_id = self.manifest.cell_id.clone();
        let task = tokio::spawn(async move { instances.call(Some(&cell_id), export, call).await });
        task.await.unwrap_or_else(|error| {
            Err(PluginError::Trapped {
                export,
                detail: format!("the host task running the call ended without an answer: {error}"),
            })
        })
    }
}
