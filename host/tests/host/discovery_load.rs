//! Hosts don't multiply load on discovery (issue 10, medium 8): the mesh
//! view is kept with conditional requests, lookups of unknown ids are
//! rate-limited, discovery's answers are read up to a size limit, and the
//! host's client follows no redirects. Counted at fake discoveries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Host, PATIENCE, args, eventually, serve_router};
use anyhow::Result;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use cell_host::discovery_client::{DiscoveryClient, Registration, http_client};
use cellmesh_artifacts::PURE_WASM;

/// What a fake discovery counted.
#[derive(Debug, Default)]
struct Counts {
    heartbeats: AtomicUsize,
    /// `GET /peers` answered with the whole listing.
    listings: AtomicUsize,
    /// `GET /peers` answered 304.
    not_modified: AtomicUsize,
}

impl Counts {
    fn get(&self, counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }

    fn fetches(&self) -> usize {
        self.get(&self.listings) + self.get(&self.not_modified)
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A discovery that accepts `pure` and lists one other peer; with `etag`,
/// it tags the listing and answers a matching `If-None-Match` with 304 (as
/// ours does); without, it behaves as the original service.
fn fake_discovery(etag: Option<&'static str>, counts: Arc<Counts>) -> Router {
    let listing = r#"{"peers":[{"cell_id":"other","ip":"127.0.0.1","port":9,"consciousness_level":0.1,
        "services":[],"branch":"main","type":"cell","hostname":"h","last_seen":"2026-01-01T00:00:00Z"}],
        "count":1,"my_host":"fake"}"#;
    let (hb, peers) = (counts.clone(), counts);
    Router::new()
        .route(
            "/register",
            post(|| async {
                json(
                    StatusCode::OK,
                    r#"{"status":"registered","cell_id":"pure"}"#.into(),
                )
            }),
        )
        .route(
            "/heartbeat",
            post(move || {
                hb.heartbeats.fetch_add(1, Ordering::SeqCst);
                async {
                    json(
                        StatusCode::OK,
                        r#"{"status":"ok","cell_id":"pure","peers_count":2}"#.into(),
                    )
                }
            }),
        )
        .route(
            "/peers",
            get(move |headers: HeaderMap| {
                let matched = etag.is_some_and(|tag| {
                    headers
                        .get(header::IF_NONE_MATCH)
                        .and_then(|v| v.to_str().ok())
                        == Some(tag)
                });
                let counts = peers.clone();
                async move {
                    if matched {
                        counts.not_modified.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::NOT_MODIFIED.into_response();
                    }
                    counts.listings.fetch_add(1, Ordering::SeqCst);
                    let mut answer = json(StatusCode::OK, listing.to_owned());
                    if let Some(tag) = etag {
                        answer
                            .headers_mut()
                            .insert(header::ETAG, tag.parse().unwrap());
                    }
                    answer
                }
            }),
        )
        .route(
            "/peer/{id}",
            delete(|| async {
                json(
                    StatusCode::OK,
                    r#"{"status":"deregistered","cell_id":"pure"}"#.into(),
                )
            }),
        )
}

/// Medium 8: every heartbeat downloaded the whole listing. Now it asks
/// with `If-None-Match`, and a 304 keeps the view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_refreshes_ask_with_if_none_match_and_keep_the_view_on_304() -> Result<()> {
    let counts = Arc::new(Counts::default());
    let (addr, _fake) = serve_router(fake_discovery(Some("W/\"boot-7\""), counts.clone())).await?;
    let host = Host::start(args(
        PURE_WASM,
        &format!("http://{addr}"),
        &["--heartbeat-ms", "50"],
    ))
    .await?;
    eventually("20 heartbeats", PATIENCE, || async {
        (counts.get(&counts.heartbeats) >= 20).then_some(())
    })
    .await;
    let (listings, not_modified) = (
        counts.get(&counts.listings),
        counts.get(&counts.not_modified),
    );
    assert!(
        listings <= 2,
        "{listings} whole listings, {not_modified} 304s"
    );
    assert!(
        not_modified >= 10,
        "{listings} whole listings, {not_modified} 304s"
    );
    let view: Vec<String> = host
        .cell
        .mesh
        .mesh_peers()
        .into_iter()
        .map(|p| p.cell_id)
        .collect();
    assert_eq!(view, ["other"], "the view survives the 304s");
    host.stop().await?;
    Ok(())
}

