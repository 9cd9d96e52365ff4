//! Integration tests of `cell-host` (one binary, shared helpers in
//! [`support`]): lifecycle against a real discovery on port 0, the API,
//! the sandbox fixtures, refused files, the router without a socket, the
//! binary's SIGTERM path, the conformance suite and the third-party
//! example cells.

mod conformance;
mod examples;
mod lifecycle;
mod messages;
mod process;
mod refused;
mod router;
mod sandbox;
mod support;

/// Discovery's TTL in tests: long, so only a deregistration removes a peer.
const TTL: std::time::Duration = std::time::Duration::from_secs(60);
