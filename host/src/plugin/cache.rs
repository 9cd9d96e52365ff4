//! On-disk cache of compiled components.
//!
//! The key is the SHA-256 of the component file plus wasmtime's
//! [`Engine::precompile_compatibility_hash`] (which covers the wasmtime
//! version and every code-generation setting), so a changed plugin or a
//! changed engine never loads stale code. Entries are written to a
//! temporary file and renamed into place, so readers never see a partial
//! file. A hit is memory-mapped with [`Component::deserialize_file`].

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a cache entry written earlier.
    Hit,
    /// Compiled now and written to the cache.
    Compiled,
    /// Compiled now; caching is off or the entry could not be written.
    Uncached,
}

/// The default cache directory: `$XDG_CACHE_HOME/cellmesh`, else
/// `$HOME/.cache/cellmesh`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("cellmesh"))
}

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry path for a component's bytes under this engine.
    pub fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let content = hex::encode(Sha256::digest(wasm));
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{content}-{:016x}.cwasm", hasher.finish()))
    }

    /// Loads the compiled form of `wasm` from the cache, or compiles it and
    /// stores it. A corrupt or incompatible entry is replaced. Cache write
    /// failures are logged and the freshly compiled component is returned.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(engine, wasm);
        if path.is_file() {
            match deserialize_entry(engine, &path) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unusable cache entry")
                }
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(error) = write_atomically(&path, &compiled) {
            tracing::warn!(path = %path.display(), %error, "cannot write the component cache; continuing without it");
            // SAFETY: `compiled` was produced just now by this engine's
            // `precompile_component`.
            #[allow(unsafe_code)]
            let component = unsafe { Component::deserialize(engine, &compiled)? };
            return Ok((component, CacheOutcome::Uncached));
        }
        let component = deserialize_entry(engine, &path)?;
        Ok((component, CacheOutcome::Compiled))
    }
}

/// Maps a cache entry into memory as a component.
fn deserialize_entry(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: entries in the cache directory are written only by
    // `load_or_compile`, from `Engine::precompile_component` output, under a
    // name keyed by the source's SHA-256 and the engine's compatibility
    // hash, via write-to-temporary-then-rename so no reader sees a partial
    // file; wasmtime additionally checks the header and engine settings.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, path)
    }
}

/// Writes `bytes` to `path` via a temporary file in the same directory and
/// a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
