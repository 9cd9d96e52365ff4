//! The bounds on the contract's fields, written once for both sides.
//!
//! Discovery refuses a registration that breaks one of these (422 naming the field, or 413 for
//! a body over the byte budget); a cell host checks the registration it is about to send against
//! the same functions at start, so that a cell discovery would refuse says why and exits instead
//! of being refused forever. None of them is narrower than what discovery accepted before they
//! were unified (the original service had no bounds at all).
//!
//! | field | rule | constant / check |
//! |---|---|---|
//! | `cell_id` | 1 to 128 bytes of `[A-Za-z0-9._:-]` | [`CELL_ID_MAX_LEN`], [`is_valid_cell_id`] |
//! | `ip`, `hostname`, `branch`, `type`, each service | at most 255 characters | [`TEXT_MAX_LEN`] |
//! | `services` | at most 64 entries | [`SERVICES_MAX`] |
//! | `consciousness_level` | a finite number | [`is_valid_level`] |
//! | the whole registration | at most 16 KiB as stored | [`REGISTRATION_MAX_BYTES`], [`registration_cost`] |
//! | a request body | at most 64 KiB | [`DISCOVERY_BODY_MAX_BYTES`] |
//!
//! Plugins are held to one more rule by the host: a plugin's starting level lies in
//! `[0, LEVEL_MAX]` (discovery accepts any finite level, so this never makes a cell that
//! discovery refuses).
//!
//! # The byte budget
//!
//! A registration costs what discovery keeps for it: its JSON object as `GET /peers` serves it,
//! without the fields that change at every answer (`last_seen`, `age_ms`), with the numbers
//! (`port`, `consciousness_level`, `incarnation`) counted at their widest so that the cost does
//! not change when the level does. [`registration_cost`] computes it from the fields; it is the
//! same function on both sides, so a cell can check before it registers. The biggest
//! registration the per-field rules allow (64 services of 255 characters, each escaped to six
//! bytes) costs about 100 KiB; the original cells' registrations cost about 300 bytes.

/// Longest `cell_id` (in bytes) both sides accept.
pub const CELL_ID_MAX_LEN: usize = 128;

/// Longest free-text field (`ip`, `hostname`, `branch`, `type`, one service name), in
/// characters (not bytes, as pydantic counts).
pub const TEXT_MAX_LEN: usize = 255;

/// Most entries of `services` (a plugin's capabilities) both sides accept.
pub const SERVICES_MAX: usize = 64;

/// Highest starting `consciousness_level` the host accepts from a plugin manifest (plugin
/// levels are finite and non-negative). Discovery accepts any finite level.
pub const LEVEL_MAX: f64 = 1000.0;

/// Lowest starting `consciousness_level` the host accepts from a plugin manifest.
pub const LEVEL_MIN: f64 = 0.0;

/// Default largest request body discovery accepts, in bytes.
pub const DISCOVERY_BODY_MAX_BYTES: usize = 64 * 1024;

/// Default per-registration byte budget (see the module docs): a registration costing more is
/// refused (discovery's `--registration-max-bytes`; its default).
pub const REGISTRATION_MAX_BYTES: usize = 16 * 1024;

/// The fixed part of [`registration_cost`]: the keys and punctuation of the stored JSON object
/// (closing brace included) plus the three numbers at their widest (port 5 digits, level 24
/// characters, incarnation 20 digits).
pub const REGISTRATION_FRAMING_BYTES: usize = 157;

/// Longest cell id the host used to accept from a plugin manifest or `--cell-id`.
///
/// **Deprecated**: the host now follows [`CELL_ID_MAX_LEN`] and [`is_cell_id_byte`] like
/// discovery. Kept until every user has moved; do not use in new code.
pub const PLUGIN_CELL_ID_MAX_LEN: usize = 64;

/// Whether `b` may appear in a `cell_id` (`A-Z a-z 0-9 . _ : -`).
pub fn is_cell_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

/// Whether `id` is a valid `cell_id`: 1 to [`CELL_ID_MAX_LEN`] bytes of [`is_cell_id_byte`].
pub fn is_valid_cell_id(id: &str) -> bool {
    (1..=CELL_ID_MAX_LEN).contains(&id.len()) && id.bytes().all(is_cell_id_byte)
}

/// Longest host name accepted as a peer's `ip`, in bytes (DNS's limit).
pub const HOST_NAME_MAX_LEN: usize = 253;

