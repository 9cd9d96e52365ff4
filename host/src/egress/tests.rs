//! Unit tests of the address policy, the URL builders and the resolver
//! hook (no network: peers are on 127.0.0.1:0, names come from a table).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

fn ip(raw: &str) -> IpAddr {
    raw.parse().unwrap()
}

#[test]
fn cidr_parses_ranges_and_bare_addresses_and_names_what_is_wrong() {
    let range: Cidr = " 10.1.2.3/8 ".parse().unwrap();
    assert_eq!(range.to_string(), "10.0.0.0/8");
    assert!(range.contains(ip("10.255.0.1")));
    assert!(!range.contains(ip("11.0.0.1")));
    assert!(range.contains(ip("::ffff:10.0.0.1")), "mapped v4 counts");
    assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
    assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    assert!(!"0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("::1")));
    for (bad, says) in [
        ("10.0.0.0/33", "exceeds 32"),
        ("10.0.0/8", "not an IP address"),
        ("host/8", "not an IP address"),
        ("10.0.0.0/x", "must be a number"),
    ] {
        let error = bad.parse::<Cidr>().unwrap_err();
        assert!(error.contains(bad) && error.contains(says), "{error}");
    }
}

#[test]
fn the_default_policy_refuses_link_local_and_metadata_only() {
    let policy = PeerPolicy::default();
    for allowed in [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.1.1",
        "172.17.0.2",
        "8.8.8.8",
    ] {
        assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed}");
    }
    for refused in [
        "169.254.169.254",
        "169.254.1.1",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "::ffff:169.254.169.254",
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "224.0.0.1",
    ] {
        let error = policy.check(ip(refused)).unwrap_err();
        assert!(error.to_string().contains("--peer-allow"), "{error}");
    }
}

#[test]
fn peer_allow_is_authoritative_but_lifts_a_denied_range_only_when_as_specific() {
    let only = |ranges: &[&str]| {
        PeerPolicy::allow_only(ranges.iter().map(|r| r.parse().unwrap()).collect())
    };
    let private = only(&["10.0.0.0/8"]);
    assert_eq!(private.check(ip("10.9.9.9")), Ok(()));
    let error = private.check(ip("127.0.0.1")).unwrap_err();
    assert!(
        error.to_string().contains("--peer-allow 10.0.0.0/8"),
        "{error}"
    );
    let everything = only(&["0.0.0.0/0", "::/0"]);
    assert_eq!(everything.check(ip("8.8.8.8")), Ok(()));
    assert!(everything.check(ip("169.254.169.254")).is_err());
    assert!(everything.check(ip("fe80::1")).is_err());
    let link_local = only(&["169.254.0.0/16"]);
    assert_eq!(link_local.check(ip("169.254.1.1")), Ok(()));
    assert!(
        link_local.check(ip("169.254.169.254")).is_err(),
        "the metadata address needs its own /32"
    );
    let metadata = only(&["169.254.169.254/32"]);
    assert_eq!(metadata.check(ip("169.254.169.254")), Ok(()));
    assert_eq!(only(&[]), PeerPolicy::default());
}

#[test]
fn listed_addresses_become_urls_or_are_refused_by_name() {
    let url = |ip: &str, port| listed_peer_url("p", ip, port).map(|u| u.to_string());
    assert_eq!(url("10.0.0.1", 8000).unwrap(), "http://10.0.0.1:8000/");
    assert_eq!(url("::1", 8000).unwrap(), "http://[::1]:8000/");
    assert_eq!(url("[::1]", 8000).unwrap(), "http://[::1]:8000/");
    assert_eq!(
        url("aios-cell_alpha.local", 8000).unwrap(),
        "http://aios-cell_alpha.local:8000/"
    );
    assert_eq!(url("pure", 80).unwrap(), "http://pure/");
    for bad in [
        "[::1]:18497/internal/admin?x=",
        "127.0.0.1:9/x",
        "127.0.0.1:9",
        "user@127.0.0.1",
        "127.0.0.1/",
        "127.0.0.1#",
        "127.0.0.1?",
        "host name",
        "",
        "[not-v6]",
        "%31%32%37.0.0.1",
    ] {
        let error = url(bad, 9).unwrap_err();
        assert!(
            error.to_string().contains(&format!("{bad:?}")),
            "{bad}: {error}"
        );
    }
    assert!(url("10.0.0.1", 0).is_err(), "port 0");
    assert!(url(&"a".repeat(254), 80).is_err(), "too long a name");
}

