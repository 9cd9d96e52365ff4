//! Failure domains: what a batch registration sets, the mass-eviction guard counting
//! domains, and how fast a dead host's cells are reaped on a real server.

use std::time::Duration;

use cellmesh_wire::batch::{BatchHeartbeatAnswer, BatchRegisterAnswer};
use discovery::{AppState, Config, serve_with_state};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};

use super::{HOST, batch, beat, beat_all, cells, leave, ms, names, register_all};
use crate::*;

/// A batch registration puts its cells in the host's domain; the single call clears it.
#[tokio::test]
async fn failure_domains_follow_the_registering_call() {
    let (state, app) = router(cfg());
    register_all(&app, HOST, &["x".into(), "y".into()], &[]).await;
    post(&app, "/register", &cell("z")).await;
    let domain = |id: &str| state.registry().lock().domain(id).map(|d| d.to_string());
    assert_eq!(domain("x").as_deref(), Some(HOST));
    assert_eq!(domain("z"), None);
    assert_eq!(metric(&app, "discovery_failure_domains ").await, 2.0);
    // x registers again by itself: its own domain now.
    post(&app, "/register", &cell("x")).await;
    assert_eq!(domain("x"), None);
    assert_eq!(metric(&app, "discovery_failure_domains ").await, 3.0);
    // y's host restarted under a new host id.
    register_all(&app, "host-b", &["y".into()], &[]).await;
    assert_eq!(domain("y").as_deref(), Some("host-b"));
    assert_eq!(metric(&app, "discovery_failure_domains ").await, 3.0);
    // A batch heartbeat does not move a cell to its host.
    let inc = state.registry().lock().lease("z").unwrap().0;
    beat_all(&app, "host-b", &["z".into()], &[(inc, String::new())]).await;
    assert_eq!(domain("z"), None);
}

fn guarded() -> Config {
    Config {
        mass_eviction_min_peers: 10,
        mass_eviction_share: 0.5,
        mass_eviction_hold: Duration::from_secs(15),
        ..cfg()
    }
}

/// One host of 1,000 cells dying among 20 single cells is one failure in 21: reaped at its
/// deadline, not held (counted in peers it would be 1,000 of 1,020).
#[tokio::test(start_paused = true)]
async fn a_dead_host_among_single_cells_is_reaped_not_held() {
    let (state, app) = router(guarded());
    let _reaper = state.spawn_reaper();
    let t0 = Instant::now();
    let singles = names("s", 20);
    for id in &singles {
        post(&app, "/register", &cell(id)).await;
    }
    let host = names("h", 1000);
    register_all(&app, HOST, &host, &[]).await;
    assert_eq!(metric(&app, "discovery_failure_domains ").await, 21.0);
    sleep_until(t0 + Duration::from_secs(10)).await;
    for id in &singles {
        post(&app, "/heartbeat", &json!({"cell_id": id})).await;
    }
    // The host's cells expire at 15 s.
    sleep_until(t0 + Duration::from_secs(15) + ms(100)).await;
    assert_eq!(ids(&app).await, singles, "the host's cells are gone");
    assert_eq!(metric(&app, "discovery_eviction_holds_total ").await, 0.0);
    assert_eq!(
        metric(&app, "discovery_evictions_total{reason=\"expired\"}").await,
        1000.0
    );
    assert_eq!(metric(&app, "discovery_failure_domains ").await, 20.0);
    state.shutdown_token().cancel();
}

/// Six of ten hosts dying at once is still a mass expiry: held.
#[tokio::test(start_paused = true)]
async fn most_hosts_dying_at_once_is_held() {
    let (state, app) = router(guarded());
    let _reaper = state.spawn_reaper();
    let t0 = Instant::now();
    let mut hosts = Vec::new();
    for h in 0..10 {
        let ids = names(&format!("h{h}-"), 5);
        let leases = register_all(&app, &format!("host-{h}"), &ids, &[]).await;
        hosts.push((ids, leases));
    }
    assert_eq!(metric(&app, "discovery_failure_domains ").await, 10.0);
    sleep_until(t0 + Duration::from_secs(10)).await;
    for (h, (ids, leases)) in hosts.iter().enumerate().skip(6) {
        beat_all(&app, &format!("host-{h}"), ids, leases).await;
    }
    sleep_until(t0 + Duration::from_secs(15) + ms(100)).await;
    assert_eq!(ids(&app).await.len(), 50, "evictions held");
    assert_eq!(metric(&app, "discovery_eviction_hold_active ").await, 1.0);
    assert_eq!(metric(&app, "discovery_evictions_held ").await, 30.0);
    // The hold runs out: the dead hosts' cells go, the live ones stay.
    sleep_until(t0 + Duration::from_secs(24)).await;
    for (h, (ids, leases)) in hosts.iter().enumerate().skip(6) {
        beat_all(&app, &format!("host-{h}"), ids, leases).await;
    }
    sleep_until(t0 + Duration::from_secs(30) + ms(100)).await;
    assert_eq!(ids(&app).await.len(), 20);
    assert_eq!(metric(&app, "discovery_eviction_holds_total ").await, 1.0);
    state.shutdown_token().cancel();
}

