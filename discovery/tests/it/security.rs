//! Shared token, per-cell secrets and the admin token.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::*;

fn secured() -> Config {
    Config {
        token: Some("shared-token".into()),
        admin_token: Some("admin-token".into()),
        ..cfg()
    }
}

const BEARER: (&str, &str) = ("authorization", "Bearer shared-token");
const ADMIN: (&str, &str) = ("authorization", "Bearer admin-token");

async fn register(app: &axum::Router, id: &str) -> String {
    let body = cell(id).to_string();
    let a = call(
        app,
        Method::POST,
        "/register",
        Some(body.as_bytes()),
        &[BEARER],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    a.json["secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_shared_token_guards_register_heartbeat_and_deregister() {
    let (_, app) = router(secured());
    let body = cell("a").to_string();
    let a = call(&app, Method::POST, "/register", Some(body.as_bytes()), &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.json["detail"].as_str().unwrap().contains("bearer"));
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = call(
        &app,
        Method::POST,
        "/register",
        Some(body.as_bytes()),
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let secret = register(&app, "a").await;
    let hb = json!({"cell_id": "a"}).to_string();
    let a = call(
        &app,
        Method::POST,
        "/heartbeat",
        Some(hb.as_bytes()),
        &[("x-cell-secret", &secret)],
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::UNAUTHORIZED,
        "secret alone is not enough"
    );
    let a = call(
        &app,
        Method::DELETE,
        "/peer/a",
        None,
        &[("x-cell-secret", &secret)],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Reads stay open.
    assert_eq!(get(&app, "/peers").await.status, StatusCode::OK);
}

#[tokio::test]
async fn only_the_cells_secret_or_the_admin_may_touch_it() {
    let (_, app) = router(secured());
    let secret_a = register(&app, "a").await;
    let secret_b = register(&app, "b").await;
    let hb = json!({"cell_id": "a", "consciousness_level": 1.0}).to_string();
    let a = call(
        &app,
        Method::POST,
        "/heartbeat",
        Some(hb.as_bytes()),
        &[BEARER],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.json["detail"].as_str().unwrap().contains("X-Cell-Secret"));
    let a = call(
        &app,
        Method::POST,
        "/heartbeat",
        Some(hb.as_bytes()),
        &[BEARER, ("x-cell-secret", &secret_b)],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = call(
        &app,
        Method::POST,
        "/heartbeat",
        Some(hb.as_bytes()),
        &[BEARER, ("x-cell-secret", "zz")],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = call(
        &app,
        Method::POST,
        "/heartbeat",
        Some(hb.as_bytes()),
        &[BEARER, ("x-cell-secret", &secret_a)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(
        &app,
        Method::DELETE,
        "/peer/a",
        None,
        &[BEARER, ("x-cell-secret", &secret_b)],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = call(
        &app,
        Method::DELETE,
        "/peer/a",
        None,
        &[BEARER, ("x-cell-secret", &secret_a)],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    // The admin token needs no secret.
    let a = call(&app, Method::DELETE, "/unregister/b", None, &[ADMIN]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(ids(&app).await.is_empty());
    assert!(metric(&app, "discovery_auth_failures_total ").await >= 3.0);
}

#[tokio::test]
async fn without_tokens_anyone_may_act_like_the_original() {
    let (_, app) = router(cfg());
    let a = post(&app, "/register", &cell("a")).await;
    assert!(a.json["secret"].is_string(), "a secret is always issued");
    assert_eq!(delete(&app, "/peer/a").await.status, StatusCode::OK);
}

/// Low 11: `/register` read (up to 64 KiB of) the body before checking the token, so anyone
/// could make discovery wait for and buffer bodies. The token is checked first now: a bad
/// token with a huge, slow body is refused without the body being read at all.
#[tokio::test(start_paused = true)]
async fn register_checks_the_token_before_reading_the_body() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Poll;

    use axum::body::{Body, Bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    let (_, app) = router(secured());
    for auth in [None, Some("Bearer wrong")] {
        let polled = Arc::new(AtomicBool::new(false));
        let flag = polled.clone();
        // A body that never ends (a slow client) and records whether anyone read it.
        let never = futures::stream::poll_fn(move |_| {
            flag.store(true, Ordering::SeqCst);
            Poll::<Option<Result<Bytes, std::io::Error>>>::Pending
        });
        let mut req = Request::post("/register")
            .header("content-type", "application/json")
            .header("content-length", "1000000000");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from_stream(never)).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "auth {auth:?}");
        assert!(!polled.load(Ordering::SeqCst), "the body was read");
    }
}