#[test]
fn endpoints_must_be_plain_http_urls() {
    let base = endpoint_url("http://10.0.0.1:8000/api/").unwrap();
    assert_eq!(
        message_url(&base).as_str(),
        "http://10.0.0.1:8000/api/message"
    );
    let root = endpoint_url("http://peer:8000").unwrap();
    assert_eq!(message_url(&root).as_str(), "http://peer:8000/message");
    for (bad, says) in [
        ("https://peer", "plain HTTP"),
        ("ftp://peer", "http://"),
        ("not a url", "http://"),
        ("http://u:p@peer", "user name"),
        ("http://peer/?q=1", "query"),
        ("http://peer/#f", "fragment"),
        ("http://pe%20er/", "http://"),
        ("http://pe!er/", "letters, digits"),
        ("http://pe$er/", "letters, digits"),
    ] {
        let error = endpoint_url(bad).unwrap_err().to_string();
        assert!(
            error.contains("`endpoint`") && error.contains(says),
            "{bad}: {error}"
        );
    }
    assert!(endpoint_url(&format!("http://p/{}", "a".repeat(MAX_ENDPOINT_LEN))).is_err());
}

/// Names from a table, as a resolver would answer them.
struct Table(BTreeMap<&'static str, Vec<IpAddr>>);

impl Resolve for Table {
    fn resolve(&self, name: Name) -> Resolving {
        let addrs: Vec<SocketAddr> = self
            .0
            .get(name.as_str())
            .into_iter()
            .flatten()
            .map(|ip| SocketAddr::new(*ip, 0))
            .collect();
        Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
    }
}

/// A one-shot HTTP server on 127.0.0.1:0 answering 204 and counting
/// connections.
async fn counting_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    (port, count)
}

/// Finding (High 3): addresses were not checked at all. A name is now
/// checked on the address it resolves to, at connect time, and refused
/// before any connection is tried; an IP literal (which bypasses the
/// resolver) is checked before the request is sent.
#[tokio::test]
async fn a_metadata_address_is_refused_at_connect_time() {
    let (port, connections) = counting_server().await;
    let table = Table(BTreeMap::from([
        ("good.test", vec![ip("127.0.0.1")]),
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("mixed.test", vec![ip("169.254.169.254"), ip("127.0.0.1")]),
    ]));
    // A connection attempt would wait up to a minute: far past the bound.
    let client = PeerClient::with_resolver(
        PeerPolicy::default(),
        Duration::from_secs(60),
        Arc::new(table),
    );
    let body = serde_json::json!({});
    let post = |host: &str, port: u16| {
        let url = Url::parse(&format!("http://{host}:{port}/message")).unwrap();
        client.post_json(url, &body, None)
    };
    assert_eq!(post("good.test", port).await.unwrap().status(), 204);
    assert_eq!(post("mixed.test", port).await.unwrap().status(), 204);
    let started = Instant::now();
    for refused in [
        "metadata.test:80",
        "169.254.169.254:80",
        "[fd00:ec2::254]:80",
    ] {
        let (host, port) = refused.rsplit_once(':').unwrap();
        match post(host, port.parse().unwrap()).await {
            Err(SendFailure::Egress(EgressError::Refused { address, .. })) => {
                assert!(PeerPolicy::default().check(address).is_err())
            }
            other => panic!("{refused}: {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused before connecting"
    );
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Finding (High 3): the client followed redirects (a POST became a GET
/// to wherever the peer pointed). A 3xx is the peer's answer now.
#[tokio::test]
async fn the_peer_client_does_not_follow_redirects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{addr}/internal\r\n\
                 content-length: 0\r\n\r\n"
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let client = PeerClient::new(PeerPolicy::default(), Duration::from_secs(10));
    let url = Url::parse(&format!("http://{addr}/message")).unwrap();
    let answer = client
        .post_json(url, &serde_json::json!({}), None)
        .await
        .unwrap();
    assert_eq!(answer.status(), 307);
}
