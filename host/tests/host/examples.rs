//! The third-party example cells (`examples/`, built by
//! `examples/build-examples` into `target/wasm/components/`): each passes
//! the conformance suite, runs in cell-host and registers with discovery.
//! A missing component fails the test under `CI=true` and is skipped
//! (with a `SKIPPED:` line) otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use cell_host::conformance::{self, ConformanceOptions, Status};
use cell_host::plugin::{
    CacheOutcome, ComponentCache, IsolatedServices, PluginEngine, PluginSandbox, SandboxLimits,
};

use crate::TTL;
use crate::support::{self, Discovery, Host, args};

/// `target/wasm/components/NAME.wasm`, or `None` (after saying so) when it
/// has not been built; under CI a missing component fails the test.
fn example(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(cellmesh_artifacts::PURE_WASM)
        .parent()
        .expect("the components folder")
        .join(format!("{name}.wasm"));
    if path.is_file() {
        return Some(path);
    }
    let hint = format!(
        "{} is not built: run examples/build-examples (./dev test does)",
        path.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{hint}");
    println!("SKIPPED: {hint}");
    None
}

/// The suite passes (warnings allowed), then the cell runs in a host and
/// registers with a real discovery. Returns the registered entry.
async fn passes_and_registers(
    plugin: &std::path::Path,
    cache: &ComponentCache,
) -> Result<serde_json::Value> {
    let options = ConformanceOptions {
        cache: Some(cache.clone()),
        ..ConformanceOptions::default()
    };
    let report = conformance::run(plugin, &options).await?;
    assert!(report.passed, "{}", report.to_text());
    assert!(
        report
            .checks
            .iter()
            .all(|c| matches!(c.status, Status::Pass | Status::Warn)),
        "{}",
        report.to_text()
    );

    let discovery = Discovery::start(TTL).await?;
    let cache_dir = cache.dir().display().to_string();
    let host = Host::start(args(
        &plugin.display().to_string(),
        &discovery.url(),
        &["--cache-dir", &cache_dir],
    ))
    .await?;
    let entry = host.registered_with(&discovery).await;
    let (status, health) = host.get("/health").await;
    assert_eq!(status, 200, "{health}");
    host.stop().await?;
    let id = entry["cell_id"].as_str().unwrap_or_default().to_owned();
    assert!(discovery.peer(&id).await.is_none(), "deregistered on stop");
    Ok(entry)
}

#[tokio::test]
async fn the_rust_example_passes_and_registers() -> Result<()> {
    let Some(plugin) = example("rust-cell") else {
        return Ok(());
    };
    let entry = passes_and_registers(&plugin, &ComponentCache::new(support::cache_dir())).await?;
    assert_eq!(entry["cell_id"], "counter");
    assert_eq!(entry["type"], "counter_cell");
    Ok(())
}

/// Also measures the Python cell's first start (fresh cache: compile) and
/// its cached start (`PluginSandbox::builder(..).load()`, which includes reading,
/// hashing, mapping the cached code, linking, instantiating and the
/// manifest). Release figures: `host/benches/start_times.rs`, BENCHMARKS.md.
#[tokio::test]
async fn the_python_example_passes_registers_and_starts_fast_from_the_cache() -> Result<()> {
    let Some(plugin) = example("python-cell") else {
        return Ok(());
    };
    let fresh = tempfile::tempdir()?;
    let cache = ComponentCache::new(fresh.path());
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let mut starts = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let sandbox = PluginSandbox::builder(&engine, &plugin)
            .cache(Some(&cache))
            .limits(SandboxLimits::default())
            .services(Arc::new(IsolatedServices::default()))
            .load()
            .await?;
        starts.push((started.elapsed(), sandbox.load_report().cache));
    }
    assert_eq!(starts[0].1, CacheOutcome::Compiled);
    assert!(starts[1..].iter().all(|(_, c)| *c == CacheOutcome::Hit));
    let cached = starts[1..].iter().map(|(d, _)| *d).min().unwrap();
    println!(
        "python-cell start (debug test build): first {:.0} ms (compile), cached {:.1} ms",
        starts[0].0.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3
    );
    assert!(
        cached * 10 < starts[0].0,
        "the cache should make the start at least 10x faster: {starts:?}"
    );
    assert!(cached < Duration::from_secs(1), "{starts:?}");

    let entry = passes_and_registers(&plugin, &cache).await?;
    assert_eq!(entry["cell_id"], "pycell");
    assert_eq!(entry["type"], "python_cell");
    Ok(())
}
