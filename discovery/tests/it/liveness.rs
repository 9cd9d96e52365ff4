//! Expiry, start-up grace, leases and the mass-eviction guard, on paused tokio time.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;
use tokio::time::{Instant, advance, sleep, sleep_until};

use crate::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_expires_at_its_deadline_within_100ms() {
    let (state, app) = router(cfg());
    let _reaper = state.spawn_reaper();
    let t0 = Instant::now();
    post(&app, "/register", &pure()).await;
    sleep(Duration::from_secs(10)).await;
    post(&app, "/heartbeat", &json!({"cell_id": "pure"})).await;
    let deadline = t0 + Duration::from_secs(25);
    sleep_until(deadline - ms(1)).await;
    assert_eq!(
        ids(&app).await,
        vec!["pure"],
        "still listed just before its deadline"
    );
    sleep_until(deadline + ms(100)).await;
    assert!(
        ids(&app).await.is_empty(),
        "removed within 100 ms of its deadline"
    );
    assert_eq!(
        metric(&app, "discovery_evictions_total{reason=\"expired\"}").await,
        1.0
    );
    state.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn age_ms_is_measured_on_the_monotonic_clock() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    advance(ms(1234)).await;
    assert_eq!(get(&app, "/peers/pure").await.json["age_ms"], 1234);
    post(&app, "/heartbeat", &json!({"cell_id": "pure"})).await;
    assert_eq!(get(&app, "/peers").await.json["peers"][0]["age_ms"], 0);
}

