//! One host, 200 pure cells and one of each hostile fixture: registration,
//! per-cell addresses, batched heartbeats, isolation, the admin API's
//! `/cells`, and a shutdown that deregisters every cell.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use cellmesh_artifacts::{
    FIXTURE_ALLOC_WASM, FIXTURE_FLOOD_WASM, FIXTURE_LOOP_WASM, FIXTURE_SLEEP_WASM,
    FIXTURE_TRAP_WASM, PURE_WASM,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::harness::{
    CellsFile, HEARTBEAT, HostProcess, SHORT_TTL, admin_get, cell_table, crowd_turn,
    discovery_metrics, get_json, host_flags, listed, peers_named, required_series, series,
};
use crate::support::Discovery;

/// Well-behaved cells in the host.
const GOOD: usize = 200;
/// Of them, how many are called directly (by address) and sent messages
/// while the hostile cells are hit.
const SAMPLE: usize = 50;
/// `[cell.limits]` keys and values.
type Limits = &'static [(&'static str, u64)];
/// The hostile fixtures, one cell each: (id, plugin, the limits that stop
/// it). The looping one gets a short CPU deadline, so it costs a core for a
/// quarter of a second per call rather than the good cells' ten; the
/// sleeping one a short wall-clock bound (its sleep burns no CPU); the
/// flooding one calls `send-message` until its send budget says no, aimed
/// at the first sampled good cell.
const HOSTILE: [(&str, &str, Limits); 5] = [
    (
        "hostile-loop",
        FIXTURE_LOOP_WASM,
        &[("call_timeout_ms", 250)],
    ),
    ("hostile-trap", FIXTURE_TRAP_WASM, &[]),
    (
        "hostile-alloc",
        FIXTURE_ALLOC_WASM,
        &[("memory_limit_mib", 16)],
    ),
    (
        "hostile-sleep",
        FIXTURE_SLEEP_WASM,
        &[("call_timeout_ms", 250), ("call_wall_timeout_ms", 1_000)],
    ),
    (FLOOD, FIXTURE_FLOOD_WASM, &[]),
];
/// The flooding cell's id: its calls end (200) once the host refuses its
/// sends, so its outcome is checked apart from the others'.
const FLOOD: &str = "hostile-flood";
/// How long the hostile cells are hit: three TTLs, so a good cell that
/// missed its heartbeats would expire in the meantime.
const SIEGE: Duration = Duration::from_secs(3 * SHORT_TTL.as_secs());
/// Bound on starting every cell (compiling two plugins on a cold cache,
/// instantiating 204 cells in a debug build, one batch registration).
const START_BOUND: Duration = Duration::from_secs(180);

/// The cells' `cells.toml`: good cells get CPU and wall-clock bounds far
/// beyond what a busy machine makes their calls take, so only the hostile
/// cells' own limits can fire.
fn cells_toml() -> String {
    let mut toml = String::from(
        "[defaults.limits]\ncall_timeout_ms = 10000\ncall_wall_timeout_ms = 30000\n\n",
    );
    toml.push_str(&cell_table(PURE_WASM, "good", GOOD, &[]));
    for (id, plugin, limits) in HOSTILE {
        toml.push_str(&cell_table(plugin, id, 1, limits));
    }
    toml
}

/// `ip:port` of a peer entry.
fn address(peer: &Value) -> String {
    format!("{}:{}", peer["ip"].as_str().unwrap_or("?"), peer["port"])
}

