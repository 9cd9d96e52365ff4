//! Router, no socket tests.

use crate::support::args;
use anyhow::Result;
use cellmesh_artifacts::ALPHA_WASM;

async fn oneshot(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Malformed bodies answer in the API's own format, never a panic or an
/// internal error text.
#[tokio::test]
async fn malformed_requests_answer_400_in_the_api_format() -> Result<()> {
    use cell_host::api::{ApiLimits, app};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = cell_host::start(args(ALPHA_WASM, "http://127.0.0.1:9", &[]), listener).await?;
    let router = app(
        host.cell().clone(),
        ApiLimits {
            max_body_bytes: 1024,
            max_concurrent: 8,
        },
    );

    let (status, body) = oneshot(&router, "POST", "/message", b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{body}"
    );
    let (status, body) = oneshot(&router, "POST", "/message", b"[1]".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = oneshot(
        &router,
        "POST",
        "/sync",
        br#"{"from_cell":"x","consciousness_level":"high"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("consciousness_level"),
        "{body}"
    );
    let (status, _) = oneshot(
        &router,
        "POST",
        "/invoke/code-analysis",
        b"not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let big = format!(r#"{{"from_cell":"x","content":"{}"}}"#, "a".repeat(4096)).into_bytes();
    let (status, _) = oneshot(&router, "POST", "/message", big).await;
    assert_eq!(status, 413);
    let (status, body) = oneshot(
        &router,
        "POST",
        "/register_peer",
        br#"{"cell_id":"p","endpoint":"ftp://x"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    Ok(())
}
