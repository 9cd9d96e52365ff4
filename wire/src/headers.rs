//! Header names cellmesh adds to the original contract (lower case, as HTTP/2 and `http`
//! require).

/// The per-cell secret issued at registration, presented on heartbeat and deregistration.
pub const SECRET: &str = "x-cell-secret";

/// The lease (incarnation) a deregistration targets, when not given as `?incarnation=N`.
pub const INCARNATION: &str = "x-cell-incarnation";

/// The registry revision a `GET /peers` answer was rendered at.
pub const REGISTRY_REVISION: &str = "x-registry-revision";
