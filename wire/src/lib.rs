//! The cellmesh discovery wire contract, in one place.
//!
//! Discovery (the server) and `cell-host` (a client) both depend on this crate and never on
//! each other; a third-party Rust client can depend on it too. It holds only data: no I/O, no
//! runtime.
//!
//! - [`types`]: the JSON bodies of the discovery calls (the original's fields plus cellmesh's
//!   documented additions, which are optional so the original service's answers still parse).
//! - [`batch`]: the batch calls of a many-cell host (one request for many cells).
//! - [`headers`]: the header names cellmesh adds to the contract.
//! - [`limits`]: the bounds each side enforces on the fields.
//!
//! The contract itself, field by field, is described in `docs/contract.md`.

pub mod batch;
pub mod headers;
pub mod limits;
pub mod types;

pub use types::{
    DeregisterAnswer, ErrorDetail, HeartbeatAnswer, HeartbeatRequest, PeerInfo, PeersAnswer,
    RegisterAnswer, Registration,
};