/// `mass_eviction_min_peers` applies to domains: three hosts are a small mesh, never held,
/// however many cells they run.
#[tokio::test(start_paused = true)]
async fn the_minimum_population_counts_domains() {
    let (state, app) = router(guarded());
    let _reaper = state.spawn_reaper();
    for h in 0..3 {
        register_all(
            &app,
            &format!("host-{h}"),
            &names(&format!("m{h}-"), 100),
            &[],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(15) + ms(100)).await;
    assert!(ids(&app).await.is_empty());
    assert_eq!(metric(&app, "discovery_eviction_holds_total ").await, 0.0);
    state.shutdown_token().cancel();
}

/// Host death on a real server: 1,000 cells renewed by one batch expire together and are all
/// reaped within TTL + 1 s of their renewal (asserted with a 5 s margin), the evictions
/// spread over well under a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_thousand_cells_are_reaped_together() {
    let ttl = Duration::from_secs(2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(Config { ttl, ..cfg() });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with_state(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    // Over a socket too, a batch body far over the single calls' limit is read whole.
    let mut big = batch("big-host", cells(&names("big", 1)));
    big["padding"] = json!("p".repeat(3 * 1024 * 1024));
    let r = http
        .post(format!("{base}/batch/register"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/batch/deregister"))
        .json(&batch("big-host", vec![leave("big0000", 0, "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["refused"][0]["code"], 409);
    let r = http
        .delete(format!("{base}/peer/big0000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ids = names("dead", 1000);
    let started = std::time::Instant::now();
    let r = http
        .post(format!("{base}/batch/register"))
        .json(&batch("dying-host", cells(&ids)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reg: BatchRegisterAnswer = r.json().await.unwrap();
    let register_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(reg.results.iter().all(|r| r.is_ok()));
    // Leave events, timed as they happen (the channel holds 1,024: enough for 1,000 leaves).
    let (mut events, _) = state.registry().subscribe(None);
    let collector = tokio::spawn(async move {
        let mut at = Vec::new();
        while at.len() < 1000 {
            match events.recv().await {
                Ok(e) if e.kind.name() == "leave" => at.push(std::time::Instant::now()),
                Ok(_) => {}
                Err(e) => panic!("event stream: {e}"),
            }
        }
        at
    });
    let beats: Vec<Value> = ids
        .iter()
        .zip(&reg.results)
        .map(|(id, r)| beat(id, 0.0, r.incarnation.unwrap(), r.secret.as_ref().unwrap()))
        .collect();
    // The host's last heartbeat: the renewal happens after `sent`.
    let sent = std::time::Instant::now();
    let r = http
        .post(format!("{base}/batch/heartbeat"))
        .json(&batch("dying-host", beats))
        .send()
        .await
        .unwrap();
    let heartbeat_ms = sent.elapsed().as_secs_f64() * 1e3;
    let hb: BatchHeartbeatAnswer = r.json().await.unwrap();
    assert_eq!(hb.renewed, 1000);
    // The host dies: poll until every cell is gone.
    let gone = loop {
        let count = http
            .get(format!("{base}/peers"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["count"]
            .as_u64()
            .unwrap();
        if count == 0 {
            break sent.elapsed();
        }
        assert!(
            sent.elapsed() < ttl + Duration::from_secs(10),
            "{count} cells still listed"
        );
        tokio::time::sleep(ms(10)).await;
    };
    let leaves = tokio::time::timeout(Duration::from_secs(5), collector)
        .await
        .expect("1,000 leave events")
        .unwrap();
    let first = leaves[0].duration_since(sent);
    let spread = leaves[999].duration_since(leaves[0]);
    println!(
        "1,000 cells of one host: batch register {register_ms:.1} ms, batch heartbeat \
         {heartbeat_ms:.1} ms; TTL {} ms; first eviction {} ms and last {} ms after the last \
         heartbeat was sent (evictions spread over {:.2} ms); gone from /peers after {} ms",
        ttl.as_millis(),
        first.as_millis(),
        (first + spread).as_millis(),
        spread.as_secs_f64() * 1e3,
        gone.as_millis()
    );
    assert!(first >= ttl, "evicted before the deadline: {first:?}");
    assert!(gone <= ttl + Duration::from_secs(5), "took {gone:?}");
    assert!(spread <= Duration::from_secs(5), "spread over {spread:?}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
