//! Rust bindings generated from `wit/cell.wit` (world `cell`), the single
//! source of the plugin contract. Nothing here is written by hand.
//!
//! Exports are async so that calls run on a fiber the epoch deadline can
//! interrupt and yield; only `send-message` among the imports is async (it
//! does network I/O), the others answer from memory.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "cell",
    imports: {
        "cellmesh:cell/host.send-message": async,
    },
    exports: { default: async },
});

pub use cellmesh::cell::types::{
    Capability, CapabilityError, CellManifest as Manifest, CellState, Delivery, LogLevel, Message,
    Peer, Primitive, Reply, SendError, SyncOutcome, SyncRequest,
};