/// Sends `POST /message` to `url` in a loop until `stop`, answering every
/// status (0: no answer within the client's timeout); `content`, when
/// given, is every message's content (the flooding cell's target).
async fn message_loop(
    url: String,
    content: Option<String>,
    stop: Arc<AtomicBool>,
    timeout: Duration,
) -> Vec<u16> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client");
    let mut statuses = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let answer = client
            .post(format!("{url}/message"))
            .json(&json!({
                "from_cell": "fleet-test",
                "content": content.clone().unwrap_or_else(|| format!("message {n}")),
            }))
            .send()
            .await;
        statuses.push(answer.map_or(0, |a| a.status().as_u16()));
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_cells_share_a_host_and_a_hostile_cell_costs_only_itself() -> Result<()> {
    let _turn = crowd_turn().await;
    let discovery = Discovery::start(SHORT_TTL).await?;
    let cells = CellsFile::write(&cells_toml())?;
    let mut host = HostProcess::spawn(&host_flags(&cells.path(), &discovery.url()))?;
    let admin = host.admin_addr().await;

    // Registration: every cell listed, each at its own address.
    let good = listed(&discovery, &mut host, "good-", GOOD, START_BOUND).await?;
    let hostile = listed(
        &discovery,
        &mut host,
        "hostile-",
        HOSTILE.len(),
        START_BOUND,
    )
    .await?;
    eprintln!(
        "fleet: {} cells listed {:.1} s after the start",
        GOOD + HOSTILE.len(),
        host.age().as_secs_f64()
    );
    let addresses: BTreeSet<String> = good.iter().chain(&hostile).map(address).collect();
    assert_eq!(
        addresses.len(),
        GOOD + HOSTILE.len(),
        "cells share addresses: {addresses:?}"
    );

    // Each address reaches exactly its cell (a sample, called at once).
    let sample: Vec<Value> = good
        .iter()
        .step_by(GOOD / SAMPLE)
        .take(SAMPLE)
        .cloned()
        .collect();
    let client = crate::support::client();
    let mut calls = JoinSet::new();
    for peer in &sample {
        let (client, id, url) = (
            client.clone(),
            peer["cell_id"].as_str().unwrap_or_default().to_owned(),
            format!("http://{}", address(peer)),
        );
        calls.spawn(async move { (id, get_json(&client, &format!("{url}/health")).await) });
    }
    while let Some(done) = calls.join_next().await {
        let (id, answer) = done?;
        let (status, health) = answer.unwrap_or_else(|| panic!("{id}: no answer"));
        assert_eq!(status, 200, "{id}: {health}");
        assert_eq!(
            health["cell_id"],
            id.as_str(),
            "{id}'s address answers another cell"
        );
    }

    // The admin API knows every cell, at the address discovery lists.
    let (status, listing) = admin_get(admin, "/cells").await?;
    assert_eq!(status, 200, "{listing}");
    let entries = listing["cells"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), GOOD + HOSTILE.len(), "{listing}");
    let listed_at: BTreeMap<String, String> = good
        .iter()
        .chain(&hostile)
        .map(|p| {
            (
                p["cell_id"].as_str().unwrap_or_default().to_owned(),
                address(p),
            )
        })
        .collect();
    for entry in &entries {
        let id = entry["cell_id"].as_str().unwrap_or_default();
        assert_eq!(entry["state"], "running", "{entry}");
        assert_eq!(
            entry["address"].as_str(),
            listed_at.get(id).map(String::as_str),
            "{entry}"
        );
    }

    // The siege: the hostile cells hit without pause, the sample of good
    // cells sent messages, for three TTLs.
    let before = discovery_metrics(&discovery).await?;
    let seen_before: BTreeMap<String, Value> = sample
        .iter()
        .map(|p| {
            (
                p["cell_id"].as_str().unwrap_or_default().to_owned(),
                p["last_seen"].clone(),
            )
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let siege_start = Instant::now();
    let mut hostile_load = JoinSet::new();
    // A good cell outside the sample: only the flood writes to it.
    let flood_peer = good[1].clone();
    assert!(
        !sample.contains(&flood_peer),
        "the flood's target is sampled"
    );
    let flood_target = flood_peer["cell_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for peer in &hostile {
        let id = peer["cell_id"].as_str().unwrap_or_default().to_owned();
        let url = format!("http://{}", address(peer));
        let stop = stop.clone();
        let content = (id == FLOOD).then(|| flood_target.clone());
        // A hostile call can queue behind another's bound: a long timeout.
        hostile_load.spawn(async move {
            let statuses = message_loop(url, content, stop, Duration::from_secs(60)).await;
            (id, statuses)
        });
    }
    let mut good_load = JoinSet::new();
    for peer in &sample {
        let id = peer["cell_id"].as_str().unwrap_or_default().to_owned();
        let url = format!("http://{}", address(peer));
        let stop = stop.clone();
        good_load.spawn(async move {
            let statuses = message_loop(url, None, stop, Duration::from_secs(30)).await;
            (id, statuses)
        });
    }
    // Every cell stays listed the whole time (polled every 250 ms).
    let mut polls = 0;
    while siege_start.elapsed() < SIEGE {
        let good_now = peers_named(&discovery, "good-").await?.len();
        let hostile_now = peers_named(&discovery, "hostile-").await?.len();
        assert_eq!(
            (good_now, hostile_now),
            (GOOD, HOSTILE.len()),
            "cells dropped out of discovery {:.1} s into the siege; host output:\n{}",
            siege_start.elapsed().as_secs_f64(),
            host.tail(40)
        );
        polls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut good_answers = 0;
    while let Some(done) = good_load.join_next().await {
        let (id, statuses) = done?;
        assert!(!statuses.is_empty(), "{id} was never called");
        assert!(
            statuses.iter().all(|s| *s == 200),
            "{id} (a good cell) answered {statuses:?}"
        );
        good_answers += statuses.len();
    }
    let mut hostile_answers = BTreeMap::new();
    while let Some(done) = hostile_load.join_next().await {
        let (id, statuses) = done?;
        assert!(!statuses.is_empty(), "{id} was never called");
        if id == FLOOD {
            // Its sends are cut off by the budget; the call then ends.
            assert!(
                statuses.iter().all(|s| *s == 200),
                "{id} (flooding) answered {statuses:?}"
            );
        } else {
            assert!(
                statuses.iter().all(|s| *s >= 500),
                "{id} (hostile) answered {statuses:?}"
            );
        }
        hostile_answers.insert(id, statuses.len());
    }
    // The flood reached its target, within the send budget (8 sends per
    // call by default), and the target still answers.
    let target_url = format!("http://{}", address(&flood_peer));
    let (status, received) = get_json(
        &client,
        &format!("{target_url}/messages?from_cell={FLOOD}&limit=1"),
    )
    .await
    .unwrap_or_else(|| panic!("{flood_target}: no answer to /messages"));
    assert_eq!(status, 200, "{received}");
    // `total` counts the kept messages (at most the last 100).
    let flooded = received["total"].as_u64().unwrap_or(0);
    let flood_calls = hostile_answers.get(FLOOD).copied().unwrap_or(0) as u64;
    assert!(
        flooded >= flood_calls.min(100) && flooded <= 8 * flood_calls,
        "{flood_target} kept {flooded} messages from {flood_calls} flooding calls"
    );
    let siege = siege_start.elapsed();
    let after = discovery_metrics(&discovery).await?;
    eprintln!(
        "fleet: siege of {:.1} s: {good_answers} good answers (all 200) from {SAMPLE} cells, \
         hostile calls {hostile_answers:?}, {polls} listings with every cell, \
         {flooded} flood messages received",
        siege.as_secs_f64()
    );

    // Heartbeats: one batch per interval, not one request per cell.
    let batch = "discovery_batch_requests_total{call=\"heartbeat\"}";
    let batches = required_series(&after, batch) - series(&before, batch).unwrap_or(0.0);
    let renewals = required_series(&after, "discovery_heartbeats_total")
        - required_series(&before, "discovery_heartbeats_total");
    let intervals = siege.as_secs_f64() / HEARTBEAT.as_secs_f64();
    eprintln!(
        "fleet: {batches} heartbeat batches renewing {renewals} cells in {intervals:.1} intervals \
         (one request per cell would be {:.0})",
        intervals * (GOOD + HOSTILE.len()) as f64
    );
    assert!(batches >= 1.0, "no heartbeat batch in {siege:?}");
    assert!(
        batches <= 5.0 * intervals + 5.0,
        "{batches} heartbeat batches in {intervals:.1} intervals"
    );
    assert!(
        renewals >= GOOD as f64,
        "only {renewals} cells renewed by {batches} batches"
    );
    let expired = "discovery_evictions_total{reason=\"expired\"}";
    assert_eq!(
        series(&after, expired),
        Some(0.0),
        "cells expired during the siege"
    );
    // And each sampled good cell's own heartbeat moved on.
    for peer in peers_named(&discovery, "good-").await? {
        let id = peer["cell_id"].as_str().unwrap_or_default();
        if let Some(seen) = seen_before.get(id) {
            assert_ne!(
                &peer["last_seen"], seen,
                "{id} not renewed during the siege"
            );
        }
    }

    // The admin API: the hostile cells were reset or failed, and run; the
    // good ones run, registered, never failed.
    let (status, listing) = admin_get(admin, "/cells").await?;
    assert_eq!(status, 200, "{listing}");
    for entry in listing["cells"].as_array().cloned().unwrap_or_default() {
        let id = entry["cell_id"].as_str().unwrap_or_default();
        assert_eq!(entry["state"], "running", "{entry}");
        assert_eq!(entry["registration"], "registered", "{entry}");
        if id == FLOOD {
            // It never failed: the host refused its sends past the budget.
            assert_eq!(entry["resets"], 0, "{entry}");
        } else if id.starts_with("hostile-") {
            let hurt =
                entry["resets"].as_u64().unwrap_or(0) + entry["failures"].as_u64().unwrap_or(0);
            assert!(hurt > 0, "{entry}");
        } else {
            assert_eq!(entry["failures"], 0, "{entry}");
            assert_eq!(entry["resets"], 0, "{entry}");
        }
    }
    assert_eq!(
        listing["counts"]["running"],
        GOOD + HOSTILE.len(),
        "{listing}"
    );
    assert_eq!(listing["counts"]["failed"], 0, "{listing}");

    // Shutdown: SIGTERM, exit 0 within 5x the shutdown's own bounds, every
    // cell deregistered (not expired: discovery counts them as such).
    let took = host.stop_cleanly().await?;
    let left: Vec<Value> = discovery
        .peers()
        .await?
        .into_iter()
        .filter(|p| listed_at.contains_key(p["cell_id"].as_str().unwrap_or_default()))
        .collect();
    assert!(left.is_empty(), "still listed after the exit: {left:?}");
    let end = discovery_metrics(&discovery).await?;
    let deregistered = "discovery_evictions_total{reason=\"deregistered\"}";
    assert_eq!(
        required_series(&end, deregistered) - required_series(&after, deregistered),
        (GOOD + HOSTILE.len()) as f64,
        "not every cell was deregistered; output:\n{}",
        host.tail(40)
    );
    assert_eq!(series(&end, expired), Some(0.0), "cells expired instead");
    assert!(
        required_series(&end, "discovery_batch_requests_total{call=\"deregister\"}") >= 1.0,
        "deregistered one by one"
    );
    eprintln!("fleet: SIGTERM to exit 0 in {:.2} s", took.as_secs_f64());
    Ok(())
}
