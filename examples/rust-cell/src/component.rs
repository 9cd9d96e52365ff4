//! The WIT binding: exports the cell through the `cell` world.

#![allow(missing_docs)] // generated bindings

wit_bindgen::generate!({
    path: "../../wit",
    world: "cell",
});

use std::sync::Mutex;

use crate::cell::{self, CounterCell};
use cellmesh::cell::host;
use cellmesh::cell::types::{
    Capability, CapabilityError, CellManifest, CellState, LogLevel, Message, Primitive, Reply,
    SyncOutcome, SyncRequest,
};
use exports::cellmesh::cell::guest::Guest;

/// The one cell this instance is. Components are single-threaded; the mutex
/// only makes the static safe to share.
static CELL: Mutex<Option<CounterCell>> = Mutex::new(None);

fn with_cell<T>(f: impl FnOnce(&mut CounterCell) -> T) -> T {
    let mut guard = CELL.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(CounterCell::new))
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
        // Built from a fresh cell, so it is the same on every call.
        let fresh = CounterCell::new();
        CellManifest {
            cell_id: cell::CELL_ID.into(),
            cell_type: cell::CELL_TYPE.into(),
            branch: "main".into(),
            identity: cell::IDENTITY.into(),
            evolutionary_stage: cell::STAGE.into(),
            health_status: cell::HEALTH_STATUS.into(),
            capabilities: vec![
                Capability {
                    name: cell::WORD_COUNT.into(),
                    description: "Counts the words, lines, characters and bytes of `text` and \
                                  lists the `top` most frequent words."
                        .into(),
                    example_input: cell::WORD_COUNT_EXAMPLE.into(),
                },
                Capability {
                    name: cell::ECHO.into(),
                    description: "Answers any JSON document back as {\"echo\": document}.".into(),
                    example_input: cell::ECHO_EXAMPLE.into(),
                },
            ],
            consciousness_level: fresh.level,
            primitives: primitives(&fresh.primitives()),
            labels: vec![
                ("language".into(), "rust".into()),
                ("example".into(), "examples/rust-cell".into()),
            ],
        }
    }

    fn state() -> CellState {
        with_cell(|c| CellState {
            consciousness_level: c.level,
            primitives: primitives(&c.primitives()),
        })
    }

    fn handle_message(msg: Message) -> Option<Reply> {
        let (content, message_type) =
            with_cell(|c| c.handle_message(&msg.content, &msg.message_type));
        host::log(
            LogLevel::Debug,
            "message answered",
            &[
                ("from_cell".into(), msg.from_cell),
                ("message_type".into(), msg.message_type),
                ("bytes".into(), msg.content.len().to_string()),
            ],
        );
        Some(Reply {
            content,
            message_type,
        })
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
            labels: vec![("rule".into(), "coherence-weighted".into())],
        }
    }

    fn evolve(elapsed_ms: u64) -> f64 {
        with_cell(|c| c.evolve(elapsed_ms))
    }

    fn invoke(capability: String, input: String) -> Result<String, CapabilityError> {
        let result = match capability.as_str() {
            cell::WORD_COUNT => with_cell(|c| c.word_count(&input)),
            cell::ECHO => with_cell(|c| c.echo(&input)),
            _ => return Err(CapabilityError::UnknownCapability(capability)),
        };
        result.map_err(CapabilityError::InvalidInput)
    }

    fn shutdown() {
        let (messages, invocations, words) =
            with_cell(|c| (c.messages, c.invocations, c.words_counted));
        host::log(
            LogLevel::Info,
            "counter cell shutting down",
            &[
                ("messages".into(), messages.to_string()),
                ("invocations".into(), invocations.to_string()),
                ("words_counted".into(), words.to_string()),
            ],
        );
    }
}

export!(Component);
