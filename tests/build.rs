//! Builds the guest components from source for `wasm32-wasip2` and exposes
//! their paths to the crate as `CELLMESH_*_WASM` environment constants.
//!
//! The guests live in their own cargo workspaces (`plugins/`,
//! `tests/fixtures/`). They are built by a nested `cargo` with the host's
//! compiler flags removed, into `target/wasm` so the nested build never
//! contends for the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// Environment the outer cargo sets that must not reach the guest build.
const STRIPPED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "CARGO_PROFILE_RELEASE_DEBUG",
];
const STRIPPED_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "DEP_",
    "CARGO_PROFILE_",
];

/// The misbehaving fixture is one crate built once per fault feature.
const FAULTS: &[(&str, &str)] = &[
    ("loop", "CELLMESH_FIXTURE_LOOP_WASM"),
    ("trap", "CELLMESH_FIXTURE_TRAP_WASM"),
    ("alloc", "CELLMESH_FIXTURE_ALLOC_WASM"),
    ("bad-manifest", "CELLMESH_FIXTURE_BAD_MANIFEST_WASM"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let wasm_target = root.join("target").join("wasm");
    let out = wasm_target.join("components");
    fs::create_dir_all(&out).expect("create target/wasm/components");

    for path in [
        "wit",
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/pure/src",
        "plugins/pure/Cargo.toml",
        "plugins/alpha/src",
        "plugins/alpha/Cargo.toml",
        "tests/fixtures/Cargo.toml",
        "tests/fixtures/Cargo.lock",
        "tests/fixtures/misbehaving",
        "tests/fixtures/other-version",
        "tests/fixtures/missing-export",
        "tests/fixtures/other-world",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    check_target_installed();

    let plugins = root.join("plugins");
    cargo_build(&plugins, &wasm_target, &["-p", "pure", "-p", "alpha"]);
    let built = wasm_target.join("wasm32-wasip2").join("release");
    for (name, var) in [
        ("pure", "CELLMESH_PURE_WASM"),
        ("alpha", "CELLMESH_ALPHA_WASM"),
    ] {
        export(
            var,
            &copy(
                &built.join(format!("{name}.wasm")),
                &out.join(format!("{name}.wasm")),
            ),
        );
    }

    let fixtures = root.join("tests").join("fixtures");
    for (fault, var) in FAULTS {
        cargo_build(
            &fixtures,
            &wasm_target,
            &["-p", "misbehaving", "--features", fault],
        );
        let dest = out.join(format!("fixture-{fault}.wasm"));
        export(var, &copy(&built.join("misbehaving.wasm"), &dest));
    }
    cargo_build(
        &fixtures,
        &wasm_target,
        &[
            "-p",
            "other_version",
            "-p",
            "missing_export",
            "-p",
            "other_world",
        ],
    );
    for (name, var) in [
        ("other_version", "CELLMESH_FIXTURE_OTHER_VERSION_WASM"),
        ("missing_export", "CELLMESH_FIXTURE_MISSING_EXPORT_WASM"),
        ("other_world", "CELLMESH_FIXTURE_OTHER_WORLD_WASM"),
    ] {
        let dest = out.join(format!("fixture-{}.wasm", name.replace('_', "-")));
        export(var, &copy(&built.join(format!("{name}.wasm")), &dest));
    }

    let not_wasm = out.join("fixture-not-wasm.wasm");
    fs::write(
        &not_wasm,
        "This is a text file named .wasm, not WebAssembly.\n",
    )
    .expect("write the not-wasm fixture");
    export("CELLMESH_FIXTURE_NOT_WASM", &not_wasm);
}

fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot
        && !Path::new(&sysroot)
            .join("lib/rustlib/wasm32-wasip2")
            .exists()
    {
        panic!(
            "the wasm32-wasip2 target is not installed in {sysroot}; run `./dev setup` \
             (or `rustup target add wasm32-wasip2`) and build again"
        );
    }
}

fn cargo_build(workspace: &Path, target_dir: &Path, args: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir);
    for var in STRIPPED_VARS {
        cmd.env_remove(var);
    }
    for (key, _) in env::vars() {
        if STRIPPED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo for {}: {e}", workspace.display()));
    assert!(
        status.success(),
        "building the guest components in {} failed ({status}); see the output above",
        workspace.display()
    );
}

fn copy(from: &Path, to: &Path) -> PathBuf {
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    to.to_path_buf()
}

fn export(var: &str, path: &Path) {
    println!("cargo:rustc-env={var}={}", path.display());
}
