//! On-disk cache of compiled components.
//!
//! The key is the SHA-256 of the component file plus wasmtime's
//! [`Engine::precompile_compatibility_hash`] (which covers the wasmtime
//! version and every code-generation setting), so a changed plugin or a
//! changed engine never loads stale code. Entries are written to a
//! temporary file and renamed into place, so readers never see a partial
//! file. A hit is memory-mapped with [`Component::deserialize_file`].
//!
//! A cache entry is native code the host runs, so the cache is trusted
//! only when no one else can have written it: the directory and each entry
//! must be owned by the process's user and not writable by group or
//! others (and an entry must be a regular file, not a symlink). Anything
//! else is refused with a warning naming the path and the reason, and the
//! plugin is compiled instead (an untrusted entry in a trusted directory is
//! replaced; an untrusted directory is neither read nor written). The host
//! creates the directory 0700 and its entries 0600.

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
    /// stores it. A corrupt, incompatible or untrusted entry is replaced; an
    /// untrusted directory is not used at all. Cache failures are logged and
    /// the freshly compiled component is returned.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(engine, wasm);
        if let Err(reason) = trust::prepare_dir(&self.dir) {
            tracing::warn!(
                path = %self.dir.display(),
                reason = %reason,
                "not using the compile cache directory; compiling the plugin instead"
            );
            return compile_uncached(engine, wasm);
        }
        match trust::check_entry(&path) {
            Ok(true) => match deserialize_entry(engine, &path) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "discarding unusable cache entry")
                }
            },
            Ok(false) => {}
            Err(reason) => tracing::warn!(
                path = %path.display(),
                reason = %reason,
                "not trusting a compile cache entry; compiling the plugin and replacing it"
            ),
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

/// Compiles `wasm` without the cache.
fn compile_uncached(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<(Component, CacheOutcome)> {
    Component::new(engine, wasm).map(|c| (c, CacheOutcome::Uncached))
}

/// Maps a cache entry into memory as a component.
fn deserialize_entry(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: entries in the cache directory are written only by
    // `load_or_compile`, from `Engine::precompile_component` output, and
    // are read only after `trust::check_entry` found the entry and its
    // directory owned by this user and writable by no one else; under a
    // name keyed by the source's SHA-256 and the engine's compatibility
    // hash, via write-to-temporary-then-rename so no reader sees a partial
    // file; wasmtime additionally checks the header and engine settings.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, path)
    }
}

/// Writes `bytes` to `path` via a temporary file (mode 0600) in the same
/// directory and a rename (which replaces an untrusted entry).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = trust::create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether the cache can be trusted: ownership and permissions.
#[cfg(unix)]
mod trust {
    use std::fs::{DirBuilder, File, Metadata, OpenOptions};
    use std::io::ErrorKind;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::path::Path;

    /// Group and others' write bits.
    const WRITABLE_BY_OTHERS: u32 = 0o022;

    /// Why `meta` cannot be trusted, if it cannot.
    fn untrusted(meta: &Metadata) -> Option<String> {
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Some(format!(
                "owned by uid {}, not by this process's uid {me}",
                meta.uid()
            ));
        }
        let mode = meta.mode() & 0o7777;
        (mode & WRITABLE_BY_OTHERS != 0)
            .then(|| format!("writable by group or others (mode {mode:04o})"))
    }

    /// Creates the directory (0700) if missing, and says why it cannot be
    /// trusted if it cannot.
    pub(super) fn prepare_dir(dir: &Path) -> Result<(), String> {
        if let Err(error) = DirBuilder::new().recursive(true).mode(0o700).create(dir) {
            return Err(format!("cannot create it: {error}"));
        }
        let meta = std::fs::metadata(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
        if !meta.is_dir() {
            return Err("not a directory".to_owned());
        }
        untrusted(&meta).map_or(Ok(()), Err)
    }

    /// Whether the entry exists and can be trusted (`Ok(false)`: there is
    /// none); `Err` says why an existing one cannot.
    pub(super) fn check_entry(path: &Path) -> Result<bool, String> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(format!("cannot inspect it: {error}")),
        };
        if !meta.file_type().is_file() {
            return Err("not a regular file".to_owned());
        }
        untrusted(&meta).map_or(Ok(true), Err)
    }

    /// Creates a new file readable and writable by this user only.
    pub(super) fn create_private(path: &Path) -> std::io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }
}

/// Elsewhere: no ownership to check; the directory is created as usual.
#[cfg(not(unix))]
mod trust {
    use std::fs::File;
    use std::path::Path;

    pub(super) fn prepare_dir(dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))
    }

    pub(super) fn check_entry(path: &Path) -> Result<bool, String> {
        Ok(path.is_file())
    }

    pub(super) fn create_private(path: &Path) -> std::io::Result<File> {
        File::create_new(path)
    }
}
