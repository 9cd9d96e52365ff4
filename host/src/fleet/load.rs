//! Each distinct plugin file of a host loaded once: read, hashed (SHA-256,
//! the digest the admin API shows), compiled or loaded from the cache,
//! checked and linked, whatever the number of cells that run it. Two
//! paths with the same contents share one compiled component too. Every
//! cell then only instantiates the shared [`LinkedComponent`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::plugin::builder::{LinkedComponent, compile_component};
use crate::plugin::{ComponentCache, LoadError, PluginEngine};

/// A plugin file ready to instantiate.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// SHA-256 of the file, hex.
    pub digest: String,
    /// The component, checked and linked.
    pub linked: LinkedComponent,
}

/// Why a plugin file cannot run.
#[derive(Debug, Clone)]
pub struct PluginFailure {
    /// SHA-256 of the file, when it could be read.
    pub digest: Option<String>,
    /// What is wrong with it ([`LoadError`]'s message).
    pub reason: String,
}

/// What became of each plugin file.
pub type Loaded = HashMap<PathBuf, Result<Arc<LoadedPlugin>, PluginFailure>>;

/// Loads every distinct file of `paths` once with `engine` (on a blocking
/// thread: compiling is long CPU work), using `cache` when given.
pub async fn load_plugins(
    engine: &PluginEngine,
    paths: impl IntoIterator<Item = PathBuf>,
    cache: Option<ComponentCache>,
) -> Loaded {
    let mut distinct: Vec<PathBuf> = Vec::new();
    for path in paths {
        if !distinct.contains(&path) {
            distinct.push(path);
        }
    }
    let engine = engine.clone();
    let loading = tokio::task::spawn_blocking(move || {
        let mut by_digest: HashMap<String, Arc<LoadedPlugin>> = HashMap::new();
        distinct
            .into_iter()
            .map(|path| {
                let loaded = load_one(&engine, &path, cache.as_ref(), &mut by_digest);
                (path, loaded)
            })
            .collect()
    });
    match loading.await {
        Ok(loaded) => loaded,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => unreachable!("the loading task is never cancelled: {error}"),
    }
}

/// Reads, hashes, compiles (unless a file with the same digest was) and
/// links one file.
fn load_one(
    engine: &PluginEngine,
    path: &Path,
    cache: Option<&ComponentCache>,
    by_digest: &mut HashMap<String, Arc<LoadedPlugin>>,
) -> Result<Arc<LoadedPlugin>, PluginFailure> {
    let started = Instant::now();
    let failure = |digest: Option<&str>, error: LoadError| {
        tracing::error!(plugin = %path.display(), %error, "plugin refused; its cells will not run");
        PluginFailure {
            digest: digest.map(str::to_owned),
            reason: error.to_string(),
        }
    };
    let bytes = std::fs::read(path).map_err(|error| {
        failure(
            None,
            LoadError::Read {
                path: path.into(),
                error,
            },
        )
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    if let Some(loaded) = by_digest.get(&digest) {
        return Ok(loaded.clone());
    }
    let (component, cache) = compile_component(engine, path, &bytes, cache)
        .map_err(|error| failure(Some(&digest), error))?;
    let took = started.elapsed();
    let linked = LinkedComponent::link(engine, path, component, cache, took)
        .map_err(|error| failure(Some(&digest), error))?;
    tracing::info!(
        plugin = %path.display(),
        digest = %digest,
        cache = ?cache,
        compile_ms = took.as_secs_f64() * 1e3,
        "plugin compiled once for all its cells"
    );
    let loaded = Arc::new(LoadedPlugin {
        digest: digest.clone(),
        linked,
    });
    by_digest.insert(digest, loaded.clone());
    Ok(loaded)
}
