//! Conformance suite tests: pure and alpha pass; each hostile fixture fails
//! with the right check id and message; the JSON and JUnit forms; the real
//! binary's exit codes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use cell_host::conformance::{self, CheckId, ConformanceOptions, Report, Status};
use cell_host::plugin::{ComponentCache, SandboxLimits};
use cellmesh_artifacts::{
    ALPHA_WASM, FIXTURE_ALLOC_WASM, FIXTURE_BAD_MANIFEST_WASM, FIXTURE_LOOP_WASM,
    FIXTURE_MISSING_EXPORT_WASM, FIXTURE_NOT_WASM, FIXTURE_OTHER_VERSION_WASM,
    FIXTURE_OTHER_WORLD_WASM, FIXTURE_SLEEP_WASM, FIXTURE_TRAP_WASM, PURE_WASM,
};
use serde_json::Value;

use crate::support;

/// The CPU deadline of the looping fixture's run, the one limit it must
/// hit: a looping export costs one deadline per call, yet it stays well
/// over 5x what the well-behaved calls (10,000 `evolve` steps, instantiating
/// after each timeout) take on a loaded machine (the deadline is wall-clock
/// time), so only the loop can hit it.
const LOOP_DEADLINE_MS: u64 = 1_000;
/// The CPU deadline of every other run: unreachable, so a slow machine
/// never turns a slow call into a CM13 failure or a timeout in a check that
/// tests something else.
const UNREACHABLE_DEADLINE_MS: u64 = 60_000;

/// The wall-clock bound of the sleeping fixture's run, the one limit it
/// must hit: its exports sleep 60 s, far past it, and the CPU deadline is
/// unreachable.
const SLEEP_WALL_MS: u64 = 2_000;

/// Runs the suite in-process with the shared compile cache; the wall-clock
/// bound is derived from the CPU deadline (so it is unreachable when the
/// deadline is).
async fn suite(plugin: &str, call_timeout_ms: u64, memory_limit_mb: u64) -> Report {
    let limits = SandboxLimits::new(Duration::from_millis(call_timeout_ms), memory_limit_mb);
    suite_with(plugin, limits).await
}

/// Runs the suite in-process with the shared compile cache and `limits`.
async fn suite_with(plugin: &str, limits: SandboxLimits) -> Report {
    let options = ConformanceOptions {
        limits,
        cache: Some(ComponentCache::new(support::cache_dir())),
        ..ConformanceOptions::default()
    };
    conformance::run(Path::new(plugin), &options)
        .await
        .expect("the suite runs")
}

/// Asserts check `id` ended in `status` with every `words` in its message;
/// on failure shows the whole report.
#[track_caller]
fn expect(report: &Report, id: CheckId, status: Status, words: &[&str]) {
    let check = report
        .check(id)
        .unwrap_or_else(|| panic!("{} missing from\n{}", id.id(), report.to_text()));
    assert_eq!(
        check.status,
        status,
        "{}: {}\n{}",
        id.id(),
        check.message,
        report.to_text()
    );
    for word in words {
        assert!(
            check.message.contains(word),
            "{} should mention {word:?}: {}\n{}",
            id.id(),
            check.message,
            report.to_text()
        );
    }
    if status == Status::Fail {
        assert!(check.fix.is_some(), "{} failed without advice", id.id());
    }
}

/// Every check from `from` on is skipped, naming `blocker`.
#[track_caller]
fn expect_skipped_after(report: &Report, blocker: CheckId, skipped: &[CheckId]) {
    for id in skipped {
        expect(report, *id, Status::Skip, &[blocker.id()]);
    }
}

/// The behavioural checks, which need a loaded plugin.
const BEHAVIOURAL: &[CheckId] = &[
    CheckId::Manifest,
    CheckId::Callable,
    CheckId::ManifestStable,
    CheckId::Messages,
    CheckId::SyncExtremes,
    CheckId::UnknownCapability,
    CheckId::CapabilityProbes,
    CheckId::Evolution,
    CheckId::CpuDeadline,
    CheckId::MemoryCap,
    CheckId::Shutdown,
];

#[tokio::test]
async fn pure_and_alpha_pass_every_required_check() {
    for plugin in [PURE_WASM, ALPHA_WASM] {
        let report = suite(plugin, UNREACHABLE_DEADLINE_MS, 64).await;
        assert!(report.passed, "{}", report.to_text());
        assert_eq!(report.checks.len(), CheckId::ALL.len());
        // CM17 warns on wall-clock compile and instantiation times: on a
        // loaded machine (or with a cold cache) that is a warning, not a
        // failure, and says nothing about the plugin.
        for check in &report.checks {
            assert!(
                check.status == Status::Pass
                    || (check.status == Status::Warn && check.id == CheckId::StartupTime.id()),
                "{plugin}: {} {:?}: {}",
                check.id,
                check.status,
                check.message
            );
        }
    }
}

