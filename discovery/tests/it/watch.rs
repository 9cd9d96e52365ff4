//! The SSE watch stream: events, resumption, filters, keep-alives, shutdown.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::*;

/// One parsed SSE event.
#[derive(Debug)]
pub struct Ev {
    pub event: String,
    pub id: String,
    pub data: Value,
}

/// A watch stream opened through the router.
pub struct Stream {
    body: Body,
    buf: String,
    pub comments: Vec<String>,
}

impl Stream {
    pub async fn open(app: &axum::Router, uri: &str, last_id: Option<&str>) -> Self {
        let mut req = Request::builder().method(Method::GET).uri(uri);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Self {
            body: resp.into_body(),
            buf: String::new(),
            comments: Vec::new(),
        }
    }

    /// Reads raw frames until a comment line (a keep-alive) arrives.
    pub async fn comment(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .expect("a frame within 5 s")
                .expect("stream open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                let text = String::from_utf8_lossy(&data).into_owned();
                if let Some(c) = text.strip_prefix(':') {
                    return c.trim().to_owned();
                }
                self.buf.push_str(&text);
            }
        }
    }

    /// The next event, or None when the stream ends or nothing comes within 5 s.
    pub async fn next(&mut self) -> Option<Ev> {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    } else if let Some(v) = line.strip_prefix(':') {
                        self.comments.push(v.trim().to_owned());
                    }
                }
                if event.is_empty() {
                    continue;
                }
                return Some(Ev {
                    event,
                    id,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let frame = tokio::time::timeout(Duration::from_secs(5), self.body.frame())
                .await
                .ok()??;
            let frame = frame.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn join_update_leave_with_reasons_and_revisions() {
    let (state, app) = router(cfg());
    let _reaper = state.spawn_reaper();
    let mut s = Stream::open(&app, "/peers/watch", None).await;
    let snap = s.next().await.unwrap();
    assert_eq!(snap.event, "snapshot");
    assert_eq!(snap.data["count"], 0);
    post(&app, "/register", &pure()).await;
    let join = s.next().await.unwrap();
    assert_eq!(
        (join.event.as_str(), &join.data["cell_id"]),
        ("join", &json!("pure"))
    );
    assert_eq!(join.data["peer"]["type"], "pure_cell");
    let r1 = join.data["revision"].as_u64().unwrap();
    assert!(join.id.ends_with(&format!(":{r1}")));
    post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": 0.1}),
    )
    .await;
    post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "pure", "consciousness_level": 0.7}),
    )
    .await;
    let upd = s.next().await.unwrap();
    assert_eq!(
        upd.event, "update",
        "a heartbeat without a level change is no event"
    );
    assert_eq!(upd.data["peer"]["consciousness_level"], 0.7);
    assert_eq!(upd.data["revision"].as_u64().unwrap(), r1 + 1);
    post(&app, "/register", &pure()).await;
    let leave = s.next().await.unwrap();
    assert_eq!(
        (leave.event.as_str(), &leave.data["reason"]),
        ("leave", &json!("replaced"))
    );
    assert_eq!(s.next().await.unwrap().event, "join");
    delete(&app, "/peer/pure").await;
    let leave = s.next().await.unwrap();
    assert_eq!(leave.data["reason"], "deregistered");
    post(&app, "/register", &alpha()).await;
    assert_eq!(s.next().await.unwrap().event, "join");
    tokio::time::sleep(Duration::from_secs(16)).await;
    let leave = s.next().await.unwrap();
    assert_eq!(
        (
            leave.event.as_str(),
            &leave.data["reason"],
            &leave.data["cell_id"]
        ),
        ("leave", &json!("expired"), &json!("alpha"))
    );
    state.shutdown_token().cancel();
}

