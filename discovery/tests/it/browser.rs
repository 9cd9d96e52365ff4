//! The dashboard in a real headless Chromium: a cell appears and disappears without reload.
//!
//! The test serves the dashboard plus a harness page that embeds it in an iframe and reports
//! what the dashboard's DOM shows to `/__report`. Chromium is looked up as `$CHROMIUM`, then
//! `chromium`, `chromium-browser`, `google-chrome` on PATH. Without one the test is skipped with
//! a printed reason, unless `CI=true`, where it fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing;
use discovery::{AppState, app};
use serde_json::json;
use tokio::sync::mpsc;

use crate::*;

const HARNESS: &str = r#"<!doctype html><html><body>
<iframe id="f" src="/" style="width:1000px;height:600px"></iframe>
<script>
let loads = 0, live = false, seen = false, gone = false;
const f = document.getElementById("f");
f.addEventListener("load", () => { loads++; });
const report = (s) => fetch("/__report", { method: "POST", body: s });
setInterval(() => {
  const d = f.contentDocument;
  if (!d || !d.body) return;
  const status = d.getElementById("status");
  if (!live && status && status.className === "live" && d.body.dataset.revision !== undefined) {
    live = true; report("live");
  }
  const row = d.getElementById("peer-browser-cell");
  if (row && !seen) { seen = true; report("appeared loads=" + loads + " text=" + row.textContent); }
  if (seen && !row && !gone) { gone = true; report("disappeared loads=" + loads); }
}, 50);
</script></body></html>"#;

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

async fn report(State(tx): State<mpsc::UnboundedSender<String>>, body: String) {
    let _ = tx.send(body);
}

async fn expect(rx: &mut mpsc::UnboundedReceiver<String>, prefix: &str) -> String {
    let got = tokio::time::timeout(Duration::from_secs(45), async {
        loop {
            let msg = rx.recv().await.expect("harness channel open");
            if msg.starts_with(prefix) {
                return msg;
            }
        }
    })
    .await;
    got.unwrap_or_else(|_| panic!("the browser never reported '{prefix}'"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_a_cell_appear_and_disappear() {
    let Some(chromium) = find_chromium() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but no chromium binary found (install Debian's `chromium`)");
        }
        eprintln!(
            "SKIPPED dashboard browser test: no chromium binary found (set CHROMIUM or install Debian's `chromium`)"
        );
        return;
    };
    let state = AppState::new(cfg());
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let harness = Router::new()
        .route("/__harness", routing::get(|| async { Html(HARNESS) }))
        .route("/__report", routing::post(report))
        .with_state(tx);
    let router = app(state.clone()).merge(harness);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = state.shutdown_token();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .unwrap();
    });
    let profile = tempfile::tempdir().unwrap();
    let mut browser = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{addr}/__harness"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");

    expect(&mut rx, "live").await;
    let app = app(state.clone());
    let mut c = cell("browser-cell");
    c["type"] = json!("browser_cell");
    c["services"] = json!(["probe-service"]);
    c["consciousness_level"] = json!(0.7);
    assert_eq!(post(&app, "/register", &c).await.status, 200);
    let appeared = expect(&mut rx, "appeared").await;
    assert!(appeared.contains("loads=1"), "{appeared}");
    for text in ["browser-cell", "browser_cell", "probe-service", "0.70"] {
        assert!(appeared.contains(text), "row lacks {text}: {appeared}");
    }
    assert_eq!(delete(&app, "/peer/browser-cell").await.status, 200);
    let gone = expect(&mut rx, "disappeared").await;
    assert_eq!(gone, "disappeared loads=1", "updated without a reload");

    let _ = browser.kill().await;
    state.shutdown_token().cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
