//! The plugin conformance suite behind `cell-host conformance PLUGIN.wasm`:
//! tells a plugin author, without network or Rust knowledge, whether a
//! `.wasm` is a good citizen of the mesh.
//!
//! - [`checks`]: the catalogue of checks ([`CheckId`]) and the static ones.
//! - [`probes`]: the behavioural checks, calls into the loaded plugin.
//! - [`limits`]: the CPU-deadline and memory-cap checks over every call.
//! - [`report`]: [`Report`] and its text, JSON and JUnit XML forms.
//!
//! [`run`] loads the plugin the way the host does (same engine, linker,
//! CPU deadline and memory cap; no cache unless asked) and runs every
//! check. A plugin whose manifest breaks the rules still gets the
//! behavioural checks ([`LoadOptions::validate_manifest`] off); a file that
//! cannot be loaded at all gets the check that names what is wrong, and
//! every check that depends on it is reported as skipped.
//!
//! # The checks
//!
//! Ids are stable. Every check is required except the two advisory ones,
//! which can only warn. A warning never fails the suite.
//!
//! | id | checks | fails (or warns) when |
//! |---|---|---|
//! | `CM01-component` | the file is a WebAssembly component the host can compile | not readable, not wasm, a core module, or invalid |
//! | `CM02-world` | it exports the cell world's `guest` interface at a supported version (`cellmesh:cell` 0.1.x) | another world, or another version (both versions named) |
//! | `CM03-exports` | the `guest` interface has all seven functions with the contract's types | a function is missing (named) or has another type |
//! | `CM04-imports` | imports only `cellmesh:cell` 0.1.x and WASI 0.2 | anything else (fail); WASI filesystem or sockets: **warn**, the host links them but grants nothing |
//! | `CM05-manifest` | id of 1 to 64 `[A-Za-z0-9._-]`, non-empty type, unique non-empty services, finite level in [0, 1000], finite primitives | any rule broken (all listed); no capabilities: **warn** |
//! | `CM06-callable` | `manifest`, `state`, `handle-message`, `sync`, `evolve`, `invoke` answer ordinary calls | a call traps, times out or runs out of memory |
//! | `CM07-manifest-stable` | the manifest is identical on repeated calls, after other calls, and in a fresh instance | a field changes (named) |
//! | `CM08-messages` | `handle-message` with empty, 1 MiB, unicode, control-character, not-JSON-metadata and other messages | any of them traps, times out or runs out of memory |
//! | `CM09-sync-extremes` | `sync` with peer levels inf, -inf, NaN, ±1e308, max, 0, -0, negative | a call fails, an outcome's old-level, new-level or delta is not finite, or the state is not finite afterwards |
//! | `CM10-unknown-capability` | `invoke` of an undeclared name | anything but `unknown-capability` (a trap, success, another error) |
//! | `CM11-capability-probes` | each declared capability with its own `example-input` | the input is not JSON, the call fails or returns an error, or the output is not JSON |
//! | `CM12-evolution` | 10,000 `evolve` steps (elapsed-ms 0 to 3,600,000) | a step fails or returns a non-finite level |
//! | `CM13-cpu-deadline` | every call the suite made, against the CPU deadline | a call was interrupted (export and check named); slowest call over half the deadline: **warn** |
//! | `CM14-memory-cap` | every call the suite made, against the memory cap | an instance hit the cap (export and check named) |
//! | `CM15-shutdown` | the `shutdown` hook, called last | it fails or does not return within the host's bound (1 s) |
//! | `CM16-binary-size` | advisory: the file's size | over 10 MiB: **warn** |
//! | `CM17-startup-time` | advisory: compile and instantiation times | compile over 2 s or link + instantiate + first manifest over 100 ms: **warn** |
//!
//! A check whose prerequisite failed is `SKIP` and names it; the suite
//! fails then too. Exit status of the command: 0 when every required check
//! passed, 1 otherwise, 2 for a usage error or when the report cannot be
//! written.

pub mod checks;
pub mod limits;
pub mod probes;
pub mod report;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use checks::CheckId;
pub use report::{CheckResult, Counts, Report, Status};

use crate::config::{ConformanceArgs, DEFAULT_SHUTDOWN_HOOK_MS};
use crate::plugin::bindings::Manifest;
use crate::plugin::{
    ComponentCache, IsolatedServices, LoadError, LoadOptions, PluginEngine, PluginError,
    PluginSandbox, SandboxLimits, load_component,
};
use probes::{CallRecord, Prober};

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct ConformanceOptions {
    /// The CPU deadline and memory cap calls run under (the host's
    /// defaults unless changed).
    pub limits: SandboxLimits,
    /// Compile cache to use; `None` (the command's choice) compiles the
    /// file afresh, so CM17 reports a real first-start compile time.
    pub cache: Option<ComponentCache>,
    /// Bound on the shutdown hook (the host's default).
    pub shutdown_bound: Duration,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        Self {
            limits: SandboxLimits::default(),
            cache: None,
            shutdown_bound: Duration::from_millis(DEFAULT_SHUTDOWN_HOOK_MS),
        }
    }
}