/// Medium 8: each send to an unknown id fetched the whole listing. Now
/// concurrent misses share one fetch, and misses fetch at most once per
/// second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_of_unknown_ids_share_one_listing_fetch_per_second() -> Result<()> {
    let counts = Arc::new(Counts::default());
    let (addr, _fake) = serve_router(fake_discovery(Some("W/\"boot-7\""), counts.clone())).await?;
    let host = Host::start(args(
        PURE_WASM,
        &format!("http://{addr}"),
        &["--heartbeat-ms", "600000"],
    ))
    .await?;
    eventually("the first listing", PATIENCE, || async {
        (counts.fetches() >= 1).then_some(())
    })
    .await;
    let before = counts.fetches();
    let started = Instant::now();
    let lookups = (0..30).map(|i| {
        let mesh = host.cell.mesh.clone();
        async move { mesh.resolve(&format!("ghost-{i}")).await }
    });
    let found = futures_join_all(lookups).await;
    for i in 0..10 {
        assert!(
            host.cell
                .mesh
                .resolve(&format!("late-ghost-{i}"))
                .await
                .is_none()
        );
    }
    assert!(found.iter().all(Option::is_none));
    let fetched = counts.fetches() - before;
    let allowed = 1 + started.elapsed().as_secs() as usize + 1;
    assert!(
        fetched <= allowed,
        "{fetched} fetches for 40 misses in {:?}",
        started.elapsed()
    );
    host.stop().await?;
    Ok(())
}

/// Medium 8, the original discovery (no ETag): misses fetch the listing at
/// most once per heartbeat interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_etag_misses_fetch_at_most_once_per_heartbeat_interval() -> Result<()> {
    let counts = Arc::new(Counts::default());
    let (addr, _fake) = serve_router(fake_discovery(None, counts.clone())).await?;
    let host = Host::start(args(
        PURE_WASM,
        &format!("http://{addr}"),
        &["--heartbeat-ms", "30000"],
    ))
    .await?;
    eventually("the first listing", PATIENCE, || async {
        (counts.fetches() >= 1).then_some(())
    })
    .await;
    let before = counts.fetches();
    let started = Instant::now();
    for i in 0..15 {
        assert!(
            host.cell
                .mesh
                .resolve(&format!("ghost-{i}"))
                .await
                .is_none()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fetched = counts.fetches() - before;
    assert!(
        fetched <= 1 + (started.elapsed().as_secs() / 30) as usize,
        "{fetched} fetches in {:?}",
        started.elapsed()
    );
    host.stop().await?;
    Ok(())
}

/// Awaits every future (a tiny `join_all`, to need no extra crate).
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("lookup task"));
    }
    out
}

fn registration() -> Registration {
    Registration {
        cell_id: "pure".into(),
        ip: "127.0.0.1".into(),
        port: 8002,
        consciousness_level: 0.1,
        services: vec![],
        branch: "pure".into(),
        cell_type: "pure_cell".into(),
        hostname: "h".into(),
    }
}

/// Medium 8: answers were read without a size limit. A listing over the
/// default 16 MiB, and a register answer over 64 KiB, are refused with an
/// error naming the limit.
#[tokio::test]
async fn discovery_answers_past_their_size_limit_are_refused_saying_so() -> Result<()> {
    let huge_listing = format!(
        r#"{{"peers":[],"count":0,"my_host":"{}"}}"#,
        "x".repeat(17 << 20)
    );
    let big_register = format!(
        r#"{{"status":"registered","cell_id":"pure","pad":"{}"}}"#,
        "x".repeat(100 << 10)
    );
    let router = Router::new()
        .route(
            "/peers",
            get(move || async move { json(StatusCode::OK, huge_listing) }),
        )
        .route(
            "/register",
            post(move || async move { json(StatusCode::OK, big_register) }),
        );
    let (addr, _fake) = serve_router(router).await?;
    let client = DiscoveryClient::new(
        http_client(Duration::from_secs(20)),
        &format!("http://{addr}"),
    );
    let error = client
        .peers()
        .await
        .expect_err("a 17 MiB listing")
        .to_string();
    assert!(error.contains("16777216 bytes"), "{error}");
    let error = client
        .register(&registration())
        .await
        .expect_err("a 100 KiB answer")
        .to_string();
    assert!(error.contains("65536 bytes"), "{error}");
    Ok(())
}

/// High 3 / medium 8: the host's client followed redirects (a POST to
/// discovery could be sent elsewhere). It follows none.
#[tokio::test]
async fn the_discovery_client_follows_no_redirects() -> Result<()> {
    let elsewhere = Arc::new(AtomicUsize::new(0));
    let hits = elsewhere.clone();
    let target = Router::new().route(
        "/register",
        post(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async {
                json(
                    StatusCode::OK,
                    r#"{"status":"registered","cell_id":"pure"}"#.into(),
                )
            }
        }),
    );
    let (target_addr, _target) = serve_router(target).await?;
    let location = format!("http://{target_addr}/register");
    let redirecting = Router::new().route(
        "/register",
        post(move || {
            let location = location.clone();
            async move {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location)],
                )
                    .into_response()
            }
        }),
    );
    let (addr, _fake) = serve_router(redirecting).await?;
    let client = DiscoveryClient::new(
        http_client(Duration::from_secs(5)),
        &format!("http://{addr}"),
    );
    let outcome = client.register(&registration()).await;
    assert_eq!(
        elsewhere.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    let error = outcome
        .expect_err("a redirect is not a registration")
        .to_string();
    assert!(error.contains("307"), "{error}");
    Ok(())
}
