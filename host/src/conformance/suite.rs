//! [`run`]: loads the plugin the way the host does and runs every check in
//! order, the static ones first, then the behavioural ones, `shutdown`
//! last; a check whose prerequisite failed is reported as skipped.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use crate::plugin::bindings::Manifest;
use crate::plugin::{
    CacheOutcome, IsolatedServices, LoadError, PluginEngine, PluginError, PluginSandbox,
    SandboxLimits, load_component,
};

use super::catalogue::CheckId;
use super::error::ConformanceError;
use super::options::ConformanceOptions;
use super::probes::{self, CallRecord, Prober};
use super::report::Report;
use super::result::{CheckResult, Status};
use super::{advisory, component};

/// The collected results, with the first failure that blocks later checks.
#[derive(Default)]
struct Results {
    checks: Vec<CheckResult>,
    blocker: Option<(CheckId, String)>,
}

impl Results {
    fn push(&mut self, result: CheckResult, took: Duration) {
        self.checks.push(result.timed(took));
    }

    /// Records that `id` failed and blocks the checks not run yet.
    fn block(&mut self, id: CheckId, why: impl Into<String>) {
        if self.blocker.is_none() {
            self.blocker = Some((id, why.into()));
        }
    }

    /// Every check not run is a skip naming the blocker.
    fn finish(mut self) -> Vec<CheckResult> {
        let (blocker, why) = self
            .blocker
            .clone()
            .unwrap_or((CheckId::Component, "the plugin could not be loaded".into()));
        for id in CheckId::ALL {
            if !self.checks.iter().any(|c| c.id == id.id()) {
                self.checks.push(CheckResult::skip(id, blocker, &why));
            }
        }
        self.checks
    }
}

/// Runs every check on `plugin`. Never panics on any input: a panic inside
/// a behavioural check is reported as that check's failure. `Err` only
/// when the engine cannot start.
pub async fn run(plugin: &Path, options: &ConformanceOptions) -> Result<Report, ConformanceError> {
    let started = Instant::now();
    let engine = PluginEngine::new()
        .map_err(|e| ConformanceError::Engine(LoadError::Engine(format!("{e:#}"))))?;
    let mut results = Results::default();
    run_checks(&engine, plugin, options, &mut results).await;
    Ok(Report::new(
        plugin.to_path_buf(),
        options.limits.call_timeout.as_millis() as u64,
        options.limits.memory_limit_mib(),
        results.finish(),
        started.elapsed(),
    ))
}

async fn run_checks(
    engine: &PluginEngine,
    plugin: &Path,
    options: &ConformanceOptions,
    results: &mut Results,
) {
    let size = std::fs::metadata(plugin).ok().map(|m| m.len());
    if let Some(size) = size.filter(|_| plugin.is_file()) {
        results.push(advisory::binary_size(size), Duration::ZERO);
    }

    // CM01: read, header, compile.
    let t = Instant::now();
    let (component, cache_outcome) = match load_component(engine, plugin, options.cache.as_ref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            results.push(component::component_failed(&error), t.elapsed());
            results.block(CheckId::Component, "the file is not a loadable component");
            return;
        }
    };
    let compile = t.elapsed();
    results.push(component::component_passed(size, cache_outcome), compile);

    // CM02, CM03: exports.
    let t = Instant::now();
    let (world, exports) = component::world_and_exports(plugin, engine, &component);
    let world_ok = world.status == Status::Pass;
    let exports_ok = exports.as_ref().is_some_and(|e| e.status == Status::Pass);
    results.push(world, t.elapsed());
    if let Some(exports) = exports {
        results.push(exports, Duration::ZERO);
    }

    // CM04: imports, and whether the host can link them.
    let t = Instant::now();
    let linkable = match component::imports(plugin, engine, &component) {
        Ok(result) => {
            results.push(result, t.elapsed());
            true
        }
        Err(result) => {
            results.push(result, t.elapsed());
            false
        }
    };
    if !world_ok {
        results.block(
            CheckId::World,
            "the plugin does not target this host's cell world",
        );
    } else if !exports_ok {
        results.block(CheckId::Exports, "the guest interface is incomplete");
    } else if !linkable {
        results.block(
            CheckId::Imports,
            "this host cannot link the plugin's imports",
        );
    }
    if results.blocker.is_some() {
        results.push(
            advisory::startup_time(cache_outcome, compile, None),
            Duration::ZERO,
        );
        return;
    }

    let t = Instant::now();
    let loaded = load_sandbox(
        engine,
        plugin,
        &component,
        (cache_outcome, compile),
        options.limits,
    )
    .await;
    let load_took = t.elapsed();
    let sandbox = match loaded {
        Ok(sandbox) => sandbox,
        Err(LoadError::Call { path, failure }) => {
            let limit_failure = matches!(
                failure,
                PluginError::Timeout { .. }
                    | PluginError::WallTimeout { .. }
                    | PluginError::Busy { .. }
                    | PluginError::MemoryExceeded { .. }
            );
            let record = CallRecord {
                check: CheckId::Manifest,
                export: "manifest",
                elapsed: load_took,
                failure: Some(failure.clone()),
            };
            let error = LoadError::Call { path, failure };
            results.push(
                CheckResult::fail(
                    CheckId::Manifest,
                    format!("the manifest could not be read: {error}"),
                ),
                load_took,
            );
            if limit_failure {
                let calls = [record];
                results.push(
                    probes::cpu_deadline(&calls, options.limits.call_timeout),
                    Duration::ZERO,
                );
                results.push(
                    probes::memory_cap(&calls, 0, options.limits.memory_limit_mib()),
                    Duration::ZERO,
                );
                results.push(
                    probes::wall_clock(&calls, options.limits.call_wall_timeout),
                    Duration::ZERO,
                );
            }
            results.block(CheckId::Manifest, "the manifest could not be read");
            results.push(
                advisory::startup_time(cache_outcome, compile, None),
                Duration::ZERO,
            );
            return;
        }
        Err(error) => {
            // Imports linked (CM04), so what remains is the exports' types.
            results.push(
                CheckResult::fail(CheckId::Exports, error.to_string()),
                load_took,
            );
            results.block(
                CheckId::Exports,
                "the guest interface does not match the contract",
            );
            results.push(
                advisory::startup_time(cache_outcome, compile, None),
                Duration::ZERO,
            );
            return;
        }
    };
    let manifest = sandbox.manifest().clone();
    let report = sandbox.load_report();
    results.push(probes::manifest(plugin, &manifest), Duration::ZERO);

    let prober = Arc::new(Prober::new(sandbox));
    prober.record(CallRecord {
        check: CheckId::Manifest,
        export: "instantiate + manifest",
        elapsed: report.instantiate,
        failure: None,
    });
    behaviour(&prober, &manifest, options, results).await;

    let calls = prober.calls();
    results.push(
        probes::cpu_deadline(&calls, options.limits.call_timeout),
        Duration::ZERO,
    );
    let peak = prober
        .sandbox
        .stats()
        .peak_memory_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    results.push(
        probes::memory_cap(&calls, peak, options.limits.memory_limit_mib()),
        Duration::ZERO,
    );
    results.push(
        advisory::startup_time(cache_outcome, compile, Some(report.instantiate)),
        Duration::ZERO,
    );
    results.push(
        probes::wall_clock(&calls, options.limits.call_wall_timeout),
        Duration::ZERO,
    );
}

