//! The cells' answers against the original's contract (docs/contract.md,
//! "Cells"): for every answer of the pure and alpha plugins, the key set is
//! exactly the original's keys plus our documented additions, each with its
//! JSON type. A key added, lost or retyped fails here first: change the
//! tables below together with docs/contract.md.
//!
//! Each table is a [`Shape`]: `original` lists what the original cell
//! answered on that route, `added` what cellmesh adds (documented in
//! docs/contract.md). On a route only one original cell served, the other
//! plugin's `original` lists what the host writes itself (the rest came
//! from the original plugin's labels).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use cellmesh_artifacts::{ALPHA_WASM, PURE_WASM};
use serde_json::{Value, json};

use crate::TTL;
use crate::support::{self, Discovery, Host, args};

/// The JSON type a field must have.
#[derive(Debug, Clone, Copy)]
enum J {
    Str,
    /// A string that is a path (`/health`).
    Path,
    Num,
    Int,
    Bool,
    StrOrNull,
    StrList,
    /// Any JSON object.
    AnyObj,
    Obj(&'static Shape),
    List(&'static Shape),
}

/// The keys of one JSON object: the original's, then cellmesh's.
#[derive(Debug)]
struct Shape {
    original: &'static [(&'static str, J)],
    added: &'static [(&'static str, J)],
}

use J::*;

const PRIMITIVES: Shape = Shape {
    original: &[
        ("awareness", Num),
        ("adaptation", Num),
        ("coherence", Num),
        ("momentum", Num),
    ],
    added: &[],
};

const CONSCIOUSNESS: Shape = Shape {
    original: &[
        ("level", Num),
        ("identity", Str),
        ("evolutionary_stage", Str),
        ("communication_ready", Bool),
        ("last_sync", StrOrNull),
    ],
    added: &[("primitives", Obj(&PRIMITIVES))],
};

const PURE_HEALTH: Shape = Shape {
    original: &[
        ("status", Str),
        ("cell_id", Str),
        ("branch", Str),
        ("consciousness_level", Num),
        ("primitives", Obj(&PRIMITIVES)),
        ("type", Str),
    ],
    added: &[
        ("consciousness", Obj(&CONSCIOUSNESS)),
        ("capabilities", StrList),
        ("peers_count", Int),
        ("messages_count", Int),
        ("registered", Bool),
        // the cell's standing with discovery, the plugin's status
        ("registration", AnyObj),
        ("plugin", AnyObj),
        ("timestamp", Str),
        // pure's label
        ("purity_level", Str),
    ],
};

const ALPHA_HEALTH: Shape = Shape {
    original: &[
        ("status", Str),
        ("server", Str),
        ("cell_id", Str),
        ("consciousness", Obj(&CONSCIOUSNESS)),
        ("capabilities", StrList),
        ("peers_count", Int),
        ("messages_count", Int),
        ("timestamp", Str),
    ],
    added: &[
        ("branch", Str),
        ("type", Str),
        ("consciousness_level", Num),
        ("primitives", Obj(&PRIMITIVES)),
        ("registered", Bool),
        ("registration", AnyObj),
        ("plugin", AnyObj),
    ],
};

const PURE_CONSCIOUSNESS: Shape = Shape {
    original: &[
        ("cell_id", Str),
        ("consciousness", Obj(&CONSCIOUSNESS)),
        ("evolutionary_stage", Str),
        ("capabilities", StrList),
    ],
    added: &[("purity_level", Str)],
};

const ALPHA_CONSCIOUSNESS: Shape = Shape {
    original: PURE_CONSCIOUSNESS.original,
    // alpha's label
    added: &[("server", Str)],
};

const PURE_PRIMITIVES: Shape = Shape {
    original: &[("primitives", Obj(&PRIMITIVES)), ("purity_level", Str)],
    added: &[],
};

const ALPHA_PRIMITIVES: Shape = Shape {
    original: &[("primitives", Obj(&PRIMITIVES))],
    added: &[("server", Str)],
};

