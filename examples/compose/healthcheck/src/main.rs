//! `healthcheck [URL]`: one `GET` to a plain-HTTP URL; exit status 0 when
//! the answer is 2xx within the deadline, 1 otherwise (the reason on
//! stderr). It is the container healthcheck of the cellmesh images, which
//! are `FROM scratch` and so have no shell and no curl.
//!
//! Without an argument the URL is `$HEALTHCHECK_URL`, else
//! `http://127.0.0.1:$PORT/health`, where the port is `$PORT` (cell-host),
//! else `$DISCOVERY_PORT` (discovery), else 8000: the same variables the
//! binaries themselves read, so one `HEALTHCHECK` line fits both images.
//! The deadline is `$HEALTHCHECK_TIMEOUT_MS` (default 2000).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Deadline of the whole probe when `HEALTHCHECK_TIMEOUT_MS` is not set.
const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Port probed when neither `PORT` nor `DISCOVERY_PORT` is set.
const DEFAULT_PORT: &str = "8000";
/// Most bytes of the answer read (the status line is all that matters).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

fn main() -> ExitCode {
    let url = std::env::args().nth(1).unwrap_or_else(default_url);
    let timeout = std::env::var("HEALTHCHECK_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(
            Duration::from_millis(DEFAULT_TIMEOUT_MS),
            Duration::from_millis,
        );
    match probe(&url, timeout) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("healthcheck: GET {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(reason) => {
            eprintln!("healthcheck: GET {url}: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// The URL probed when none is given on the command line.
fn default_url() -> String {
    if let Some(url) = non_empty_var("HEALTHCHECK_URL") {
        return url;
    }
    let port = non_empty_var("PORT")
        .or_else(|| non_empty_var("DISCOVERY_PORT"))
        .unwrap_or_else(|| DEFAULT_PORT.to_owned());
    format!("http://127.0.0.1:{port}/health")
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Splits `http://host[:port][/path]` into the `host:port` to connect to
/// and the request target.
fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "only http:// URLs are supported".to_owned())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("the URL has no host".to_owned());
    }
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, path.to_owned()))
}

/// Sends the request and returns the answer's status code.
fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    let started = Instant::now();
    let (authority, path) = split_url(url)?;
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(left))
        .map_err(|e| e.to_string())?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h);
    // One write: `write!` on an unbuffered stream sends each piece as its
    // own segment, and a server that answers after the first one and closes
    // would make the rest fail with a broken pipe.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cellmesh-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    let mut limited = (&mut stream).take(MAX_ANSWER_BYTES);
    // Read until the status line is complete; the rest does not matter.
    let mut buf = [0u8; 1024];
    while !answer.contains(&b'\n') {
        let n = limited.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    parse_status(&answer)
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status(answer: &[u8]) -> Result<u16, String> {
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code
            .parse()
            .map_err(|_| format!("bad status line `{}`", line.trim())),
        _ => Err(format!("not an HTTP answer: `{}`", line.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_target() {
        assert_eq!(
            split_url("http://127.0.0.1:8001/health").unwrap(),
            ("127.0.0.1:8001".into(), "/health".into())
        );
        assert_eq!(
            split_url("http://discovery").unwrap(),
            ("discovery:80".into(), "/".into())
        );
        assert_eq!(
            split_url("http://[::1]/x").unwrap(),
            ("[::1]:80".into(), "/x".into())
        );
        assert!(split_url("https://x/").is_err());
        assert!(split_url("http:///health").is_err());
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n").unwrap(),
            503
        );
        assert!(parse_status(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse_status(b"").is_err());
    }

    #[test]
    fn a_live_server_is_probed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in ["204 No Content", "500 Internal Server Error"] {
                let (mut conn, _) = listener.accept().unwrap();
                // Read the whole request head before answering, as a real
                // server does, so closing never resets an unread request.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).unwrap();
                    assert!(n > 0, "the probe closed before sending its request");
                    head.extend_from_slice(&buf[..n]);
                }
                write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/health");
        assert_eq!(probe(&url, Duration::from_secs(5)).unwrap(), 204);
        assert_eq!(probe(&url, Duration::from_secs(5)).unwrap(), 500);
        server.join().unwrap();
        let closed = format!("http://127.0.0.1:{port}/health");
        assert!(probe(&closed, Duration::from_millis(500)).is_err());
    }
}
