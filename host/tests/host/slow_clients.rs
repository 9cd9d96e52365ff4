//! The host's HTTP server under slow clients (issue 10, medium 5): header,
//! body and request timeouts, and one global concurrency limit.

use std::time::{Duration, Instant};

use crate::TTL;
use crate::support::{Discovery, Host, args, client};
use anyhow::Result;
use cellmesh_artifacts::PURE_WASM;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers of a `POST /message` announcing a body that never comes.
const HEADERS_WITHOUT_BODY: &[u8] = b"POST /message HTTP/1.1\r\nHost: cell\r\n\
Content-Type: application/json\r\nContent-Length: 100\r\n\r\n";
/// The start of a request whose headers never end.
const PARTIAL_HEADERS: &[u8] = b"POST /message HTTP/1.1\r\nHost: cell\r\nX-Slow: ";

/// Opens `n` connections to `addr`, each having sent `bytes`.
async fn slow_sockets(addr: std::net::SocketAddr, n: usize, bytes: &[u8]) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket.write_all(bytes).await.expect("write");
        sockets.push(socket);
    }
    sockets
}

/// Waits until the server closes `socket` (what it sent first, if
/// anything, is returned), failing after `within`.
async fn closed_within(mut socket: TcpStream, within: Duration) -> String {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, socket.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "still open after {within:?}");
    String::from_utf8_lossy(&seen).into_owned()
}

/// Medium 5: 1,030 sockets sending headers without a body blocked
/// `/message` (the concurrency limit was per route and held while a body
/// was awaited). 1,100 of them, plus 100 sockets sending partial headers,
/// no longer delay another client's `/message`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_sending_headers_without_a_body_do_not_block_message() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let host = Host::start(args(PURE_WASM, &discovery.url(), &[])).await?;
    let stalled = slow_sockets(host.addr, 1_100, HEADERS_WITHOUT_BODY).await;
    let partial = slow_sockets(host.addr, 100, PARTIAL_HEADERS).await;
    let asked = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client()
            .post(format!("{}/message", host.url()))
            .json(&json!({"from_cell": "t", "content": "through"}))
            .send(),
    )
    .await;
    // Target: tens of milliseconds; the default timeouts (10 s) are far
    // above the bound, so this is "meanwhile", not "after they were dropped".
    let took = asked.elapsed();
    let response = answer.map_err(|_| anyhow::anyhow!("/message blocked for {took:?}"))??;
    assert_eq!(response.status(), 200);
    drop((stalled, partial));
    host.stop().await?;
    Ok(())
}

/// Medium 5: a socket that never finishes its headers is dropped after
/// the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_sending_partial_headers_are_dropped_after_the_header_timeout() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let host = Host::start(args(
        PURE_WASM,
        &discovery.url(),
        &["--header-timeout-ms", "500"],
    ))
    .await?;
    let sockets = slow_sockets(host.addr, 50, PARTIAL_HEADERS).await;
    let opened = Instant::now();
    for socket in sockets {
        // Bound: 20x the timeout.
        closed_within(socket, Duration::from_secs(10)).await;
    }
    assert!(
        opened.elapsed() >= Duration::from_millis(400),
        "closed before the timeout"
    );
    host.stop().await?;
    Ok(())
}

/// Medium 5: a request whose body never comes is answered 408 and closed
/// after the body timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_body_never_comes_get_408_after_the_body_timeout() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let host = Host::start(args(
        PURE_WASM,
        &discovery.url(),
        &["--body-timeout-ms", "500"],
    ))
    .await?;
    let sockets = slow_sockets(host.addr, 50, HEADERS_WITHOUT_BODY).await;
    for socket in sockets {
        let answer = closed_within(socket, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"detail\""), "{answer}");
    }
    host.stop().await?;
    Ok(())
}