#[tokio::test]
async fn a_looping_plugin_fails_the_deadline_check() {
    let report = suite(FIXTURE_LOOP_WASM, LOOP_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    expect(
        &report,
        CheckId::CpuDeadline,
        Status::Fail,
        &[
            "plugin exceeded its CPU deadline of 1000 ms",
            "`handle-message` in CM08-messages (1x)",
            "`sync` in CM09-sync-extremes (1x)",
            "`invoke` in CM10-unknown-capability (1x)",
        ],
    );
    expect(&report, CheckId::Messages, Status::Fail, &["CPU deadline"]);
    expect(
        &report,
        CheckId::SyncExtremes,
        Status::Fail,
        &["CPU deadline"],
    );
    // The well-behaved exports still pass, and the memory check too.
    expect(&report, CheckId::Evolution, Status::Pass, &[]);
    expect(&report, CheckId::Shutdown, Status::Pass, &[]);
    expect(&report, CheckId::MemoryCap, Status::Pass, &[]);
    // One timeout per check and export, no more: probing stopped.
    let check = report.check(CheckId::CpuDeadline).unwrap();
    assert!(!check.message.contains("(2x)"), "{}", check.message);
}

/// Finding: a plugin sleeping in an export (`wasi:io/poll`) hung the
/// suite, the CPU deadline never firing. Every call is bounded by the
/// wall-clock bound now: the suite finishes (one bound per export and
/// check, about 8 here) and fails CM18, naming where.
#[tokio::test]
async fn a_sleeping_plugin_is_bounded_and_fails_the_wall_clock_check() {
    let limits = SandboxLimits::new(Duration::from_millis(UNREACHABLE_DEADLINE_MS), 64)
        .with_wall_timeout(Some(Duration::from_millis(SLEEP_WALL_MS)));
    let started = std::time::Instant::now();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        suite_with(FIXTURE_SLEEP_WASM, limits),
    )
    .await
    .expect("the suite finishes");
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "{:?}",
        started.elapsed()
    );
    assert!(!report.passed);
    expect(
        &report,
        CheckId::WallClock,
        Status::Fail,
        &[
            "exceeded its wall-clock bound of 2000 ms",
            "`handle-message` in CM06-callable (1x)",
            "`sync` in CM06-callable (1x)",
            "`invoke` in CM06-callable (1x)",
        ],
    );
    expect(
        &report,
        CheckId::Callable,
        Status::Fail,
        &["wall-clock bound"],
    );
    // The well-behaved exports pass, and so do the other limits' checks.
    expect(&report, CheckId::Evolution, Status::Pass, &[]);
    expect(&report, CheckId::Shutdown, Status::Pass, &[]);
    expect(&report, CheckId::CpuDeadline, Status::Pass, &[]);
    expect(&report, CheckId::MemoryCap, Status::Pass, &[]);
}

