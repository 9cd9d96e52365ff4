//! The binary tests.

use crate::TTL;
use crate::support::{self, Discovery, PATIENCE, eventually};
use anyhow::Result;
use cellmesh_artifacts::{ALPHA_WASM, FIXTURE_OTHER_VERSION_WASM};

fn spawn_binary(plugin: &str, discovery: &str, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_cell-host"))
        .args([
            "--plugin",
            plugin,
            "--discovery",
            discovery,
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--cache-dir")
        .arg(support::cache_dir())
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("PORT")
        .env_remove("AIOS_CELL_ID")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cell-host")
}

/// Whether process `pid` has a SIGTERM handler installed: signal 15's bit
/// in `SigCgt` of `/proc/PID/status` (Linux); `true` without `/proc`.
fn catches_sigterm(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

#[tokio::test]
async fn sigterm_deregisters_before_the_process_exits() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let child = spawn_binary(ALPHA_WASM, &discovery.url(), &["--heartbeat-ms", "100"]);
    eventually("the process registered", PATIENCE, || async {
        discovery.peer("alpha").await
    })
    .await;
    // Registration runs in its own task and can finish before the process
    // installs its SIGTERM handler (a SIGTERM then kills it outright).
    let pid = child.id();
    eventually("the process catching SIGTERM", PATIENCE, || async {
        catches_sigterm(pid).then_some(())
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    // The process has exited; with a 60 s TTL only a deregistration can
    // have removed the entry, so it happened before the exit.
    assert!(
        output.status.success(),
        "exit status {}; stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        discovery.peer("alpha").await.is_none(),
        "still listed after exit"
    );
    Ok(())
}

#[tokio::test]
async fn the_binary_exits_non_zero_saying_what_is_wrong() -> Result<()> {
    let child = spawn_binary(FIXTURE_OTHER_VERSION_WASM, "http://127.0.0.1:9", &[]);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await??;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cellmesh:cell/guest@0.1.0") && stderr.contains("9.0.0"),
        "{stderr}"
    );
    Ok(())
}
