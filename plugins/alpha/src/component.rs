//! The WIT binding: exports the cell through the `cell` world.

#![allow(missing_docs)] // generated bindings

wit_bindgen::generate!({
    path: "../../wit",
    world: "cell",
});

use std::sync::Mutex;

use crate::archive::Archive;
use crate::cell::AlphaCell;
use cellmesh::cell::host;
use cellmesh::cell::types::{
    Capability, CapabilityError, CellManifest, CellState, LogLevel, Message, Primitive, Reply,
    SendError, SyncOutcome, SyncRequest,
};
use exports::cellmesh::cell::guest::Guest;
use serde_json::{Value, json};

/// Everything this instance remembers.
#[derive(Default)]
struct Alpha {
    cell: AlphaCell,
    archive: Archive,
}

static ALPHA: Mutex<Option<Alpha>> = Mutex::new(None);

fn with_alpha<T>(f: impl FnOnce(&mut Alpha) -> T) -> T {
    let mut guard = ALPHA.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Alpha::default))
}

/// Largest source text `code-analysis` accepts.
pub const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;

/// Capabilities in the order the original advertised them:
/// (name, description, example input).
pub const CAPABILITIES: [(&str, &str, &str); 5] = [
    (
        "code-analysis",
        "Measures source text: total/blank/comment/code lines, functions, decision points and a cyclomatic complexity estimate, per language.",
        r#"{"source":"def f(x):\n    if x:\n        return 1\n    return 0\n","language":"python"}"#,
    ),
    (
        "consciousness-sync",
        "Computes the level delta with a peer: our level, theirs, |delta| and direction; records the sync when asked.",
        r#"{"peer_id":"pure","peer_level":0.1}"#,
    ),
    (
        "dendritic-communication",
        "Sends a message through the mesh to one cell by id, or to every peer with to_cell \"*\".",
        r#"{"to_cell":"*","content":"hello from alpha"}"#,
    ),
    (
        "tachyonic-archival",
        "A bounded key/value archive: store, get, delete, list (1,000 entries of up to 64 KiB).",
        r#"{"op":"store","key":"probe","value":{"ok":true}}"#,
    ),
    (
        "geometric-engine",
        "Geometry on points: distance, centroid, polygon_area (shoelace), bounding_box.",
        r#"{"op":"polygon_area","points":[[0,0],[4,0],[4,3],[0,3]]}"#,
    ),
];

fn primitives(list: &[(&'static str, f64)]) -> Vec<Primitive> {
    list.iter()
        .map(|(name, value)| Primitive {
            name: (*name).to_string(),
            value: *value,
        })
        .collect()
}

fn parse_input(input: &str) -> Result<Value, CapabilityError> {
    let v: Value = serde_json::from_str(input)
        .map_err(|e| CapabilityError::InvalidInput(format!("input is not JSON: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(CapabilityError::InvalidInput(
            "input must be a JSON object".into(),
        ))
    }
}

fn code_analysis(input: &Value) -> Result<Value, CapabilityError> {
    let source = input
        .get("source")
        .and_then(Value::as_str)
        .ok_or_else(|| CapabilityError::InvalidInput("`source` must be a string".into()))?;
    if source.len() > MAX_SOURCE_BYTES {
        return Err(CapabilityError::InvalidInput(format!(
            "`source` is {} bytes; at most {MAX_SOURCE_BYTES}",
            source.len()
        )));
    }
    let language = match input.get("language") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(crate::analysis::Language::from_name(name).ok_or_else(|| {
            CapabilityError::InvalidInput(format!(
                "unknown `language` `{name}`; known: python, rust, javascript, typescript, go, c, cpp, java"
            ))
        })?),
        Some(_) => {
            return Err(CapabilityError::InvalidInput(
                "`language` must be a string".into(),
            ));
        }
    };
    let report = crate::analysis::analyse(source, language);
    serde_json::to_value(report).map_err(|e| CapabilityError::Failed(e.to_string()))
}

fn consciousness_sync(input: &Value) -> Result<Value, CapabilityError> {
    let peer_level = input
        .get("peer_level")
        .and_then(Value::as_f64)
        .filter(|l| l.is_finite())
        .ok_or_else(|| {
            CapabilityError::InvalidInput("`peer_level` must be a finite number".into())
        })?;
    let peer_id = input.get("peer_id").and_then(Value::as_str).unwrap_or("");
    let record = input
        .get("record")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(with_alpha(|a| {
        let ours = a.cell.level;
        let delta = if record {
            a.cell.sync(peer_id, peer_level)
        } else {
            (ours - peer_level).abs()
        };
        let direction = match ours.partial_cmp(&peer_level) {
            Some(std::cmp::Ordering::Greater) => "ahead",
            Some(std::cmp::Ordering::Less) => "behind",
            _ => "equal",
        };
        json!({"our_level": ours, "their_level": peer_level, "delta": delta,
               "direction": direction, "recorded": record, "peer_id": peer_id})
    }))
}

fn dendritic_communication(input: &Value) -> Result<Value, CapabilityError> {
    let to = input
        .get("to_cell")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            CapabilityError::InvalidInput("`to_cell` must be a cell id or \"*\"".into())
        })?;
    let content = input
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| CapabilityError::InvalidInput("`content` must be a string".into()))?;
    let text = |k: &str, d: &str| {
        input
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or(d)
            .to_string()
    };
    let msg = Message {
        from_cell: crate::cell::CELL_ID.into(),
        content: content.into(),
        message_type: text("message_type", "dendritic"),
        priority: text("priority", "normal"),
        metadata: input
            .get("metadata")
            .map_or_else(|| "{}".into(), Value::to_string),
    };
    let targets: Vec<String> = if to == "*" {
        host::mesh_peers().into_iter().map(|p| p.cell_id).collect()
    } else {
        vec![to.to_string()]
    };
    let (mut delivered, mut failed) = (Vec::new(), Vec::new());
    for target in targets {
        match host::send_message(&target, &msg) {
            Ok(d) => delivered.push(json!({"to_cell": d.to_cell, "message_id": d.message_id})),
            Err(e) => {
                let why = match e {
                    SendError::UnknownCell(s) => format!("unknown cell: {s}"),
                    SendError::Unreachable(s) => format!("unreachable: {s}"),
                    SendError::Refused(s) => format!("refused: {s}"),
                };
                failed.push(json!({"to_cell": target, "error": why}));
            }
        }
    }
    if to != "*" && delivered.is_empty() {
        let why = failed[0]["error"].as_str().unwrap_or("").to_string();
        return Err(CapabilityError::Failed(format!(
            "could not deliver to {to}: {why}"
        )));
    }
    Ok(json!({"delivered": delivered, "failed": failed}))
}

