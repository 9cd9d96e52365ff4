//! First and cached start times of plugins, in-process (results in
//! BENCHMARKS.md, "third-party cells"):
//!
//! ```text
//! examples/build-examples
//! cargo bench -p cell-host --bench start_times [-- PLUGIN.wasm ...]
//! ```
//!
//! A start is `PluginSandbox::builder(..).load()`: read and hash the file, compile it or
//! map the cached compiled code, check the exports, link, instantiate in a
//! fresh store and read and validate the manifest; everything the host
//! does before it can register. "First" uses a fresh, empty cache
//! directory each run (so it compiles and writes the cache entry);
//! "cached" loads from the entry the first run wrote. Default plugins:
//! `target/wasm/components/rust-cell.wasm` and `python-cell.wasm`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cell_host::plugin::{CacheOutcome, ComponentCache, LoadReport, PluginEngine, PluginSandbox};

const FIRST_RUNS: usize = 3;
const CACHED_RUNS: usize = 30;

#[tokio::main]
async fn main() -> Result<()> {
    let plugins: Vec<PathBuf> = {
        // `cargo bench` appends `--bench`.
        let given: Vec<PathBuf> = std::env::args()
            .skip(1)
            .filter(|arg| arg != "--bench")
            .map(PathBuf::from)
            .collect();
        if given.is_empty() {
            let dir = Path::new(cellmesh_artifacts::PURE_WASM)
                .parent()
                .context("components folder")?;
            vec![dir.join("rust-cell.wasm"), dir.join("python-cell.wasm")]
        } else {
            given
        }
    };
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    for plugin in &plugins {
        let size = std::fs::metadata(plugin)
            .with_context(|| {
                format!(
                    "{}: build it with examples/build-examples",
                    plugin.display()
                )
            })?
            .len();
        println!(
            "== {} ({:.1} MiB)",
            plugin.display(),
            size as f64 / 1048576.0
        );
        let mut first = Vec::new();
        let mut kept = None;
        for _ in 0..FIRST_RUNS {
            let dir = tempfile::tempdir()?;
            let cache = ComponentCache::new(dir.path());
            let (took, report) = start(&engine, plugin, &cache).await?;
            assert_eq!(report.cache, CacheOutcome::Compiled);
            first.push(took);
            kept = Some(dir);
        }
        let dir = kept.expect("at least one run");
        let cache = ComponentCache::new(dir.path());
        let mut cached = Vec::new();
        let (mut load, mut instantiate) = (Vec::new(), Vec::new());
        for _ in 0..CACHED_RUNS {
            let (took, report) = start(&engine, plugin, &cache).await?;
            assert_eq!(report.cache, CacheOutcome::Hit);
            cached.push(took);
            load.push(report.compile);
            instantiate.push(report.instantiate);
        }
        load.sort();
        instantiate.sort();
        first.sort();
        cached.sort();
        println!(
            "first start (fresh cache: compile + write), {FIRST_RUNS} runs: median {} (min {}, max {})",
            ms(first[first.len() / 2]),
            ms(first[0]),
            ms(*first.last().unwrap())
        );
        println!(
            "cached start, {CACHED_RUNS} runs: median {} (min {}, max {})",
            ms(cached[cached.len() / 2]),
            ms(cached[0]),
            ms(*cached.last().unwrap())
        );
        println!(
            "  of which: read + sha256 + map cached code {}, link + instantiate + manifest {} (medians)",
            ms(load[load.len() / 2]),
            ms(instantiate[instantiate.len() / 2])
        );
    }
    Ok(())
}

/// One `PluginSandbox::builder(..).load()`, timed.
async fn start(
    engine: &PluginEngine,
    plugin: &Path,
    cache: &ComponentCache,
) -> Result<(Duration, LoadReport)> {
    let started = Instant::now();
    let sandbox = PluginSandbox::builder(engine, plugin)
        .cache(Some(cache))
        .load()
        .await?;
    Ok((started.elapsed(), sandbox.load_report()))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
