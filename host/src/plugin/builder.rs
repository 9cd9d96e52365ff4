//! [`SandboxBuilder`]: turns a plugin file (or a component already compiled)
//! into a [`PluginSandbox`]: compile or load from the cache, check the
//! exports, link once, instantiate, read and check the manifest.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use super::bindings::CellPre;
use super::cache::{CacheOutcome, ComponentCache};
use super::engine::PluginEngine;
use super::error::LoadError;
use super::instance::{Instances, export_call};
use super::limits::SandboxLimits;
use super::sandbox::{LoadReport, PluginSandbox};
use super::state::{HostServices, HostState, IsolatedServices};
use super::validate;

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
    compile_component(engine, path, &bytes, cache)
}

/// The contents `bytes` of the plugin file `path` turned into a component:
/// refuses what is not a component, then compiles it or loads it from
/// `cache` ([`load_component`] after reading the file; a many-cell host
/// reads each file once, hashes it and calls this).
pub fn compile_component(
    engine: &PluginEngine,
    path: &Path,
    bytes: &[u8],
    cache: Option<&ComponentCache>,
) -> Result<(Component, CacheOutcome), LoadError> {
    validate::check_header(path, bytes)?;
    let invalid = |error: wasmtime::Error| LoadError::Invalid {
        path: path.into(),
        detail: format!("{error:#}"),
    };
    match cache {
        Some(cache) => cache
            .load_or_compile(engine.engine(), bytes)
            .map_err(invalid),
        None => Component::new(engine.engine(), bytes)
            .map(|c| (c, CacheOutcome::Uncached))
            .map_err(invalid),
    }
}

/// A component compiled before the builder ran, and how it was obtained.
struct Compiled {
    component: Component,
    cache: CacheOutcome,
    took: Duration,
}

/// A component checked and linked once, shared by every sandbox of the
/// same plugin file ([`SandboxBuilder::linked`]): a host of many cells
/// compiles, checks and links each file once, then only instantiates.
/// Cheap to clone.
#[derive(Clone)]
pub struct LinkedComponent {
    component: Component,
    pre: CellPre<HostState>,
    cache: CacheOutcome,
    took: Duration,
}

impl std::fmt::Debug for LinkedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkedComponent")
            .field("cache", &self.cache)
            .field("took", &self.took)
            .finish_non_exhaustive()
    }
}

impl LinkedComponent {
    /// Checks the exports of `component` (compiled from the file `path` by
    /// [`compile_component`]) and links it with `engine`'s linker. `cache`
    /// and `took` say how it was obtained and how long that took, for
    /// [`PluginSandbox::load_report`].
    pub fn link(
        engine: &PluginEngine,
        path: &Path,
        component: Component,
        cache: CacheOutcome,
        took: Duration,
    ) -> Result<Self, LoadError> {
        validate::check_exports(path, engine.engine(), &component)?;
        let pre = link(engine, path, &component)?;
        Ok(Self {
            component,
            pre,
            cache,
            took,
        })
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// How it was obtained.
    pub fn cache(&self) -> CacheOutcome {
        self.cache
    }
}

/// Links `component` once (`instantiate_pre`), resolving every import.
fn link(
    engine: &PluginEngine,
    path: &Path,
    component: &Component,
) -> Result<CellPre<HostState>, LoadError> {
    let link = |error: wasmtime::Error| LoadError::Link {
        path: path.into(),
        detail: format!("{error:#}"),
    };
    let instance_pre = engine.linker().instantiate_pre(component).map_err(link)?;
    CellPre::new(instance_pre).map_err(link)
}

/// What the builder starts from.
enum Source {
    /// The file: read and compile it.
    File,
    /// A component compiled already: check and link it.
    Compiled(Compiled),
    /// A component checked and linked already: instantiate it.
    Linked(LinkedComponent),
}

/// How to load one plugin; made by [`PluginSandbox::builder`], consumed by
/// [`SandboxBuilder::load`].
///
/// ```no_run
/// # use std::path::Path;
/// # use cell_host::plugin::{LoadError, PluginEngine, PluginSandbox, SandboxLimits};
/// # async fn example(engine: &PluginEngine) -> Result<(), LoadError> {
/// let sandbox = PluginSandbox::builder(engine, Path::new("cell.wasm"))
///     .limits(SandboxLimits::default())
///     .load()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `load` is awaited"]
pub struct SandboxBuilder<'a> {
    engine: &'a PluginEngine,
    path: &'a Path,
    cache: Option<&'a ComponentCache>,
    limits: SandboxLimits,
    services: Arc<dyn HostServices>,
    validate_manifest: bool,
    source: Source,
}