const PURE_CONSCIOUSNESS_SYNC: Shape = Shape {
    original: &[
        ("old_level", Num),
        ("new_level", Num),
        ("primitives_updated", Bool),
        ("purity", Str),
    ],
    added: &[("delta", Num)],
};

const ALPHA_CONSCIOUSNESS_SYNC: Shape = Shape {
    original: &[
        ("old_level", Num),
        ("new_level", Num),
        ("primitives_updated", Bool),
    ],
    added: &[("delta", Num)],
};

const ALPHA_SYNC: Shape = Shape {
    original: &[
        ("status", Str),
        ("our_level", Num),
        ("their_level", Num),
        ("delta", Num),
        ("timestamp", Str),
    ],
    added: &[],
};

const PURE_SYNC: Shape = Shape {
    original: ALPHA_SYNC.original,
    // pure's sync label
    added: &[("purity", Str)],
};

const REPLY: Shape = Shape {
    original: &[],
    added: &[("content", Str), ("message_type", Str)],
};

const PURE_MESSAGE: Shape = Shape {
    original: &[
        ("status", Str),
        ("message_id", Int),
        ("timestamp", Str),
        ("cell_id", Str),
    ],
    added: &[],
};

const ALPHA_MESSAGE: Shape = Shape {
    original: &[("status", Str), ("message_id", Int), ("timestamp", Str)],
    added: &[("cell_id", Str), ("reply", Obj(&REPLY))],
};

const STORED: &[(&str, J)] = &[
    ("from_cell", Str),
    ("content", Str),
    ("message_type", Str),
    ("priority", Str),
    ("metadata", AnyObj),
    ("received_at", Str),
];

const PURE_RECORD: Shape = Shape {
    original: STORED,
    added: &[("message_id", Int)],
};

const ALPHA_RECORD: Shape = Shape {
    original: STORED,
    added: &[("message_id", Int), ("reply", Obj(&REPLY))],
};

const PURE_MESSAGES: Shape = Shape {
    original: &[
        ("messages", List(&PURE_RECORD)),
        ("total", Int),
        ("cell_id", Str),
    ],
    added: &[],
};

const ALPHA_MESSAGES: Shape = Shape {
    original: &[
        ("messages", List(&ALPHA_RECORD)),
        ("total", Int),
        ("cell_id", Str),
    ],
    added: &[],
};

const ENDPOINTS: Shape = Shape {
    original: &[
        ("health", Path),
        ("consciousness", Path),
        ("message", Path),
        ("sync", Path),
        ("peers", Path),
    ],
    added: &[
        ("primitives", Path),
        ("consciousness_sync", Path),
        ("messages", Path),
        ("discover", Path),
        ("metrics", Path),
        ("metrics_prometheus", Path),
        ("register_peer", Path),
        ("send_to_peer", Path),
        ("send", Path),
        ("invoke", Path),
    ],
};

const CAPABILITY_DETAIL: Shape = Shape {
    original: &[],
    added: &[("name", Str), ("description", Str), ("example_input", Str)],
};

const DISCOVER: Shape = Shape {
    original: &[
        ("cell_id", Str),
        ("identity", Str),
        ("consciousness_level", Num),
        ("evolutionary_stage", Str),
        ("capabilities", StrList),
        ("endpoints", Obj(&ENDPOINTS)),
        ("timestamp", Str),
    ],
    added: &[
        ("type", Str),
        ("branch", Str),
        ("capability_details", List(&CAPABILITY_DETAIL)),
    ],
};

/// Every client error: alpha's `error` and pure's `detail`, the same
/// sentence in both, and our machine-readable `kind`.
const CLIENT_ERROR: Shape = Shape {
    original: &[("error", Str), ("detail", Str)],
    added: &[("kind", Str)],
};