/// Whether `host` is a host name a peer may be listed at: 1 to [`HOST_NAME_MAX_LEN`] letters,
/// digits, `-`, `_` and `.` (Docker's container names included).
pub fn is_valid_host_name(host: &str) -> bool {
    (1..=HOST_NAME_MAX_LEN).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `ip` is an `ip` field discovery accepts and hosts reach: an IP address (an IPv6 one
/// possibly in brackets) or a host name ([`is_valid_host_name`]); never a port, a path, a
/// query or userinfo, which would turn a peer's URL into somebody else's.
pub fn is_valid_peer_address(ip: &str) -> bool {
    let unbracketed = ip.strip_prefix('[').and_then(|rest| rest.strip_suffix(']'));
    match unbracketed {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
        None => ip.parse::<std::net::IpAddr>().is_ok() || is_valid_host_name(ip),
    }
}

/// Whether `level` is a `consciousness_level` discovery accepts (any finite number).
pub fn is_valid_level(level: f64) -> bool {
    level.is_finite()
}

/// Whether `text` fits a free-text field ([`TEXT_MAX_LEN`] characters).
pub fn is_valid_text(text: &str) -> bool {
    text.len() <= TEXT_MAX_LEN || text.chars().count() <= TEXT_MAX_LEN
}

/// Whether `b` may appear in a cell id the host used to accept from a plugin.
///
/// **Deprecated**: use [`is_cell_id_byte`] (the host follows discovery's rule now). Kept until
/// every user has moved; do not use in new code.
pub fn is_plugin_cell_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Length of `s` as a JSON string literal, quotes included, as `serde_json` writes it (`"` and
/// `\` escaped with a backslash, control characters as `\n`-style or `\u00XX` escapes, other
/// characters as their UTF-8 bytes).
pub fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 2,
            0x00..=0x1F => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// The share of [`registration_cost`] that `services` takes (its entries as JSON string
/// literals and the commas between them; the brackets are framing).
pub fn services_cost<S: AsRef<str>>(services: &[S]) -> usize {
    services
        .iter()
        .map(|s| json_str_len(s.as_ref()))
        .sum::<usize>()
        + services.len().saturating_sub(1)
}

/// The text fields of a registration, borrowed, for [`registration_cost`].
#[derive(Debug, Clone, Copy)]
pub struct RegistrationText<'a, S> {
    /// `cell_id`.
    pub cell_id: &'a str,
    /// `ip`.
    pub ip: &'a str,
    /// `hostname`.
    pub hostname: &'a str,
    /// `branch`.
    pub branch: &'a str,
    /// `type`.
    pub cell_type: &'a str,
    /// `services`.
    pub services: &'a [S],
}

impl<S: AsRef<str>> RegistrationText<'_, S> {
    /// Each field's share of [`registration_cost`], by wire name (the framing excluded).
    pub fn field_costs(&self) -> [(&'static str, usize); 6] {
        [
            ("cell_id", json_str_len(self.cell_id)),
            ("ip", json_str_len(self.ip)),
            ("hostname", json_str_len(self.hostname)),
            ("branch", json_str_len(self.branch)),
            ("type", json_str_len(self.cell_type)),
            ("services", services_cost(self.services)),
        ]
    }
}

/// What a registration costs against [`REGISTRATION_MAX_BYTES`] (see the module docs): an
/// upper bound of the bytes discovery stores for it, the same whatever its level.
pub fn registration_cost<S: AsRef<str>>(fields: &RegistrationText<'_, S>) -> usize {
    REGISTRATION_FRAMING_BYTES + fields.field_costs().iter().map(|(_, n)| n).sum::<usize>()
}

/// [`registration_cost`] of a [`crate::Registration`] (what a cell is about to send).
pub fn registration_cost_of(r: &crate::Registration) -> usize {
    registration_cost(&RegistrationText {
        cell_id: &r.cell_id,
        ip: &r.ip,
        hostname: &r.hostname,
        branch: &r.branch,
        cell_type: &r.cell_type,
        services: &r.services,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_are_addresses_or_host_names_never_urls() {
        for good in [
            "10.0.0.1",
            "::1",
            "[::1]",
            "fe80::1",
            "pure",
            "aios-pure_1.local",
            "a173f12aa7e0",
        ] {
            assert!(is_valid_peer_address(good), "{good}");
        }
        for bad in [
            "",
            "[::1]:18497/internal/admin?x=",
            "10.0.0.1:80",
            "user@host",
            "host/path",
            "host?q",
            "[10.0.0.1]",
            "h st",
            &"h".repeat(254),
        ] {
            assert!(!is_valid_peer_address(bad), "{bad}");
        }
    }

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

    #[test]
    fn cell_ids_as_discovery_always_accepted_them() {
        assert!(is_valid_cell_id("pure"));
        assert!(is_valid_cell_id("node-1.zone_a:8002"));
        assert!(is_valid_cell_id(&"x".repeat(128)));
        assert!(!is_valid_cell_id(&"x".repeat(129)));
        assert!(!is_valid_cell_id(""));
        assert!(!is_valid_cell_id("a b"));
        assert!(!is_valid_cell_id("a/b"));
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        assert!(is_valid_text(&"é".repeat(255)));
        assert!(!is_valid_text(&"é".repeat(256)));
        assert!(is_valid_text(&"a".repeat(255)));
        assert!(!is_valid_text(&"a".repeat(256)));
    }

    #[test]
    fn json_str_len_matches_serde_json() {
        let mut samples: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        samples.extend(["", "pure", "é\u{2028}\u{1F600}", "a\"b\\c\n\u{7f}"].map(String::from));
        for s in samples {
            assert_eq!(
                json_str_len(&s),
                serde_json::to_string(&s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn cost_bounds_the_stored_json() {
        let r = crate::Registration {
            cell_id: "alpha".into(),
            ip: "fd510599bfd9".into(),
            port: 65535,
            consciousness_level: -2.225_073_858_507_201_4e-308,
            services: vec!["code-analysis".into(), "x\"y".into()],
            branch: "main".into(),
            cell_type: "alpha_cell".into(),
            hostname: "fd510599bfd9".into(),
        };
        // The stored form: the registration's object plus the widest incarnation.
        let mut stored = serde_json::to_value(&r).unwrap();
        stored["incarnation"] = u64::MAX.into();
        let stored = serde_json::to_string(&stored).unwrap();
        assert_eq!(registration_cost_of(&r), stored.len());
        assert!(registration_cost_of(&r) < 400);
    }
}
