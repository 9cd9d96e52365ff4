//! The bounds on the contract's fields, written once for both sides.
//!
//! Today the two sides differ on the cell id: discovery accepts what the original's clients
//! send (up to [`CELL_ID_MAX_LEN`] characters, `:` allowed), while the host holds plugin
//! manifests to the narrower [`PLUGIN_CELL_ID_MAX_LEN`] without `:`. Both are kept as they
//! were; they are named here so that the difference is visible in one file.

/// Longest `cell_id` discovery accepts, in bytes (`[A-Za-z0-9._:-]`).
pub const CELL_ID_MAX_LEN: usize = 128;

/// Longest cell id the host accepts from a plugin manifest or `--cell-id`, in bytes
/// (`[A-Za-z0-9._-]`).
pub const PLUGIN_CELL_ID_MAX_LEN: usize = 64;

/// Longest free-text field discovery accepts (`ip`, `hostname`, `branch`, `type`, one service
/// name), in bytes.
pub const TEXT_MAX_LEN: usize = 255;

/// Most entries of `services` discovery accepts.
pub const SERVICES_MAX: usize = 64;

/// Highest `consciousness_level` the host accepts from a plugin (levels are finite and
/// non-negative).
pub const LEVEL_MAX: f64 = 1000.0;

/// Default largest request body discovery accepts, in bytes.
pub const DISCOVERY_BODY_MAX_BYTES: usize = 64 * 1024;

/// Whether `b` may appear in a `cell_id` that discovery accepts.
pub fn is_cell_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// Whether `b` may appear in a cell id the host accepts from a plugin.
pub fn is_plugin_cell_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_id_is_a_discovery_id() {
        const { assert!(PLUGIN_CELL_ID_MAX_LEN <= CELL_ID_MAX_LEN) };
        for b in 0..=u8::MAX {
            if is_plugin_cell_id_byte(b) {
                assert!(is_cell_id_byte(b), "byte {b}");
            }
        }
        assert!(is_cell_id_byte(b':') && !is_plugin_cell_id_byte(b':'));
    }
}