#[tokio::test(start_paused = true)]
async fn a_short_ttl_for_host_tests() {
    let (state, app) = router(Config {
        ttl: Duration::from_secs(2),
        startup_grace: Duration::ZERO,
        ..Config::default()
    });
    let _reaper = state.spawn_reaper();
    post(&app, "/register", &cell("solo")).await;
    sleep(ms(1900)).await;
    assert_eq!(ids(&app).await, vec!["solo"]);
    sleep(ms(200)).await;
    assert!(ids(&app).await.is_empty());
    state.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn nothing_is_evicted_during_the_startup_grace_window() {
    let (state, app) = router(Config {
        ttl: Duration::from_secs(5),
        startup_grace: Duration::from_secs(15),
        ..Config::default()
    });
    let _reaper = state.spawn_reaper();
    let t0 = Instant::now();
    post(&app, "/register", &pure()).await;
    assert_eq!(
        get(&app, "/readyz").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    sleep_until(t0 + Duration::from_secs(10)).await;
    assert_eq!(ids(&app).await, vec!["pure"], "held by the grace window");
    assert_eq!(metric(&app, "discovery_evictions_held ").await, 1.0);
    sleep_until(t0 + Duration::from_secs(15) + ms(100)).await;
    assert!(
        ids(&app).await.is_empty(),
        "evicted once the grace window ends"
    );
    assert_eq!(get(&app, "/readyz").await.status, StatusCode::OK);
    state.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn mass_eviction_is_held_then_released() {
    let (state, app) = router(Config {
        mass_eviction_min_peers: 10,
        mass_eviction_share: 0.5,
        mass_eviction_hold: Duration::from_secs(15),
        ..cfg()
    });
    let _reaper = state.spawn_reaper();
    let t0 = Instant::now();
    for i in 0..20 {
        post(&app, "/register", &cell(&format!("c{i:02}"))).await;
    }
    let beat = |range: std::ops::Range<usize>| {
        let app = app.clone();
        async move {
            for i in range {
                let a = post(&app, "/heartbeat", &json!({"cell_id": format!("c{i:02}")})).await;
                assert_eq!(a.status, StatusCode::OK);
            }
        }
    };
    sleep_until(t0 + Duration::from_secs(14)).await;
    beat(0..5).await;
    // At 15 s, 15 of 20 peers would expire at once: held.
    sleep_until(t0 + Duration::from_secs(16)).await;
    assert_eq!(ids(&app).await.len(), 20, "evictions held");
    assert_eq!(metric(&app, "discovery_eviction_hold_active ").await, 1.0);
    assert_eq!(metric(&app, "discovery_evictions_held ").await, 15.0);
    assert_eq!(metric(&app, "discovery_eviction_holds_total ").await, 1.0);
    // Cells coming back during the hold are rescued (12 of 20 stay silent: still over half,
    // so the hold goes on; see `a_hold_ends_as_soon_as_the_mesh_recovers` for the other case).
    beat(5..8).await;
    assert_eq!(metric(&app, "discovery_evictions_held ").await, 12.0);
    sleep_until(t0 + Duration::from_secs(29)).await;
    assert_eq!(metric(&app, "discovery_eviction_hold_active ").await, 1.0);
    beat(0..8).await;
    // The hold ends by itself at 30 s: the still-silent are evicted, no ghosts.
    sleep_until(t0 + Duration::from_secs(30) + ms(100)).await;
    let left = ids(&app).await;
    assert_eq!(left.len(), 8, "{left:?}");
    assert!(left.iter().all(|id| id.as_str() < "c08"));
    assert_eq!(metric(&app, "discovery_eviction_hold_active ").await, 0.0);
    assert_eq!(
        metric(&app, "discovery_evictions_total{reason=\"expired\"}").await,
        12.0
    );
    assert_eq!(
        metric(&app, "discovery_eviction_holds_ended_early_total ").await,
        0.0
    );
    state.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn small_meshes_and_gradual_expiry_are_never_held() {
    let (state, app) = router(cfg());
    let _reaper = state.spawn_reaper();
    // One cell of one dies: below the guard's minimum population.
    post(&app, "/register", &cell("only")).await;
    sleep(Duration::from_secs(15) + ms(100)).await;
    assert!(ids(&app).await.is_empty());
    // 20 cells, dying one every TTL/4: never more than half within a TTL window.
    for i in 0..20 {
        post(&app, "/register", &cell(&format!("g{i:02}"))).await;
    }
    for round in 0..4 {
        sleep(ms(3750)).await;
        for i in (round + 1)..20 {
            post(&app, "/heartbeat", &json!({"cell_id": format!("g{i:02}")})).await;
        }
    }
    // By now g00..g03 have expired one by one, and nothing was held.
    sleep(Duration::from_secs(12)).await;
    assert_eq!(ids(&app).await.len(), 16);
    assert_eq!(metric(&app, "discovery_eviction_holds_total ").await, 0.0);
    state.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn old_incarnations_get_409_and_change_nothing() {
    let (_, app) = router(cfg());
    let first = post(&app, "/register", &pure()).await.json["incarnation"]
        .as_u64()
        .unwrap();
    let second = post(&app, "/register", &pure()).await.json["incarnation"]
        .as_u64()
        .unwrap();
    assert!(second > first);
    let a = post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "incarnation": first, "consciousness_level": 9.0}),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.json["detail"].as_str().unwrap().contains("incarnation"));
    assert_eq!(
        get(&app, "/peers/pure").await.json["consciousness_level"],
        0.1
    );
    // The old process's shutdown cannot remove its replacement.
    let a = delete(&app, &format!("/peer/pure?incarnation={first}")).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = call(
        &app,
        axum::http::Method::DELETE,
        "/unregister/pure",
        None,
        &[("x-cell-incarnation", &first.to_string())],
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert_eq!(ids(&app).await, vec!["pure"]);
    let a = post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "incarnation": second}),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["incarnation"], second);
    assert_eq!(
        delete(&app, &format!("/peer/pure?incarnation={second}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(metric(&app, "discovery_reregistrations_total ").await, 1.0);
    assert_eq!(
        metric(&app, "discovery_evictions_total{reason=\"replaced\"}").await,
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn etag_follows_membership_and_level_not_time() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    let a = get(&app, "/peers").await;
    let tag = a.headers["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with("W/\""));
    let again = call(
        &app,
        axum::http::Method::GET,
        "/peers",
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    advance(Duration::from_secs(3)).await;
    post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": 0.1}),
    )
    .await;
    let same = call(
        &app,
        axum::http::Method::GET,
        "/peers?type=pure_cell",
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(
        same.status,
        StatusCode::NOT_MODIFIED,
        "heartbeats and time do not change it"
    );
    post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": 0.2}),
    )
    .await;
    let changed = call(
        &app,
        axum::http::Method::GET,
        "/peers",
        None,
        &[("if-none-match", &tag)],
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "a level change does");
    assert_ne!(changed.headers["etag"].to_str().unwrap(), tag);
}

#[tokio::test]
async fn filters_combine_with_and() {
    let (_, app) = router(cfg());
    post(&app, "/register", &pure()).await;
    post(&app, "/register", &alpha()).await;
    let mut dev = alpha();
    dev["cell_id"] = json!("alpha-dev");
    dev["branch"] = json!("dev");
    dev["consciousness_level"] = json!(1.0);
    post(&app, "/register", &dev).await;
    let q = |uri: &'static str| {
        let app = app.clone();
        async move {
            let a = get(&app, uri).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}");
            let mut v: Vec<String> = a.json["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["cell_id"].as_str().unwrap().to_owned())
                .collect();
            v.sort();
            assert_eq!(a.json["count"].as_u64().unwrap() as usize, v.len());
            v
        }
    };
    assert_eq!(
        q("/peers?type=alpha_cell").await,
        vec!["alpha", "alpha-dev"]
    );
    assert_eq!(
        q("/peers?service=geometric-engine&branch=main").await,
        vec!["alpha"]
    );
    assert_eq!(q("/peers?min_level=1").await, vec!["alpha", "alpha-dev"]);
    assert_eq!(q("/peers?min_level=2&type=alpha_cell").await, vec!["alpha"]);
    assert_eq!(
        q("/peers?service=consciousness%2Dprimitives").await,
        vec!["pure"]
    );
    assert!(q("/peers?branch=nope").await.is_empty());
    assert_eq!(get(&app, "/peers/alpha").await.json["type"], "alpha_cell");
    assert_eq!(
        get(&app, "/peers/nobody").await.status,
        StatusCode::NOT_FOUND
    );
}

/// Low 9 (the finding as reproduced): discovery paused for longer than the TTL, resumed, every
/// cell heartbeating again within a second; then 30 % of the cells died and were reaped only
/// when the 15 s hold ended. The hold ends once the mesh has recovered, so they go at their
/// deadline (TTL after their last heartbeat) plus at most one check.
#[tokio::test(start_paused = true)]
async fn a_hold_ends_as_soon_as_the_mesh_recovers() {
    let ttl = Duration::from_secs(3);
    let (state, app) = router(Config {
        ttl,
        mass_eviction_min_peers: 10,
        mass_eviction_share: 0.5,
        mass_eviction_hold: Duration::from_secs(15),
        ..cfg()
    });
    let _reaper = state.spawn_reaper();
    let t0 = Instant::now();
    let id = |i: usize| format!("c{i:02}");
    for i in 0..20 {
        post(&app, "/register", &cell(&id(i))).await;
    }
    // Everyone silent past the TTL (as after a pause): held.
    sleep_until(t0 + Duration::from_secs(4)).await;
    assert_eq!(ids(&app).await.len(), 20);
    assert_eq!(metric(&app, "discovery_eviction_hold_active ").await, 1.0);
    // Every cell is back within a second ...
    for i in 0..20 {
        sleep_until(t0 + Duration::from_secs(4) + ms(50 * i as u64)).await;
        let a = post(&app, "/heartbeat", &json!({"cell_id": id(i)})).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let last_beat_of_the_dead = t0 + Duration::from_secs(4) + ms(50 * 19);
    // ... and 30 % (c14..c19) die; the rest beat every second.
    for round in 1..=8u64 {
        sleep_until(t0 + Duration::from_secs(4 + round)).await;
        for i in 0..14 {
            post(&app, "/heartbeat", &json!({"cell_id": id(i)})).await;
        }
    }
    // t0 + 12 s: the dead are gone (deadline <= t0 + 7.95 s, plus one check of at most 1 s),
    // long before the 15 s hold would have ended (t0 + 18 s).
    assert!(last_beat_of_the_dead + ttl + Duration::from_secs(1) < Instant::now());
    let left = ids(&app).await;
    assert_eq!(left.len(), 14, "{left:?}");
    assert!(left.iter().all(|x| x.as_str() < "c14"));
    assert_eq!(metric(&app, "discovery_eviction_hold_active ").await, 0.0);
    assert_eq!(metric(&app, "discovery_eviction_holds_total ").await, 1.0);
    state.shutdown_token().cancel();
}