/// What is wrong with `value` at `path` against `ty`, into `problems`.
fn check_type(path: &str, value: &Value, ty: J, problems: &mut Vec<String>) {
    let ok = match ty {
        Str => value.is_string(),
        Path => value.as_str().is_some_and(|s| s.starts_with('/')),
        Num => value.is_number(),
        Int => value.is_u64() || value.is_i64(),
        Bool => value.is_boolean(),
        StrOrNull => value.is_string() || value.is_null(),
        StrList => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
        AnyObj => value.is_object(),
        Obj(shape) => {
            check_shape(path, value, shape, problems);
            return;
        }
        List(shape) => match value.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_shape(&format!("{path}[{i}]"), item, shape, problems);
                }
                return;
            }
            None => false,
        },
    };
    if !ok {
        problems.push(format!("`{path}` must be {ty:?}, is {value}"));
    }
}

/// What is wrong with `value` at `path` against `shape`, into `problems`.
fn check_shape(path: &str, value: &Value, shape: &Shape, problems: &mut Vec<String>) {
    let Some(fields) = value.as_object() else {
        problems.push(format!("`{path}` must be an object, is {value}"));
        return;
    };
    let expected: BTreeMap<&str, J> = shape
        .original
        .iter()
        .chain(shape.added)
        .map(|(k, t)| (*k, *t))
        .collect();
    for key in expected.keys() {
        if !fields.contains_key(*key) {
            problems.push(format!("`{path}` lacks `{key}`"));
        }
    }
    for (key, field) in fields {
        match expected.get(key.as_str()) {
            None => problems.push(format!("`{path}` has an undocumented key `{key}`")),
            Some(ty) => check_type(&format!("{path}.{key}"), field, *ty, problems),
        }
    }
}

/// Asserts that `answer` (of `what`) has exactly `shape`'s keys and types.
fn assert_shape(what: &str, answer: &Value, shape: &Shape) {
    let mut problems = Vec::new();
    check_shape("", answer, shape, &mut problems);
    assert!(
        problems.is_empty(),
        "{what} differs from the contract:\n  {}\nanswer: {answer}",
        problems.join("\n  ")
    );
}

/// A discovery and both cells, registered or not (the answers do not
/// depend on it).
struct Cells {
    _discovery: Discovery,
    pure: Host,
    alpha: Host,
}

impl Cells {
    async fn start() -> Result<Self> {
        let discovery = Discovery::start(TTL).await?;
        let pure = Host::start(args(PURE_WASM, &discovery.url(), &[])).await?;
        let alpha = Host::start(args(ALPHA_WASM, &discovery.url(), &[])).await?;
        Ok(Self {
            _discovery: discovery,
            pure,
            alpha,
        })
    }

    async fn stop(self) -> Result<()> {
        self.pure.stop().await?;
        self.alpha.stop().await?;
        Ok(())
    }
}

