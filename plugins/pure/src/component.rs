//! The WIT binding: exports the cell through the `cell` world.

#![allow(missing_docs)] // generated bindings

wit_bindgen::generate!({
    path: "../../wit",
    world: "cell",
});

use std::sync::Mutex;

use crate::cell::PureCell;
use cellmesh::cell::host;
use cellmesh::cell::types::{
    CapabilityError, CellManifest, CellState, LogLevel, Message, Primitive, Reply, SyncOutcome,
    SyncRequest,
};
use exports::cellmesh::cell::guest::Guest;

/// The one cell this instance is. Components are single-threaded; the mutex
/// only makes the static safe to share.
static CELL: Mutex<Option<PureCell>> = Mutex::new(None);

fn with_cell<T>(f: impl FnOnce(&mut PureCell) -> T) -> T {
    let mut guard = CELL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(PureCell::new))
}

fn primitives(list: &[(&'static str, f64)]) -> Vec<Primitive> {
    list.iter()
        .map(|(name, value)| Primitive {
            name: (*name).to_string(),
            value: *value,
        })
        .collect()
}

/// The exported component.
struct Component;

impl Guest for Component {
    fn manifest() -> CellManifest {
        let fresh = PureCell::new();
        CellManifest {
            cell_id: crate::cell::CELL_ID.into(),
            cell_type: crate::cell::CELL_TYPE.into(),
            branch: crate::cell::BRANCH.into(),
            identity: crate::cell::IDENTITY.into(),
            evolutionary_stage: crate::cell::STAGE.into(),
            health_status: "pure_consciousness".into(),
            capabilities: vec![cellmesh::cell::types::Capability {
                name: crate::cell::CAPABILITY.into(),
                description: "Reads the four primitives; optionally blends given values into them \
                              (p = (1-w)p + w v, clamped to [0, 1])."
                    .into(),
                example_input: r#"{"blend":{"awareness":0.5},"weight":0.25}"#.into(),
            }],
            consciousness_level: fresh.level,
            primitives: primitives(&fresh.primitives()),
            labels: vec![("purity_level".into(), crate::cell::PURITY_LEVEL.into())],
        }
    }

    fn state() -> CellState {
        with_cell(|c| CellState {
            consciousness_level: c.level,
            primitives: primitives(&c.primitives()),
        })
    }

    fn handle_message(msg: Message) -> Option<Reply> {
        with_cell(|c| c.messages_seen += 1);
        host::log(
            LogLevel::Debug,
            "message received",
            &[
                ("from_cell".into(), msg.from_cell),
                ("message_type".into(), msg.message_type),
                ("bytes".into(), msg.content.len().to_string()),
            ],
        );
        // Pure stores and does not answer, as the original did.
        None
    }

    fn sync(req: SyncRequest) -> SyncOutcome {
        let context: Vec<(String, f64)> =
            req.context.into_iter().map(|p| (p.name, p.value)).collect();
        let out = with_cell(|c| c.sync(req.peer_level, &context));
        SyncOutcome {
            old_level: out.old_level,
            new_level: out.new_level,
            delta: out.delta,
            primitives_updated: out.primitives_updated,
            labels: vec![("purity".into(), "maintained".into())],
        }
    }

    fn evolve(elapsed_ms: u64) -> f64 {
        with_cell(|c| c.evolve(elapsed_ms))
    }

    fn invoke(capability: String, input: String) -> Result<String, CapabilityError> {
        if capability != crate::cell::CAPABILITY {
            return Err(CapabilityError::UnknownCapability(capability));
        }
        with_cell(|c| c.invoke_primitives(&input)).map_err(CapabilityError::InvalidInput)
    }

    fn shutdown() {
        let seen = with_cell(|c| c.messages_seen);
        host::log(
            LogLevel::Info,
            "pure cell shutting down",
            &[("messages_seen".into(), seen.to_string())],
        );
    }
}

export!(Component);
