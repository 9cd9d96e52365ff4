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

/// Whether process `pid` has a handler installed for signal `signo`: its
/// bit in `SigCgt` of `/proc/PID/status` (Linux); `true` without `/proc`.
fn catches(pid: u32, signo: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signo - 1)) != 0)
}

/// Whether process `pid` has a SIGTERM handler installed.
fn catches_sigterm(pid: u32) -> bool {
    catches(pid, 15)
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

/// Waits for `child` to exit, at most `within`; kills it (SIGKILL) past
/// that and fails with `what`.
async fn exited_within(
    child: std::process::Child,
    within: std::time::Duration,
    what: &str,
) -> Result<std::process::Output> {
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    match tokio::time::timeout(within, waiting).await {
        Ok(output) => Ok(output??),
        Err(_) => {
            kill("KILL", pid);
            anyhow::bail!("{what}: still running after {within:?}")
        }
    }
}

/// Sends `signal` (`TERM`, `INT`, `KILL`) to `pid`.
fn kill(signal: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// A discovery that registers anyone (counting) and never answers a
/// deregistration.
fn discovery_that_hangs_on_deregister(
    registrations: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> axum::Router {
    use axum::routing::{delete, get, post};
    let json = |body: &'static str| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
    };
    axum::Router::new()
        .route(
            "/register",
            post(move || {
                registrations.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move { json(r#"{"status":"registered","cell_id":"alpha"}"#) }
            }),
        )
        .route(
            "/heartbeat",
            post(
                move || async move { json(r#"{"status":"ok","cell_id":"alpha","peers_count":1}"#) },
            ),
        )
        .route(
            "/peers",
            get(move || async move { json(r#"{"peers":[],"count":0,"my_host":"fake"}"#) }),
        )
        .route("/peer/{id}", delete(std::future::pending::<&'static str>))
}

/// Low 10: a second SIGTERM or Ctrl-C exits at once, whatever step the
/// shutdown is in (here: a deregistration that never ends, bounded at
/// 120 s).
#[tokio::test]
async fn a_second_signal_exits_at_once() -> Result<()> {
    let registrations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fake = discovery_that_hangs_on_deregister(registrations.clone());
    let (addr, _fake) = support::serve_router(fake).await?;
    let child = spawn_binary(
        ALPHA_WASM,
        &format!("http://{addr}"),
        &[
            "--heartbeat-ms",
            "100",
            "--deregister-timeout-ms",
            "120000",
            "--http-timeout-ms",
            "120000",
        ],
    );
    let pid = child.id();
    let mut guard = support::ChildGuard(Some(child));
    eventually(
        "registered, catching SIGTERM and SIGINT",
        PATIENCE,
        || async {
            let registered = registrations.load(std::sync::atomic::Ordering::SeqCst) > 0;
            (registered && catches(pid, 15) && catches(pid, 2)).then_some(())
        },
    )
    .await;
    kill("TERM", pid);
    kill("INT", pid);
    let output = exited_within(
        guard.take(),
        std::time::Duration::from_secs(30),
        "after the second signal",
    )
    .await?;
    // Target: at once; the bound (30 s) is far under the 120 s step.
    assert!(!output.status.success(), "a forced exit is not a success");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("second signal"), "{stderr}");
    Ok(())
}

/// Medium 6: a cell that discovery refuses (422 on register) retried
/// forever; the binary now exits non-zero at start saying why.
#[tokio::test]
async fn the_binary_exits_non_zero_when_discovery_refuses_its_registration() -> Result<()> {
    let refusing = axum::Router::new().route(
        "/register",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"detail":[{"type":"too_long","loc":["body","services"],"msg":"services: List should have at most 64 items"}]}"#,
            )
        }),
    );
    let (addr, _fake) = support::serve_router(refusing).await?;
    let child = spawn_binary(ALPHA_WASM, &format!("http://{addr}"), &[]);
    let output = exited_within(
        child,
        std::time::Duration::from_secs(60),
        "after a refused registration",
    )
    .await?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("services: List should have at most 64 items"),
        "{stderr}"
    );
    Ok(())
}