/// Runs one behavioural check on its own task, so that a panic (a bug of
/// the suite, whatever the plugin does) becomes that check's failure.
async fn guarded<F, Fut>(id: CheckId, prober: &Arc<Prober>, check: F) -> (CheckResult, Duration)
where
    F: FnOnce(Arc<Prober>) -> Fut,
    Fut: std::future::Future<Output = CheckResult> + Send + 'static,
{
    let started = Instant::now();
    let result = match tokio::spawn(check(prober.clone())).await {
        Ok(result) => result,
        Err(error) => CheckResult::fail(
            id,
            format!("internal error of the suite while running this check: {error}"),
        )
        .with_fix("report this to the cellmesh maintainers with the plugin file"),
    };
    (result, started.elapsed())
}

/// CM06 to CM12 and CM15, in an order that leaves `shutdown` last.
async fn behaviour(
    prober: &Arc<Prober>,
    manifest: &Manifest,
    options: &ConformanceOptions,
    results: &mut Results,
) {
    let m = manifest.clone();
    let (r, took) = guarded(CheckId::Callable, prober, |p| async move {
        probes::callable(&p, &m).await
    })
    .await;
    results.push(r, took);

    let m = manifest.clone();
    let (r, took) = guarded(CheckId::ManifestStable, prober, |p| async move {
        probes::manifest_stable(&p, &m).await.0
    })
    .await;
    results.push(r, took);

    let (r, took) = guarded(CheckId::Messages, prober, |p| async move {
        probes::messages(&p).await
    })
    .await;
    results.push(r, took);

    let m = manifest.clone();
    let (r, took) = guarded(CheckId::SyncExtremes, prober, |p| async move {
        probes::sync_extremes(&p, &m).await
    })
    .await;
    results.push(r, took);

    let (r, took) = guarded(CheckId::UnknownCapability, prober, |p| async move {
        probes::unknown_capability(&p).await
    })
    .await;
    results.push(r, took);

    let m = manifest.clone();
    let (r, took) = guarded(CheckId::CapabilityProbes, prober, |p| async move {
        probes::capability_probes(&p, &m).await
    })
    .await;
    results.push(r, took);

    let (r, took) = guarded(CheckId::Evolution, prober, |p| async move {
        probes::evolution(&p).await
    })
    .await;
    results.push(r, took);

    let bound = options.shutdown_bound;
    let (r, took) = guarded(CheckId::Shutdown, prober, |p| async move {
        probes::shutdown(&p, bound).await
    })
    .await;
    results.push(r, took);
}

/// Loads the plugin for the behavioural checks from the component CM01
/// compiled, without refusing a bad manifest (CM05 reports it) and with
/// host services that reach nothing. The suite's only sandbox
/// construction.
async fn load_sandbox(
    engine: &PluginEngine,
    plugin: &Path,
    component: &Component,
    compiled: (CacheOutcome, Duration),
    limits: SandboxLimits,
) -> Result<PluginSandbox, LoadError> {
    let services = Arc::new(IsolatedServices {
        cell_id: "conformance".into(),
        config: Vec::new(),
    });
    PluginSandbox::builder(engine, plugin)
        .component(component.clone(), compiled.0, compiled.1)
        .limits(limits)
        .services(services)
        .validate_manifest(false)
        .load()
        .await
}
