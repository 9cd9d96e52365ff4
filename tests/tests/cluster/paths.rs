//! Where things are: the repository, the compose file, the timings file.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `examples/compose/docker-compose.yml`.
pub fn compose_file() -> PathBuf {
    repo_root().join("examples/compose/docker-compose.yml")
}

/// `examples/compose/build-images`.
pub fn build_images_script() -> PathBuf {
    repo_root().join("examples/compose/build-images")
}

/// `cluster-timings.txt` in the target directory (`CARGO_TARGET_DIR`, taken
/// relative to the workspace root, else `target/`).
pub fn timings_file() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                repo_root().join(t)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("cluster-timings.txt")
}
