//! Issue 10, Medium 6 and 7: the manifest is held to the one set of limits
//! discovery applies, and the compile cache is trusted only when no one
//! else can write it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Result;
use cell_host::plugin::bindings::{Capability, Manifest};
use cell_host::plugin::validate::manifest_problems;
use cell_host::plugin::{CacheOutcome, ComponentCache, PluginEngine};
use cellmesh_artifacts::PURE_WASM;

fn manifest(capabilities: usize) -> Manifest {
    Manifest {
        cell_id: "many".into(),
        cell_type: "cell".into(),
        branch: "main".into(),
        identity: "Many".into(),
        evolutionary_stage: "test".into(),
        health_status: "healthy".into(),
        capabilities: (0..capabilities)
            .map(|i| Capability {
                name: format!("cap-{i}"),
                description: "d".into(),
                example_input: "{}".into(),
            })
            .collect(),
        consciousness_level: 1.0,
        primitives: Vec::new(),
        labels: Vec::new(),
    }
}

/// Finding: a manifest with 65 capabilities loaded, then discovery answered
/// 422 forever (it accepts at most 64 services). The load now refuses it,
/// saying why.
#[test]
fn a_manifest_with_65_capabilities_is_refused_at_load() {
    assert_eq!(manifest_problems(&manifest(64)), Vec::<String>::new());
    let problems = manifest_problems(&manifest(65)).join("; ");
    assert!(problems.contains("65 capabilities"), "{problems:?}");
    assert!(problems.contains("at most 64"), "{problems:?}");
}

/// Finding: the host held cell ids to 64 characters without `:` while
/// discovery accepts 128 with `:`; the host is never narrower now, and a
/// field discovery would refuse is refused at load.
#[test]
fn manifest_limits_are_discoverys() {
    let mut m = manifest(1);
    m.cell_id = format!("zone:{}", "x".repeat(123));
    assert_eq!(manifest_problems(&m), Vec::<String>::new());
    m.cell_id.push('x');
    let problems = manifest_problems(&m).join("; ");
    assert!(problems.contains("1 to 128"), "{problems}");
    let mut m = manifest(1);
    m.branch = "b".repeat(256);
    m.capabilities[0].name = "c".repeat(256);
    let problems = manifest_problems(&m).join("; ");
    assert!(problems.contains("branch"), "{problems}");
    assert!(problems.contains("capability"), "{problems}");
    assert!(problems.contains("255"), "{problems}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Finding: the compile cache loaded native code from any file in it, even
/// one every local user could have written. Entries and directories
/// writable by others are refused (the plugin is compiled instead), and
/// the cache creates its directory 0700 and its files 0600.
#[test]
fn cache_entries_writable_by_others_are_not_trusted() -> Result<()> {
    let engine = PluginEngine::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let engine = engine.engine();
    let wasm = std::fs::read(PURE_WASM)?;
    let root = tempfile::tempdir()?;

    // A fresh cache: created private.
    let cache = ComponentCache::new(root.path().join("cache"));
    let (_, outcome) = cache.load_or_compile(engine, &wasm)?;
    assert_eq!(outcome, CacheOutcome::Compiled);
    let entry = cache.entry_path(engine, &wasm);
    assert_eq!(mode(cache.dir()), 0o700, "the cache directory");
    assert_eq!(mode(&entry), 0o600, "a cache entry");
    assert_eq!(cache.load_or_compile(engine, &wasm)?.1, CacheOutcome::Hit);

    // An entry others may write: compiled afresh and replaced.
    chmod(&entry, 0o666);
    let (_, outcome) = cache.load_or_compile(engine, &wasm)?;
    assert_ne!(outcome, CacheOutcome::Hit, "a 0666 entry was trusted");
    assert_eq!(mode(&entry), 0o600);
    assert_eq!(cache.load_or_compile(engine, &wasm)?.1, CacheOutcome::Hit);

    // A directory others may write: neither read nor written.
    chmod(cache.dir(), 0o777);
    let (_, outcome) = cache.load_or_compile(engine, &wasm)?;
    assert_eq!(
        outcome,
        CacheOutcome::Uncached,
        "a 0777 directory was trusted"
    );
    Ok(())
}
