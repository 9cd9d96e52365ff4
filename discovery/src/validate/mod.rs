//! Request validation that answers in FastAPI/pydantic's 422 shape, so clients written for the
//! original parse our errors unchanged:
//! `{"detail":[{"type":"missing","loc":["body","cell_id"],"msg":"cell_id: Field required","input":{..}}]}`.
//!
//! Like pydantic's lax mode, integers and floats also accept numeric strings and whole floats;
//! strings must be strings. On top of the original, `cell_id`, lengths, the port range, finite
//! levels, the size of `services` and the registration's byte budget are checked, with the
//! bounds of [`cellmesh_wire::limits`] (the same the cell host checks before it registers).
//!
//! # Modules
//!
//! - [`pydantic`]: [`FieldError`], JSON parsing and lax coercions;
//! - [`fields`]: cellmesh's own field rules ([`check_cell_id`]);
//! - [`bodies`]: the register and heartbeat bodies ([`cell_info`], [`heartbeat`]);
//! - [`budget`]: the per-registration byte budget ([`registration`]: 413, or 422 naming the
//!   field);
//! - [`batch`]: the batch bodies of a many-cell host (checked as a whole, then cell by cell
//!   with the single calls' rules).

pub mod batch;
pub mod bodies;
pub mod budget;
pub mod fields;
pub mod pydantic;

pub use batch::{
    Batch, BatchCell, BeatCell, LeaveCell, RegisterCell, batch_deregistration, batch_heartbeat,
    batch_registration,
};
pub use bodies::{CellInfo, Heartbeat, cell_info, cell_info_value, heartbeat};
pub use budget::{RegistrationError, registration, registration_value};
pub use fields::{check_cell_id, check_host_id};
pub use pydantic::{FieldError, lax_float, lax_int, parse_json};