#[tokio::test]
async fn a_trapping_plugin_is_reported_as_trapping() {
    let report = suite(FIXTURE_TRAP_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    for id in [
        CheckId::Callable,
        CheckId::Messages,
        CheckId::SyncExtremes,
        CheckId::UnknownCapability,
        CheckId::CapabilityProbes,
    ] {
        expect(
            &report,
            id,
            Status::Fail,
            &[
                "plugin trapped",
                "fixture trap: this cell always fails here",
            ],
        );
    }
    expect(
        &report,
        CheckId::Messages,
        Status::Fail,
        &["9 of 9 messages failed", "an empty message"],
    );
    expect(&report, CheckId::CpuDeadline, Status::Pass, &[]);
    expect(&report, CheckId::MemoryCap, Status::Pass, &[]);
}

#[tokio::test]
async fn an_allocating_plugin_fails_the_memory_check() {
    let report = suite(FIXTURE_ALLOC_WASM, UNREACHABLE_DEADLINE_MS, 16).await;
    assert!(!report.passed);
    expect(
        &report,
        CheckId::MemoryCap,
        Status::Fail,
        &[
            "plugin exceeded its memory cap of 16 MiB",
            "`handle-message` in CM08-messages",
        ],
    );
    expect(&report, CheckId::Messages, Status::Fail, &["memory cap"]);
    expect(&report, CheckId::CpuDeadline, Status::Pass, &[]);
}

#[tokio::test]
async fn a_bad_manifest_fails_the_manifest_check_and_still_gets_the_others() {
    let report = suite(FIXTURE_BAD_MANIFEST_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    expect(
        &report,
        CheckId::Manifest,
        Status::Fail,
        &[
            "has an invalid manifest",
            "cell-id \"bad id!/..\" must be 1 to 128 characters",
            "\"echo\" is listed more than once",
            "empty name",
            "NaN is not a finite number",
        ],
    );
    // Loaded without manifest validation: the behavioural checks ran.
    for id in &BEHAVIOURAL[1..] {
        expect(&report, *id, Status::Pass, &[]);
    }
}

#[tokio::test]
async fn another_version_fails_the_world_check_naming_both_versions() {
    let report = suite(FIXTURE_OTHER_VERSION_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    expect(
        &report,
        CheckId::World,
        Status::Fail,
        &[
            "targets cellmesh:cell version 9.0.0",
            "supports cellmesh:cell 0.1.x",
            "found `cellmesh:cell/guest@9.0.0`",
        ],
    );
    expect(&report, CheckId::Component, Status::Pass, &[]);
    expect_skipped_after(&report, CheckId::World, &[CheckId::Exports]);
    expect_skipped_after(&report, CheckId::World, BEHAVIOURAL);
}

#[tokio::test]
async fn a_missing_export_fails_the_export_check_naming_the_functions() {
    let report = suite(FIXTURE_MISSING_EXPORT_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    expect(&report, CheckId::World, Status::Pass, &[]);
    expect(
        &report,
        CheckId::Exports,
        Status::Fail,
        &[
            "exports `cellmesh:cell/guest@0.1.0` but lacks the functions: state, handle-message, \
             sync, evolve, invoke, shutdown",
        ],
    );
    expect_skipped_after(&report, CheckId::Exports, BEHAVIOURAL);
}

#[tokio::test]
async fn another_world_fails_the_world_check() {
    let report = suite(FIXTURE_OTHER_WORLD_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    expect(
        &report,
        CheckId::World,
        Status::Fail,
        &[
            "does not export the cell world's guest interface",
            "expected an export of `cellmesh:cell/guest@0.1.0`, found `wasi:cli/run@0.2.0`",
        ],
    );
    expect_skipped_after(&report, CheckId::World, BEHAVIOURAL);
}

#[tokio::test]
async fn files_that_are_not_components_fail_the_component_check() {
    let report = suite(FIXTURE_NOT_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    assert!(!report.passed);
    expect(
        &report,
        CheckId::Component,
        Status::Fail,
        &["is not a WebAssembly file"],
    );
    expect_skipped_after(
        &report,
        CheckId::Component,
        &[CheckId::World, CheckId::Exports, CheckId::Imports],
    );
    expect_skipped_after(&report, CheckId::Component, BEHAVIOURAL);

    // Never a crash: a core module, a component header followed by noise,
    // a missing file.
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let noise = dir.path().join("noise.wasm");
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&noise, bytes).unwrap();
    for (path, words) in [
        (
            core.display().to_string(),
            "is a core WebAssembly module, not a component",
        ),
        (
            noise.display().to_string(),
            "is not a valid WebAssembly component",
        ),
        ("/nonexistent/cell.wasm".to_owned(), "cannot read plugin"),
    ] {
        let report = suite(&path, UNREACHABLE_DEADLINE_MS, 64).await;
        expect(&report, CheckId::Component, Status::Fail, &[words]);
    }
}

/// The JUnit file parses; its counts match the report.
fn check_junit(xml: &str, report: &Value) {
    let doc = roxmltree::Document::parse(xml).expect("the JUnit file is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites", "{xml}");
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 1, "{xml}");
    let suite = suites[0];
    let checks = report["checks"].as_array().expect("checks");
    let count = |status: &str| checks.iter().filter(|c| c["status"] == status).count();
    let attr = |name: &str| -> usize {
        suite
            .attribute(name)
            .unwrap_or_else(|| panic!("testsuite lacks {name}: {xml}"))
            .parse()
            .expect("a count")
    };
    assert_eq!(attr("tests"), checks.len());
    assert_eq!(attr("failures"), count("fail"));
    assert_eq!(attr("errors"), 0);
    assert_eq!(attr("skipped"), count("skip"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), checks.len());
    for (case, check) in cases.iter().zip(checks) {
        assert_eq!(case.attribute("name"), check["id"].as_str());
        assert!(case.attribute("classname").is_some());
        let failure = case.children().find(|n| n.has_tag_name("failure"));
        let skipped = case.children().find(|n| n.has_tag_name("skipped"));
        match check["status"].as_str().unwrap() {
            "fail" => {
                let failure = failure.expect("a <failure>");
                assert_eq!(failure.attribute("message"), check["message"].as_str());
                assert!(failure.text().unwrap_or_default().contains("fix: "));
            }
            "skip" => assert!(skipped.is_some() && failure.is_none()),
            _ => assert!(failure.is_none() && skipped.is_none()),
        }
    }
}

fn conformance_command(plugin: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cell-host"));
    command
        .arg("conformance")
        .arg(plugin)
        .args(extra)
        .env_remove("CELLMESH_CALL_TIMEOUT_MS")
        .env_remove("CELLMESH_MEMORY_LIMIT_MB")
        .env_remove("CELLMESH_CONFORMANCE_JSON")
        .env_remove("CELLMESH_CONFORMANCE_JUNIT")
        .env_remove("RUST_LOG");
    command
}

#[tokio::test]
async fn the_binary_exits_0_for_alpha_and_writes_matching_reports() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("report.json");
    let junit = dir.path().join("report.xml");
    // The deadline is not under test here: unreachable, so a loaded machine
    // cannot fail a check; the report shows the flag's value.
    let deadline = UNREACHABLE_DEADLINE_MS.to_string();
    let mut command = conformance_command(ALPHA_WASM, &["--call-timeout-ms", &deadline]);
    command.arg("--json").arg(&json).arg("--junit").arg(&junit);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PASS  CM08-messages"), "{stdout}");
    assert!(stdout.contains("result: PASS"), "{stdout}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(report["passed"], true);
    assert_eq!(report["plugin"], ALPHA_WASM);
    assert_eq!(report["call_timeout_ms"], UNREACHABLE_DEADLINE_MS);
    assert_eq!(report["memory_limit_mb"], 64);
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = CheckId::ALL.iter().map(|c| c.id()).collect();
    assert_eq!(ids, expected);
    for check in report["checks"].as_array().unwrap() {
        // The summary prints each check's line as the JSON has it.
        let line = format!(
            "{}  {}",
            check["status"].as_str().unwrap().to_uppercase(),
            check["id"].as_str().unwrap()
        );
        assert!(stdout.contains(&line), "{line} not in {stdout}");
    }
    check_junit(&std::fs::read_to_string(&junit)?, &report);
    Ok(())
}

#[tokio::test]
async fn the_binary_exits_1_for_a_fixture_with_failures_and_skips_in_junit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("report.json");
    let junit = dir.path().join("report.xml");
    let mut command = conformance_command(FIXTURE_MISSING_EXPORT_WASM, &[]);
    command.arg("--json").arg(&json).arg("--junit").arg(&junit);
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  CM03-exports"), "{stdout}");
    assert!(stdout.contains("result: FAIL"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    assert_eq!(report["passed"], false);
    assert_eq!(report["counts"]["fail"], 1);
    // CM05 to CM15 and CM18.
    assert_eq!(report["counts"]["skip"], 12);
    check_junit(&std::fs::read_to_string(&junit)?, &report);

    // A report with failures of the behavioural kind, through the library.
    let trap = suite(FIXTURE_TRAP_WASM, UNREACHABLE_DEADLINE_MS, 64).await;
    let value: Value = serde_json::from_str(&trap.to_json())?;
    check_junit(&trap.to_junit()?, &value);
    assert_eq!(value["counts"]["fail"], 5);
    Ok(())
}

#[tokio::test]
async fn usage_errors_and_unwritable_reports_exit_2() -> Result<()> {
    let run = |mut command: Command| async move {
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run cell-host")
    };
    // No plugin.
    let mut missing = Command::new(env!("CARGO_BIN_EXE_cell-host"));
    missing.arg("conformance");
    assert_eq!(run(missing).await.status.code(), Some(2));
    // A cell run's flags do not mix with the subcommand.
    let mut mixed = Command::new(env!("CARGO_BIN_EXE_cell-host"));
    mixed.args(["--plugin", ALPHA_WASM, "conformance", ALPHA_WASM]);
    assert_eq!(run(mixed).await.status.code(), Some(2));
    // A zero deadline is refused.
    let zero = conformance_command(ALPHA_WASM, &["--call-timeout-ms", "0"]);
    assert_eq!(run(zero).await.status.code(), Some(2));
    // The report cannot be written.
    let unwritable = conformance_command(
        FIXTURE_NOT_WASM,
        &["--json", "/nonexistent/dir/report.json"],
    );
    let output = run(unwritable).await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot write /nonexistent/dir/report.json"),
        "{stderr}"
    );
    // The top-level help names the subcommand.
    let mut help = Command::new(env!("CARGO_BIN_EXE_cell-host"));
    help.arg("--help");
    let output = run(help).await;
    assert!(String::from_utf8_lossy(&output.stdout).contains("conformance"));
    Ok(())
}
