//! Integration tests of `cell-host` (one binary, shared helpers in
//! [`support`]): lifecycle against a real discovery on port 0, the API,
//! the sandbox fixtures, refused files, the router without a socket, the
//! binary's SIGTERM path, the conformance suite and the third-party
//! example cells.

mod batch_liveness;
mod conformance;
mod contest;
mod contract;
mod discovery_load;
mod egress;
mod examples;
mod fake;
mod fleet;
mod lifecycle;
mod liveness;
mod messages;
mod peer_contract;
mod process;
mod refused;
mod router;
mod sandbox;
mod sandbox_bounds;
mod sandbox_trust;
mod shutdown;
mod slow_clients;
mod support;

/// Discovery's TTL in tests: long, so only a deregistration removes a peer.
const TTL: std::time::Duration = std::time::Duration::from_secs(60);