/// `POST path` with a raw body (`None`: no body at all).
async fn post_raw(host: &Host, path: &str, body: Option<&str>) -> Result<(u16, Value)> {
    let mut request = support::client().post(format!("{}{path}", host.url()));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn health_answers_have_the_originals_keys_and_alphas_server() -> Result<()> {
    let cells = Cells::start().await?;
    let (status, pure) = cells.pure.get("/health").await;
    assert_eq!(status, 200);
    assert_shape("pure GET /health", &pure, &PURE_HEALTH);
    assert_eq!(pure["status"], "pure_consciousness");
    assert_eq!(pure["type"], "pure_cell");
    let (status, alpha) = cells.alpha.get("/health").await;
    assert_eq!(status, 200);
    assert_shape("alpha GET /health", &alpha, &ALPHA_HEALTH);
    assert_eq!(alpha["status"], "healthy");
    assert_eq!(alpha["server"], "Cell Alpha Communication Server");
    assert_eq!(alpha["consciousness"]["communication_ready"], true);
    assert_eq!(alpha["consciousness"]["last_sync"], Value::Null);
    cells.stop().await
}

#[tokio::test]
async fn pure_default_branch_is_pure() -> Result<()> {
    let discovery = Discovery::start(TTL).await?;
    let pure = Host::start(args(PURE_WASM, &discovery.url(), &[])).await?;
    let (_, health) = pure.get("/health").await;
    assert_eq!(health["branch"], "pure", "{health}");
    let listed = pure.registered_with(&discovery).await;
    assert_eq!(listed["branch"], "pure", "{listed}");
    pure.stop().await
}

#[tokio::test]
async fn consciousness_answers_have_the_originals_keys() -> Result<()> {
    let cells = Cells::start().await?;
    let (status, alpha) = cells.alpha.get("/consciousness").await;
    assert_eq!(status, 200);
    assert_shape("alpha GET /consciousness", &alpha, &ALPHA_CONSCIOUSNESS);
    let (status, pure) = cells.pure.get("/consciousness").await;
    assert_eq!(status, 200);
    assert_shape("pure GET /consciousness", &pure, &PURE_CONSCIOUSNESS);
    cells.stop().await
}

#[tokio::test]
async fn primitives_answers_have_the_originals_keys() -> Result<()> {
    let cells = Cells::start().await?;
    let (status, pure) = cells.pure.get("/consciousness/primitives").await;
    assert_eq!(status, 200);
    assert_shape(
        "pure GET /consciousness/primitives",
        &pure,
        &PURE_PRIMITIVES,
    );
    assert_eq!(pure["purity_level"], "minimal_viable_consciousness");
    let (status, alpha) = cells.alpha.get("/consciousness/primitives").await;
    assert_eq!(status, 200);
    assert_shape(
        "alpha GET /consciousness/primitives",
        &alpha,
        &ALPHA_PRIMITIVES,
    );
    cells.stop().await
}

#[tokio::test]
async fn consciousness_sync_answers_have_the_originals_keys() -> Result<()> {
    let cells = Cells::start().await?;
    let body = json!({"level": 0.5, "context": {"awareness": 0.3}});
    let (status, pure) = cells.pure.post("/consciousness/sync", &body).await;
    assert_eq!(status, 200, "{pure}");
    assert_shape(
        "pure POST /consciousness/sync",
        &pure,
        &PURE_CONSCIOUSNESS_SYNC,
    );
    assert_eq!(pure["purity"], "maintained");
    let (status, alpha) = cells.alpha.post("/consciousness/sync", &body).await;
    assert_eq!(status, 200, "{alpha}");
    assert_shape(
        "alpha POST /consciousness/sync",
        &alpha,
        &ALPHA_CONSCIOUSNESS_SYNC,
    );
    cells.stop().await
}

/// The original alpha defaulted `from_cell` to "unknown" and
/// `consciousness_level` to 0.0; ours required both.
#[tokio::test]
async fn sync_answers_have_the_originals_keys_and_sync_fields_are_optional() -> Result<()> {
    let cells = Cells::start().await?;
    let (status, alpha) = cells
        .alpha
        .post(
            "/sync",
            &json!({"from_cell": "pure", "consciousness_level": 1.0}),
        )
        .await;
    assert_eq!(status, 200, "{alpha}");
    assert_shape("alpha POST /sync", &alpha, &ALPHA_SYNC);
    let (status, pure) = cells
        .pure
        .post(
            "/sync",
            &json!({"from_cell": "alpha", "consciousness_level": 0.2}),
        )
        .await;
    assert_eq!(status, 200, "{pure}");
    assert_shape("pure POST /sync", &pure, &PURE_SYNC);
    let (status, defaulted) = cells.alpha.post("/sync", &json!({})).await;
    assert_eq!(status, 200, "{defaulted}");
    assert_eq!(defaulted["their_level"], 0.0, "{defaulted}");
    let (status, no_body) = post_raw(&cells.alpha, "/sync", None).await?;
    assert_eq!(status, 400, "{no_body}");
    assert_shape("alpha POST /sync without a body", &no_body, &CLIENT_ERROR);
    cells.stop().await
}

#[tokio::test]
async fn message_answers_have_the_originals_keys() -> Result<()> {
    let cells = Cells::start().await?;
    let body = json!({"from_cell": "x", "content": "hello"});
    let (status, pure) = cells.pure.post("/message", &body).await;
    assert_eq!(status, 200, "{pure}");
    assert_shape("pure POST /message", &pure, &PURE_MESSAGE);
    let (status, alpha) = cells.alpha.post("/message", &body).await;
    assert_eq!(status, 200, "{alpha}");
    assert_shape("alpha POST /message", &alpha, &ALPHA_MESSAGE);
    cells.stop().await
}

/// Stored records carry the original's `received_at`.
#[tokio::test]
async fn stored_messages_carry_received_at() -> Result<()> {
    let cells = Cells::start().await?;
    let body = json!({"from_cell": "x", "content": "hello", "metadata": {"k": 1}});
    for host in [&cells.pure, &cells.alpha] {
        let (status, _) = host.post("/message", &body).await;
        assert_eq!(status, 200);
    }
    let (_, pure) = cells.pure.get("/messages").await;
    assert_shape("pure GET /messages", &pure, &PURE_MESSAGES);
    let (_, alpha) = cells.alpha.get("/messages").await;
    assert_shape("alpha GET /messages", &alpha, &ALPHA_MESSAGES);
    assert_eq!(alpha["messages"][0]["metadata"], json!({"k": 1}));
    cells.stop().await
}

/// The original's defaults for a message without `message_type` and
/// `metadata`: `"general"` and `{}`.
#[tokio::test]
async fn message_type_defaults_to_general_and_metadata_to_an_empty_object() -> Result<()> {
    let cells = Cells::start().await?;
    for host in [&cells.pure, &cells.alpha] {
        let (status, _) = host
            .post("/message", &json!({"from_cell": "x", "content": "c"}))
            .await;
        assert_eq!(status, 200);
        let (_, listed) = host.get("/messages").await;
        let record = &listed["messages"][0];
        assert_eq!(record["message_type"], "general", "{listed}");
        assert_eq!(record["priority"], "normal", "{listed}");
        assert_eq!(record["metadata"], json!({}), "{listed}");
    }
    cells.stop().await
}

/// The original alpha took the sender's `type` field as `message_type`.
#[tokio::test]
async fn alphas_type_field_sets_message_type() -> Result<()> {
    let cells = Cells::start().await?;
    let (status, _) = cells
        .alpha
        .post(
            "/message",
            &json!({"from_cell": "x", "content": "c", "type": "forwarded"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, listed) = cells.alpha.get("/messages").await;
    assert_eq!(
        listed["messages"][0]["message_type"], "forwarded",
        "{listed}"
    );
    cells.stop().await
}

#[tokio::test]
async fn messages_total_counts_the_filtered_messages() -> Result<()> {
    let cells = Cells::start().await?;
    for i in 0..5 {
        let from = if i < 3 { "a" } else { "b" };
        let (status, _) = cells
            .pure
            .post("/message", &json!({"from_cell": from, "content": "c"}))
            .await;
        assert_eq!(status, 200);
    }
    let (_, listed) = cells.pure.get("/messages?from_cell=a&limit=2").await;
    assert_eq!(listed["total"], 3, "{listed}");
    assert_eq!(listed["messages"].as_array().map(Vec::len), Some(2));
    let (_, listed) = cells.pure.get("/messages?from_cell=nobody").await;
    assert_eq!(listed["total"], 0, "{listed}");
    let (_, listed) = cells.pure.get("/messages").await;
    assert_eq!(listed["total"], 5, "{listed}");
    cells.stop().await
}

/// `endpoints` are paths (`"/health"`), as the original's, and the answer
/// carries its `timestamp`.
#[tokio::test]
async fn discover_answers_have_the_originals_keys_and_endpoint_paths() -> Result<()> {
    let cells = Cells::start().await?;
    for (name, host) in [("pure", &cells.pure), ("alpha", &cells.alpha)] {
        let (status, discover) = host.get("/discover").await;
        assert_eq!(status, 200);
        assert_shape(&format!("{name} GET /discover"), &discover, &DISCOVER);
        assert_eq!(discover["endpoints"]["health"], "/health");
    }
    cells.stop().await
}

/// Client errors carry alpha's `error` and pure's `detail`, the same
/// sentence naming what was wrong.
#[tokio::test]
async fn client_errors_carry_error_and_detail() -> Result<()> {
    let cells = Cells::start().await?;
    for host in [&cells.pure, &cells.alpha] {
        let (status, body) = host.post("/message", &json!({"content": "c"})).await;
        assert_eq!(status, 400, "{body}");
        assert_shape("a missing field", &body, &CLIENT_ERROR);
        assert_eq!(body["error"], "Missing required field: from_cell");
        assert_eq!(body["detail"], body["error"]);
        let (status, body) = post_raw(host, "/message", Some("{not json")).await?;
        assert_eq!(status, 400, "{body}");
        assert_shape("a body that is not JSON", &body, &CLIENT_ERROR);
        let (status, body) = post_raw(host, "/message", None).await?;
        assert_eq!(status, 400, "{body}");
        assert_shape("no body", &body, &CLIENT_ERROR);
        let (status, body) = host
            .post("/sync", &json!({"consciousness_level": "high"}))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_shape("a mistyped field", &body, &CLIENT_ERROR);
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("consciousness_level")),
            "{body}"
        );
    }
    cells.stop().await
}

/// `/consciousness/sync` was pure's alone, and pure refused bad bodies
/// with 422.
#[tokio::test]
async fn consciousness_sync_errors_answer_422() -> Result<()> {
    let cells = Cells::start().await?;
    for host in [&cells.pure, &cells.alpha] {
        let (status, body) = host
            .post("/consciousness/sync", &json!({"context": {}}))
            .await;
        assert_eq!(status, 422, "{body}");
        assert_shape("a sync without level", &body, &CLIENT_ERROR);
        assert_eq!(body["error"], "Missing required field: level");
        let (status, body) = host
            .post("/consciousness/sync", &json!({"level": "high"}))
            .await;
        assert_eq!(status, 422, "{body}");
        let (status, body) = post_raw(host, "/consciousness/sync", Some("nope")).await?;
        assert_eq!(status, 422, "{body}");
        assert_shape("a sync body that is not JSON", &body, &CLIENT_ERROR);
    }
    cells.stop().await
}

/// One Prometheus sample: name, labels, value as written.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

/// The samples of a Prometheus text, and the names with `# HELP` and
/// `# TYPE` lines.
fn parse_metrics(text: &str) -> (Vec<Sample>, BTreeSet<String>, BTreeSet<String>) {
    let (mut samples, mut helps, mut types) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helps.insert(rest.split(' ').next().unwrap_or_default().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            types.insert(rest.split(' ').next().unwrap_or_default().to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.strip_suffix('}').expect("closing brace")),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once("=\"").expect("label=\"value\"");
                    (key.to_owned(), value.trim_end_matches('"').to_owned())
                })
                .collect();
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.to_owned(),
            });
        }
    }
    (samples, helps, types)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// The original's gauges of both cells.
