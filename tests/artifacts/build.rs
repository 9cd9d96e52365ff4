//! Builds every guest component from source for `wasm32-wasip2` and
//! generates their path constants into `$OUT_DIR/artifacts.rs`, which
//! `src/lib.rs` includes.
//!
//! `GUESTS` is the one list: adding a fixture is its crate under
//! `tests/fixtures/` (a guest-workspace member through the `members` glob in
//! `plugins/Cargo.toml`) and one entry there. A nested `cargo` builds the
//! guest workspace with the outer build's compiler flags and cargo variables
//! removed, into `<target>/wasm` (a target directory of its own, so the
//! nested build never waits for the outer build's lock), and each component
//! is copied to `<target>/wasm/components/<file>.wasm`. `<target>` is `$CARGO_TARGET_DIR`
//! (relative to the repository root when relative) or `<repo>/target`: the
//! rule `./dev` and `examples/compose/build-images` follow too.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// The misbehaving fixture: one crate, built once per fault feature.
const MISBEHAVING: &str = "tests/fixtures/misbehaving";

/// Every guest component, in the order of the generated constants (and of
/// `FIXTURES`).
const GUESTS: &[Guest] = &[
    Guest::plugin(
        "pure",
        "PURE_WASM",
        Recipe::Crate("plugins/pure"),
        "The pure cell (`plugins/pure`).",
    ),
    Guest::plugin(
        "alpha",
        "ALPHA_WASM",
        Recipe::Crate("plugins/alpha"),
        "The alpha cell (`plugins/alpha`).",
    ),
    Guest::fixture(
        "loop",
        "FIXTURE_LOOP_WASM",
        Recipe::CrateWithFeature(MISBEHAVING, "loop"),
        "A cell whose `handle-message`, `sync` and `invoke` loop forever.",
    ),
    Guest::fixture(
        "trap",
        "FIXTURE_TRAP_WASM",
        Recipe::CrateWithFeature(MISBEHAVING, "trap"),
        "A cell whose `handle-message`, `sync` and `invoke` trap.",
    ),
    Guest::fixture(
        "alloc",
        "FIXTURE_ALLOC_WASM",
        Recipe::CrateWithFeature(MISBEHAVING, "alloc"),
        "A cell whose `handle-message`, `sync` and `invoke` allocate without bound.",
    ),
    Guest::fixture(
        "sleep",
        "FIXTURE_SLEEP_WASM",
        Recipe::CrateWithFeature(MISBEHAVING, "sleep"),
        "A cell whose `handle-message`, `sync` and `invoke` sleep 60 s (wasi:clocks + wasi:io/poll).",
    ),
    Guest::fixture(
        "flood",
        "FIXTURE_FLOOD_WASM",
        Recipe::CrateWithFeature(MISBEHAVING, "flood"),
        "A cell whose `handle-message`, `sync` and `invoke` call `send-message` until the host refuses (to the cell the content names).",
    ),
    Guest::fixture(
        "bad-manifest",
        "FIXTURE_BAD_MANIFEST_WASM",
        Recipe::CrateWithFeature(MISBEHAVING, "bad-manifest"),
        "A cell whose manifest is invalid: bad id, duplicate and empty services, NaN level.",
    ),
    Guest::fixture(
        "other-version",
        "FIXTURE_OTHER_VERSION_WASM",
        Recipe::Crate("tests/fixtures/other-version"),
        "A component exporting `cellmesh:cell/guest@9.0.0`.",
    ),
    Guest::fixture(
        "missing-export",
        "FIXTURE_MISSING_EXPORT_WASM",
        Recipe::Crate("tests/fixtures/missing-export"),
        "A component exporting `cellmesh:cell/guest@0.1.0` with only `manifest`.",
    ),
    Guest::fixture(
        "other-world",
        "FIXTURE_OTHER_WORLD_WASM",
        Recipe::Crate("tests/fixtures/other-world"),
        "A WASI command component (`wasi:cli/run`), not a cell at all.",
    ),
    Guest::fixture(
        "not-wasm",
        "FIXTURE_NOT_WASM",
        Recipe::Text("This is a text file named .wasm, not WebAssembly.\n"),
        "A text file named `.wasm`.",
    ),
];

/// One guest component and the constant that holds its path.
struct Guest {
    /// Short name: the file is `<name>.wasm` for a plugin and
    /// `fixture-<name>.wasm` for a fixture.
    name: &'static str,
    /// Whether it is listed in `FIXTURES`.
    role: Role,
    /// The generated constant's name.
    constant: &'static str,
    /// How the file is made.
    recipe: Recipe,
    /// The generated constant's doc comment.
    doc: &'static str,
}

/// What a guest is for.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    /// A cell shipped to users.
    Plugin,
    /// A hostile or malformed component for the host's tests.
    Fixture,
}

/// How a guest's file is made.
#[derive(Clone, Copy)]
enum Recipe {
    /// The guest-workspace crate in this directory (relative to the
    /// repository root). Its package is named like the directory, so its
    /// artefact is the directory name with `-` replaced by `_`.
    Crate(&'static str),
    /// The same, built with one cargo feature enabled.
    CrateWithFeature(&'static str, &'static str),
    /// A file holding this text, for loaders that must refuse it.
    Text(&'static str),
}

impl Guest {
    /// A cell shipped to users.
    const fn plugin(
        name: &'static str,
        constant: &'static str,
        recipe: Recipe,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            role: Role::Plugin,
            constant,
            recipe,
            doc,
        }
    }

    /// A fixture for the host's tests.
    const fn fixture(
        name: &'static str,
        constant: &'static str,
        recipe: Recipe,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            role: Role::Fixture,
            constant,
            recipe,
            doc,
        }
    }