/// Why the suite could not run or report (not a verdict on the plugin).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The WebAssembly engine could not start.
    #[error("{0}")]
    Engine(LoadError),
    /// A report file could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The failure.
        error: std::io::Error,
    },
    /// The JUnit XML could not be produced.
    #[error("cannot produce the JUnit report: {0}")]
    Junit(String),
}

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
        results.push(checks::binary_size(size), Duration::ZERO);
    }

    // CM01: read, header, compile.
    let t = Instant::now();
    let (component, cache_outcome) = match load_component(engine, plugin, options.cache.as_ref()) {
        Ok(loaded) => loaded,
        Err(error) => {
            results.push(checks::component_failed(&error), t.elapsed());
            results.block(CheckId::Component, "the file is not a loadable component");
            return;
        }
    };
    let compile = t.elapsed();
    results.push(checks::component_passed(size, cache_outcome), compile);

    // CM02, CM03: exports.
    let t = Instant::now();
    let (world, exports) = checks::world_and_exports(plugin, engine, &component);
    let world_ok = world.status == Status::Pass;
    let exports_ok = exports.as_ref().is_some_and(|e| e.status == Status::Pass);
    results.push(world, t.elapsed());
    if let Some(exports) = exports {
        results.push(exports, Duration::ZERO);
    }

    // CM04: imports, and whether the host can link them.
    let t = Instant::now();
    let linkable = match checks::imports(plugin, engine, &component) {
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
            checks::startup_time(cache_outcome, compile, None),
            Duration::ZERO,
        );
        return;
    }

    // Load without refusing a bad manifest: CM05 reports it.
    let t = Instant::now();
    let services = Arc::new(IsolatedServices {
        cell_id: "conformance".into(),
        config: Vec::new(),
    });
    let loaded = PluginSandbox::from_component(
        engine,
        plugin,
        &component,
        (cache_outcome, compile),
        options.limits,
        services,
        LoadOptions {
            validate_manifest: false,
        },
    )
    .await;
    let load_took = t.elapsed();
    let sandbox = match loaded {
        Ok(sandbox) => sandbox,
        Err(LoadError::Call { path, failure }) => {
            let limit_failure = matches!(
                failure,
                PluginError::Timeout { .. } | PluginError::MemoryExceeded { .. }
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
                    limits::cpu_deadline(&calls, options.limits.call_timeout),
                    Duration::ZERO,
                );
                results.push(
                    limits::memory_cap(&calls, 0, options.limits.memory_limit_mib()),
                    Duration::ZERO,
                );
            }
            results.block(CheckId::Manifest, "the manifest could not be read");
            results.push(
                checks::startup_time(cache_outcome, compile, None),
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
                checks::startup_time(cache_outcome, compile, None),
                Duration::ZERO,
            );
            return;
        }
    };
    let manifest = sandbox.manifest().clone();
    let report = sandbox.load_report();
    results.push(checks::manifest(plugin, &manifest), Duration::ZERO);

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
        limits::cpu_deadline(&calls, options.limits.call_timeout),
        Duration::ZERO,
    );
    let peak = prober
        .sandbox
        .stats()
        .peak_memory_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    results.push(
        limits::memory_cap(&calls, peak, options.limits.memory_limit_mib()),
        Duration::ZERO,
    );
    results.push(
        checks::startup_time(cache_outcome, compile, Some(report.instantiate)),
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

/// What `cell-host conformance` does after parsing: runs the suite under
/// the given limits, prints the summary to `out`, writes the requested
/// report files. Returns whether every required check passed.
pub async fn run_command(
    args: &ConformanceArgs,
    out: &mut impl Write,
) -> Result<bool, ConformanceError> {
    let options = ConformanceOptions {
        limits: args.limits(),
        ..ConformanceOptions::default()
    };
    let report = run(&args.plugin, &options).await?;
    let _ = out.write_all(report.to_text().as_bytes());
    let _ = out.flush();
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|error| ConformanceError::Write {
            path: path.to_path_buf(),
            error,
        })
    };
    if let Some(path) = &args.json {
        write(path, &report.to_json())?;
    }
    if let Some(path) = &args.junit {
        let xml = report
            .to_junit()
            .map_err(|e| ConformanceError::Junit(e.to_string()))?;
        write(path, &xml)?;
    }
    Ok(report.passed)
}