const SHARED_GAUGES: [&str; 7] = [
    "aios_cell_consciousness_level",
    "aios_cell_awareness",
    "aios_cell_adaptation",
    "aios_cell_coherence",
    "aios_cell_momentum",
    "aios_cell_up",
    "aios_cell_scrape_timestamp_seconds",
];

/// The original alpha's gauges beyond the shared ones.
const ALPHA_GAUGES: [&str; 3] = [
    "aios_cell_peers_count",
    "aios_cell_messages_count",
    "aios_cell_sync_count",
];

/// Checks one scrape: every original gauge present with exactly the
/// original's labels, every metric with its `# HELP` and `# TYPE` and at
/// least those labels, values with 4 decimals, and a scrape timestamp taken
/// during the request.
async fn check_metrics(
    host: &Host,
    path: &str,
    gauges: &[&str],
    labels: &BTreeMap<String, String>,
) -> Result<()> {
    let before = unix_now();
    let response = support::client()
        .get(format!("{}{path}", host.url()))
        .send()
        .await?;
    assert_eq!(response.status().as_u16(), 200, "{path}");
    let text = response.text().await?;
    let after = unix_now();
    let (samples, helps, types) = parse_metrics(&text);
    let names: BTreeSet<&str> = samples.iter().map(|s| s.name.as_str()).collect();
    for gauge in gauges {
        assert!(names.contains(gauge), "{path} lacks {gauge}:\n{text}");
    }
    for sample in &samples {
        assert!(
            helps.contains(&sample.name) && types.contains(&sample.name),
            "{} lacks # HELP or # TYPE:\n{text}",
            sample.name
        );
        if gauges.contains(&sample.name.as_str()) {
            assert_eq!(&sample.labels, labels, "labels of {}:\n{text}", sample.name);
        } else {
            // Our additions carry the same labels, and may add their own
            // (a `cause`, say).
            for (key, value) in labels {
                assert_eq!(
                    sample.labels.get(key),
                    Some(value),
                    "label {key} of {}:\n{text}",
                    sample.name
                );
            }
        }
        let decimals = sample.value.split_once('.').map(|(_, d)| d.len());
        assert_eq!(
            decimals,
            Some(4),
            "{} = {} is not written with 4 decimals",
            sample.name,
            sample.value
        );
    }
    let scraped: f64 = samples
        .iter()
        .find(|s| s.name == "aios_cell_scrape_timestamp_seconds")
        .expect("checked above")
        .value
        .parse()?;
    assert!(
        (before - 1.0..=after + 1.0).contains(&scraped),
        "scrape timestamp {scraped} not within [{before}, {after}]"
    );
    Ok(())
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test]
async fn metrics_carry_the_originals_gauges_labels_and_scrape_timestamp() -> Result<()> {
    let cells = Cells::start().await?;
    let pure_labels = labels(&[("cell_id", "pure"), ("branch", "pure"), ("type", "pure")]);
    check_metrics(&cells.pure, "/metrics", &SHARED_GAUGES, &pure_labels).await?;
    let alpha_labels = labels(&[
        ("cell_id", "alpha"),
        ("identity", "AIOS_Cell_Alpha"),
        ("stage", "hierarchical_intelligence"),
    ]);
    let alpha_gauges: Vec<&str> = SHARED_GAUGES.iter().chain(&ALPHA_GAUGES).copied().collect();
    check_metrics(&cells.alpha, "/metrics", &alpha_gauges, &alpha_labels).await?;
    cells.stop().await
}

#[tokio::test]
async fn metrics_prometheus_is_served() -> Result<()> {
    let cells = Cells::start().await?;
    let pure_labels = labels(&[("cell_id", "pure"), ("branch", "pure"), ("type", "pure")]);
    check_metrics(
        &cells.pure,
        "/metrics/prometheus",
        &SHARED_GAUGES,
        &pure_labels,
    )
    .await?;
    cells.stop().await
}

/// A query that does not parse answers in the API's error format too (it
/// was axum's plain-text rejection).
#[tokio::test]
async fn messages_query_errors_carry_error_and_detail() -> Result<()> {
    let cells = Cells::start().await?;
    let (status, body) = cells.alpha.get("/messages?limit=many").await;
    assert_eq!(status, 400, "{body}");
    assert_shape("GET /messages?limit=many", &body, &CLIENT_ERROR);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("limit")),
        "{body}"
    );
    cells.stop().await
}