    /// File name under `components/`.
    fn file(&self) -> String {
        match self.role {
            Role::Plugin => format!("{}.wasm", self.name),
            Role::Fixture => format!("fixture-{}.wasm", self.name),
        }
    }
}

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

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("tests/artifacts/ is two levels below the repository root")
        .to_path_buf();
    watch_inputs(&root);

    let wasm_target = target_dir(&root).join("wasm");
    let components = wasm_target.join("components");
    fs::create_dir_all(&components)
        .unwrap_or_else(|e| panic!("create {}: {e}", components.display()));
    let built = wasm_target.join("wasm32-wasip2").join("release");

    check_target_installed();
    let plugins = root.join("plugins");

    // Crates without features build together; a featured crate builds once
    // per feature, and each build overwrites the same artefact, so it is
    // copied straight away.
    let plain: Vec<(&Guest, &str)> = GUESTS
        .iter()
        .filter_map(|g| match g.recipe {
            Recipe::Crate(dir) => Some((g, dir)),
            _ => None,
        })
        .collect();
    let mut args = Vec::new();
    for (_, dir) in &plain {
        args.extend(["-p", package(dir)]);
    }
    cargo_build(&plugins, &wasm_target, &args);
    for (guest, dir) in &plain {
        install(&built.join(artefact(dir)), &components.join(guest.file()));
    }
    for guest in GUESTS {
        match guest.recipe {
            Recipe::CrateWithFeature(dir, feature) => {
                cargo_build(
                    &plugins,
                    &wasm_target,
                    &["-p", package(dir), "--features", feature],
                );
                install(&built.join(artefact(dir)), &components.join(guest.file()));
            }
            Recipe::Text(text) => write_if_changed(&components.join(guest.file()), text.as_bytes()),
            Recipe::Crate(_) => {}
        }
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("artifacts.rs");
    fs::write(&out, constants(&components))
        .unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
}

/// Tells cargo to rerun this script when the contract, the guest workspace
/// or a guest crate changes.
fn watch_inputs(root: &Path) {
    let mut inputs = vec![
        "wit".to_owned(),
        "plugins/Cargo.toml".to_owned(),
        "plugins/Cargo.lock".to_owned(),
    ];
    for guest in GUESTS {
        if let Recipe::Crate(dir) | Recipe::CrateWithFeature(dir, _) = guest.recipe {
            for input in [format!("{dir}/Cargo.toml"), format!("{dir}/src")] {
                if !inputs.contains(&input) {
                    inputs.push(input);
                }
            }
        }
    }
    for input in inputs {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
}

/// The effective target directory: `$CARGO_TARGET_DIR` (relative to the
/// repository root when relative), else `<repo>/target`.
fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        // `join` keeps an absolute path as it is.
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The package in `dir`: named like the directory (see [`Recipe::Crate`]).
fn package(dir: &str) -> &str {
    dir.rsplit('/')
        .next()
        .expect("rsplit yields at least one part")
}

/// The file cargo writes for the package in `dir`: its lib (or bin) name.
fn artefact(dir: &str) -> String {
    format!("{}.wasm", package(dir).replace('-', "_"))
}

/// The generated Rust source: one documented constant per guest, then
/// `FIXTURES`.
fn constants(components: &Path) -> String {
    let mut code = String::from("// Generated by tests/artifacts/build.rs from `GUESTS`.\n");
    for guest in GUESTS {
        let path = components.join(guest.file());
        let path = path
            .to_str()
            .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()));
        writeln!(
            code,
            "#[doc = {:?}]\npub const {}: &str = {:?};",
            guest.doc, guest.constant, path
        )
        .expect("writing to a String");
    }
    code.push_str(
        "/// Every hostile or malformed fixture, with its short name.\n\
         pub const FIXTURES: &[(&str, &str)] = &[\n",
    );
    for guest in GUESTS.iter().filter(|g| g.role == Role::Fixture) {
        writeln!(code, "    ({:?}, {}),", guest.name, guest.constant).expect("writing to a String");
    }
    code.push_str("];\n");
    code
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
        .unwrap_or_else(|e| panic!("could not run cargo in {}: {e}", workspace.display()));
    assert!(
        status.success(),
        "building the guest components ({}) failed ({status}); see the output above",
        args.join(" ")
    );
}

fn install(from: &Path, to: &Path) {
    let bytes = fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    write_if_changed(to, &bytes);
}

/// Replaces `to` only when its content differs, by writing a temporary file
/// and renaming it: a test reading the component never sees half a file,
/// and an unchanged component keeps its timestamp.
fn write_if_changed(to: &Path, bytes: &[u8]) {
    if fs::read(to).is_ok_and(|old| old == bytes) {
        return;
    }
    // Per process: a debug and a release build may run this script at once.
    let tmp = to.with_extension(format!("wasm.{}.tmp", std::process::id()));
    fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, to)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), to.display()));
}