impl std::fmt::Debug for SandboxBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxBuilder")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("validate_manifest", &self.validate_manifest)
            .finish_non_exhaustive()
    }
}

impl PluginSandbox {
    /// Starts loading the plugin at `path` with `engine`. Defaults: no
    /// compile cache, [`SandboxLimits::default`], [`IsolatedServices`]
    /// (no mesh), manifest checked.
    pub fn builder<'a>(engine: &'a PluginEngine, path: &'a Path) -> SandboxBuilder<'a> {
        SandboxBuilder {
            engine,
            path,
            cache: None,
            limits: SandboxLimits::default(),
            services: Arc::new(IsolatedServices::default()),
            validate_manifest: true,
            source: Source::File,
        }
    }
}

impl<'a> SandboxBuilder<'a> {
    /// Compiled components are loaded from and stored in `cache`; `None`
    /// (the default) compiles every time. Unused with
    /// [`SandboxBuilder::component`].
    pub fn cache(mut self, cache: Option<&'a ComponentCache>) -> Self {
        self.cache = cache;
        self
    }

    /// The bounds every call and instance runs under.
    pub fn limits(mut self, limits: SandboxLimits) -> Self {
        self.limits = limits;
        self
    }

    /// What the plugin's `host` imports reach (mesh view, delivery).
    pub fn services(mut self, services: Arc<dyn HostServices>) -> Self {
        self.services = services;
        self
    }

    /// Whether to refuse a manifest that breaks the contract's rules
    /// ([`validate::manifest_problems`]). On by default; the conformance
    /// suite turns it off so that a plugin with an invalid manifest still
    /// gets its behavioural checks (it reports the manifest's problems
    /// itself).
    pub fn validate_manifest(mut self, validate: bool) -> Self {
        self.validate_manifest = validate;
        self
    }

    /// Uses `component`, already compiled by [`load_component`], instead of
    /// reading the file: lets a caller inspect the component (its imports,
    /// say) without compiling it twice. `cache` and `took` say how it was
    /// obtained and how long that took, for [`PluginSandbox::load_report`].
    pub fn component(mut self, component: Component, cache: CacheOutcome, took: Duration) -> Self {
        self.source = Source::Compiled(Compiled {
            component,
            cache,
            took,
        });
        self
    }

    /// Uses `linked`, a component checked and linked once for every
    /// sandbox of its file: only instantiation and the manifest are left.
    pub fn linked(mut self, linked: LinkedComponent) -> Self {
        self.source = Source::Linked(linked);
        self
    }

    /// Compiles the file (unless given a component), checks its exports,
    /// links it, instantiates it and reads its manifest, the live instance
    /// staying in the sandbox for the next call. Every way a file can be
    /// unfit is a distinct [`LoadError`].
    pub async fn load(self) -> Result<PluginSandbox, LoadError> {
        let Self {
            engine,
            path,
            cache,
            limits,
            services,
            validate_manifest,
            source,
        } = self;
        let compiled = match source {
            Source::Linked(linked) => Err(linked),
            Source::Compiled(compiled) => Ok(compiled),
            Source::File => {
                let started = Instant::now();
                let (component, cache) = load_component(engine, path, cache)?;
                Ok(Compiled {
                    component,
                    cache,
                    took: started.elapsed(),
                })
            }
        };
        let linking = Instant::now();
        let (pre, obtained, took) = match compiled {
            Ok(compiled) => {
                validate::check_exports(path, engine.engine(), &compiled.component)?;
                let pre = link(engine, path, &compiled.component)?;
                (pre, compiled.cache, compiled.took)
            }
            Err(linked) => (linked.pre, linked.cache, linked.took),
        };
        let instances = Instances::new(engine.clone(), pre, limits, services);
        let manifest = instances
            .call(
                None,
                "manifest",
                export_call(|guest, store| Box::pin(guest.call_manifest(store))),
            )
            .await
            .map_err(|failure| LoadError::Call {
                path: path.into(),
                failure,
            })?;
        let problems = validate::manifest_problems(&manifest);
        if validate_manifest && !problems.is_empty() {
            return Err(LoadError::Manifest {
                path: path.into(),
                problems,
            });
        }
        let report = LoadReport {
            cache: obtained,
            compile: took,
            instantiate: linking.elapsed(),
        };
        Ok(PluginSandbox::new(path.into(), manifest, instances, report))
    }
}