#[tokio::test(start_paused = true)]
async fn last_event_id_resumes_without_loss() {
    let (_, app) = router(cfg());
    let mut s = Stream::open(&app, "/peers/watch", None).await;
    s.next().await.unwrap();
    post(&app, "/register", &cell("a")).await;
    let a = s.next().await.unwrap();
    drop(s);
    post(&app, "/register", &cell("b")).await;
    delete(&app, "/peer/a").await;
    post(&app, "/register", &cell("c")).await;
    let mut r = Stream::open(&app, "/peers/watch", Some(&a.id)).await;
    let got: Vec<(String, String)> = vec![
        r.next().await.unwrap(),
        r.next().await.unwrap(),
        r.next().await.unwrap(),
    ]
    .into_iter()
    .map(|e| (e.event, e.data["cell_id"].as_str().unwrap().to_owned()))
    .collect();
    assert_eq!(
        got,
        vec![
            ("join".into(), "b".into()),
            ("leave".into(), "a".into()),
            ("join".into(), "c".into())
        ]
    );
    // Up to date: nothing more until the next change.
    post(&app, "/register", &cell("d")).await;
    assert_eq!(r.next().await.unwrap().data["cell_id"], "d");
}

#[tokio::test(start_paused = true)]
async fn too_far_behind_or_unknown_ids_get_one_snapshot() {
    let (_, app) = router(Config {
        watch_history: 4,
        ..cfg()
    });
    let mut s = Stream::open(&app, "/peers/watch", None).await;
    s.next().await.unwrap();
    post(&app, "/register", &cell("first")).await;
    let first = s.next().await.unwrap();
    for i in 0..10 {
        post(&app, "/register", &cell(&format!("n{i}"))).await;
    }
    let mut r = Stream::open(&app, "/peers/watch", Some(&first.id)).await;
    let snap = r.next().await.unwrap();
    assert_eq!(snap.event, "snapshot");
    assert_eq!(snap.data["count"], 11);
    let mut r = Stream::open(&app, "/peers/watch", Some("otherboot:3")).await;
    assert_eq!(r.next().await.unwrap().event, "snapshot");
}

#[tokio::test(start_paused = true)]
async fn filters_apply_to_the_stream() {
    let (_, app) = router(cfg());
    let mut s = Stream::open(&app, "/peers/watch?type=alpha_cell", None).await;
    assert_eq!(s.next().await.unwrap().data["count"], 0);
    post(&app, "/register", &pure()).await;
    post(&app, "/register", &alpha()).await;
    let e = s.next().await.unwrap();
    assert_eq!(
        (e.event.as_str(), &e.data["cell_id"]),
        ("join", &json!("alpha"))
    );
    let mut m = Stream::open(&app, "/peers/watch?min_level=5", None).await;
    assert_eq!(m.next().await.unwrap().data["count"], 1);
    post(
        &app,
        "/heartbeat",
        &json!({"cell_id": "alpha", "consciousness_level": 1.0}),
    )
    .await;
    let e = m.next().await.unwrap();
    assert_eq!(
        (e.event.as_str(), &e.data["reason"]),
        ("leave", &json!("filtered"))
    );
}

#[tokio::test(start_paused = true)]
async fn keepalives_watcher_gauge_and_shutdown() {
    let (state, app) = router(Config {
        watch_keepalive: Duration::from_secs(1),
        ..cfg()
    });
    let mut s = Stream::open(&app, "/peers/watch", None).await;
    s.next().await.unwrap();
    assert_eq!(metric(&app, "discovery_watchers ").await, 1.0);
    let start = tokio::time::Instant::now();
    assert_eq!(s.comment().await, "keep-alive");
    assert_eq!(s.comment().await, "keep-alive");
    assert!(start.elapsed() >= Duration::from_secs(2));
    post(&app, "/register", &pure()).await;
    assert_eq!(s.next().await.unwrap().event, "join");
    state.shutdown_token().cancel();
    assert!(s.next().await.is_none(), "the stream ends on shutdown");
    drop(s);
    assert_eq!(metric(&app, "discovery_watchers ").await, 0.0);
}