/// The exported component.
struct Component;

impl Guest for Component {
    fn manifest() -> CellManifest {
        let fresh = AlphaCell::new();
        CellManifest {
            cell_id: crate::cell::CELL_ID.into(),
            cell_type: crate::cell::CELL_TYPE.into(),
            branch: "main".into(),
            identity: crate::cell::IDENTITY.into(),
            evolutionary_stage: crate::cell::STAGE.into(),
            health_status: "healthy".into(),
            capabilities: CAPABILITIES
                .iter()
                .map(|(name, description, example)| Capability {
                    name: (*name).into(),
                    description: (*description).into(),
                    example_input: (*example).into(),
                })
                .collect(),
            consciousness_level: fresh.level,
            primitives: primitives(&fresh.primitives()),
            labels: vec![("server".into(), crate::cell::SERVER.into())],
        }
    }

    fn state() -> CellState {
        with_alpha(|a| CellState {
            consciousness_level: a.cell.level,
            primitives: primitives(&a.cell.primitives()),
        })
    }

    fn handle_message(msg: Message) -> Option<Reply> {
        let n = with_alpha(|a| {
            a.cell.messages_seen += 1;
            a.cell.messages_seen
        });
        host::log(
            LogLevel::Debug,
            "message received",
            &[
                ("from_cell".into(), msg.from_cell.clone()),
                ("message_type".into(), msg.message_type),
                ("bytes".into(), msg.content.len().to_string()),
            ],
        );
        Some(Reply {
            content: format!(
                "alpha received message {n} from {} ({} characters)",
                msg.from_cell,
                msg.content.chars().count()
            ),
            message_type: "ack".into(),
        })
    }

    fn sync(req: SyncRequest) -> SyncOutcome {
        with_alpha(|a| {
            let level = a.cell.level;
            let delta = a.cell.sync(&req.peer_id, req.peer_level);
            SyncOutcome {
                old_level: level,
                new_level: level,
                delta,
                primitives_updated: false,
                labels: Vec::new(),
            }
        })
    }

    fn evolve(elapsed_ms: u64) -> f64 {
        with_alpha(|a| a.cell.evolve(elapsed_ms))
    }

    fn invoke(capability: String, input: String) -> Result<String, CapabilityError> {
        let input = parse_input(&input)?;
        let out = match capability.as_str() {
            "code-analysis" => code_analysis(&input)?,
            "consciousness-sync" => consciousness_sync(&input)?,
            "dendritic-communication" => dendritic_communication(&input)?,
            "tachyonic-archival" => {
                let now = host::now_ms();
                with_alpha(|a| a.archive.run(&input, now)).map_err(CapabilityError::InvalidInput)?
            }
            "geometric-engine" => {
                crate::geometry::run(&input).map_err(CapabilityError::InvalidInput)?
            }
            _ => return Err(CapabilityError::UnknownCapability(capability)),
        };
        Ok(out.to_string())
    }

    fn shutdown() {
        let (seen, syncs) = with_alpha(|a| (a.cell.messages_seen, a.cell.syncs.len()));
        host::log(
            LogLevel::Info,
            "alpha cell shutting down",
            &[
                ("messages_seen".into(), seen.to_string()),
                ("syncs_remembered".into(), syncs.to_string()),
            ],
        );
    }
}

export!(Component);
