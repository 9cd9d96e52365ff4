//! Checks several steps share: the fields of the original registration, and
//! a message delivered from alpha through the mesh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use crate::discovery::{Discovery, peer_list};
use crate::http::Http;
use crate::{dense, docker};

/// alpha's services in the original registration (docs/contract.md).
const ALPHA_SERVICES: [&str; 5] = [
    "code-analysis",
    "consciousness-sync",
    "dendritic-communication",
    "tachyonic-archival",
    "geometric-engine",
];

/// Both cells carry the fields the original cells registered (docs/contract.md).
pub fn original_fields(discovery: &Discovery, pure: &str, alpha: &str) -> Result<()> {
    let peers = discovery.peers()?;
    ensure!(
        peers["my_host"] == "primary",
        "my_host is {}",
        peers["my_host"]
    );
    let list = peer_list(&peers);
    // The dense host's cells are checked apart (`dense`).
    let singles: Vec<&Value> = list.iter().filter(|p| !dense::is_dense(p)).collect();
    ensure!(
        peers["count"] == json!(list.len()) && singles.len() == 2,
        "expected pure and alpha besides the dense host's cells, got {peers}"
    );
    let by_id: BTreeMap<&str, &Value> = singles
        .into_iter()
        .filter_map(|p| Some((p["cell_id"].as_str()?, p)))
        .collect();
    let expected = [
        (
            "pure",
            pure,
            8002,
            json!(["consciousness-primitives"]),
            "pure_cell",
            0.0..=1.0,
        ),
        (
            "alpha",
            alpha,
            8000,
            json!(ALPHA_SERVICES),
            "alpha_cell",
            0.0..=100.0,
        ),
    ];
    for (id, container, port, services, kind, levels) in expected {
        let peer = by_id
            .get(id)
            .with_context(|| format!("{id} is not listed"))?;
        let hostname = docker::inspect("{{.Config.Hostname}}", &[container])?;
        let level = peer["consciousness_level"].as_f64();
        let checks = [
            ("port", peer["port"] == json!(port)),
            ("services", peer["services"] == services),
            ("type", peer["type"] == kind),
            ("branch", peer["branch"] == "main"),
            (
                "ip (the container's HOSTNAME)",
                peer["ip"] == hostname.as_str(),
            ),
            ("hostname", peer["hostname"] == hostname.as_str()),
            (
                "consciousness_level",
                level.is_some_and(|l| levels.contains(&l)),
            ),
            (
                "last_seen (ISO-8601, Z)",
                peer["last_seen"]
                    .as_str()
                    .is_some_and(|s| s.ends_with('Z') && s.contains('T')),
            ),
        ];
        for (field, ok) in checks {
            ensure!(
                ok,
                "{id}'s {field} differs from the original registration: {peer}"
            );
        }
    }
    Ok(())
}

/// `POST /send` on the sender, then the message must be in the receiver's
/// `/messages` (the sender retries while its mesh view catches up).
pub fn send_and_check(
    http: &Http,
    sender: &str,
    to_cell: &str,
    receiver: &str,
    what: &str,
) -> Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let content = format!("cluster test {what} {nanos}");
    let body = json!({"to_cell": to_cell, "content": content, "message_type": "text"});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = http.post_json(sender, "/send", &body);
        match answer {
            Ok(a) if a.status == 200 => break,
            Ok(a) if Instant::now() < deadline => {
                say!(
                    "  /send to {to_cell} answered {}: {}; retrying",
                    a.status,
                    a.body
                );
            }
            Err(e) if Instant::now() < deadline => {
                say!("  /send to {to_cell}: {e:#}; retrying")
            }
            Ok(a) => bail!(
                "/send to {to_cell} ({what}) answered {}: {}",
                a.status,
                a.body
            ),
            Err(e) => return Err(e.context(format!("/send to {to_cell} ({what})"))),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let messages = http.get(receiver, "/messages?limit=100")?.json()?;
    let found = messages["messages"].as_array().is_some_and(|list| {
        list.iter()
            .any(|m| m["content"] == content.as_str() && m["from_cell"] == "alpha")
    });
    ensure!(
        found,
        "{to_cell}'s /messages lacks the message sent {what}: {messages}"
    );
    Ok(())
}
