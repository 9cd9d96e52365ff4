//! The catalogue of checks: [`CheckId`] and [`CATALOGUE`], one row of
//! constant data per check (stable id, title, whether it is required, the
//! standard fix), plus the thresholds and inputs the checks are defined by.
//! Adding a check is one variant and one row.

use std::time::Duration;

/// Components larger than this get a warning from CM16 (they compile
/// slowly).
pub const LARGE_BINARY_BYTES: u64 = 10 * 1024 * 1024;
/// A first compile slower than this gets a warning from CM17.
pub const SLOW_COMPILE: Duration = Duration::from_secs(2);
/// Instantiation (link, instantiate, first `manifest`) slower than this
/// gets a warning from CM17.
pub const SLOW_INSTANTIATE: Duration = Duration::from_millis(100);
/// Evolution steps run by CM12.
pub const EVOLUTION_STEPS: u32 = 10_000;
/// Capability name CM10 invokes; no real cell declares it.
pub const UNKNOWN_CAPABILITY: &str = "cellmesh-conformance.no-such-capability";

/// Every check of the suite, with its stable id. The discriminant is the
/// check's row in [`CATALOGUE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckId {
    /// `CM01-component`
    Component,
    /// `CM02-world`
    World,
    /// `CM03-exports`
    Exports,
    /// `CM04-imports`
    Imports,
    /// `CM05-manifest`
    Manifest,
    /// `CM06-callable`
    Callable,
    /// `CM07-manifest-stable`
    ManifestStable,
    /// `CM08-messages`
    Messages,
    /// `CM09-sync-extremes`
    SyncExtremes,
    /// `CM10-unknown-capability`
    UnknownCapability,
    /// `CM11-capability-probes`
    CapabilityProbes,
    /// `CM12-evolution`
    Evolution,
    /// `CM13-cpu-deadline`
    CpuDeadline,
    /// `CM14-memory-cap`
    MemoryCap,
    /// `CM15-shutdown`
    Shutdown,
    /// `CM16-binary-size`
    BinarySize,
    /// `CM17-startup-time`
    StartupTime,
    /// `CM18-wall-clock`
    WallClock,
}

/// The constant data of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSpec {
    /// The check this row describes.
    pub check: CheckId,
    /// The stable id, e.g. `CM08-messages`.
    pub id: &'static str,
    /// What the check verifies, in a few words.
    pub title: &'static str,
    /// Whether a failure fails the suite; advisory checks only warn.
    pub required: bool,
    /// How to fix a failure of this check (also the advice of CM16's and
    /// CM17's warnings).
    pub fix: &'static str,
}

/// Every check, in id order: row `i` describes the check whose
/// discriminant is `i` (asserted at compile time below).
pub static CATALOGUE: [CheckSpec; 18] = [
    CheckSpec {
        check: CheckId::Component,
        id: "CM01-component",
        title: "the file is a WebAssembly component",
        required: true,
        fix: "build a component: Rust `cargo build --release --target wasm32-wasip2`, Python \
              `componentize-py -d wit -w cell componentize app -o cell.wasm`; check that the \
              path names the built .wasm",
    },
    CheckSpec {
        check: CheckId::World,
        id: "CM02-world",
        title: "targets the cell world at a supported version",
        required: true,
        fix: "generate the bindings from the wit/ of a cellmesh 0.1 release for the world \
              `cell` (wit_bindgen::generate!({ path: \"wit\", world: \"cell\" }) or \
              componentize-py -d wit -w cell)",
    },
    CheckSpec {
        check: CheckId::Exports,
        id: "CM03-exports",
        title: "exports every guest function with the contract's types",
        required: true,
        fix: "implement every function of the `guest` interface of wit/cell.wit (manifest, \
              state, handle-message, sync, evolve, invoke, shutdown) with the signatures of \
              the same WIT version",
    },
    CheckSpec {
        check: CheckId::Imports,
        id: "CM04-imports",
        title: "imports only the cell world's host interface and WASI 0.2",
        required: true,
        fix: "import only the `host` interface of the cell world and WASI 0.2: drop other \
              WIT dependencies; this host provides nothing else, so it cannot link the plugin",
    },
    CheckSpec {
        check: CheckId::Manifest,
        id: "CM05-manifest",
        title: "the manifest follows the contract's rules",
        required: true,
        fix: "fix `manifest`: cell-id 1 to 128 characters of [A-Za-z0-9._:-], a non-empty \
              cell-type, at most 64 unique non-empty capability names, text fields of at most \
              255 characters, a finite consciousness-level in [0, 1000], finite primitive \
              values",
    },
    CheckSpec {
        check: CheckId::Callable,
        id: "CM06-callable",
        title: "every export answers an ordinary call",
        required: true,
        fix: "make every export return normally for ordinary input: a Rust panic or a Python \
              exception escaping an export is a trap; return a default or a typed error",
    },
    CheckSpec {
        check: CheckId::ManifestStable,
        id: "CM07-manifest-stable",
        title: "the manifest is the same across calls and instances",
        required: true,
        fix: "build the manifest from constants only: not from state, time, randomness or a \
              call counter",
    },
    CheckSpec {
        check: CheckId::Messages,
        id: "CM08-messages",
        title: "messages of many shapes are handled without trapping",
        required: true,
        fix: "handle-message must accept any message: empty, 1 MiB, any unicode or control \
              characters, metadata that is not JSON; never panic or raise, answer none or a \
              reply",
    },
    CheckSpec {
        check: CheckId::SyncExtremes,
        id: "CM09-sync-extremes",
        title: "sync with extreme and non-finite peer levels stays finite",
        required: true,
        fix: "test peer-level with is_finite() / math.isfinite() before using it, clamp \
              extreme values, never store a non-finite level; old-level, new-level and delta \
              must be finite",
    },
    CheckSpec {
        check: CheckId::UnknownCapability,
        id: "CM10-unknown-capability",
        title: "an unknown capability gives the typed error",
        required: true,
        fix: "for a name the manifest does not declare, invoke must return \
              `unknown-capability(name)` (Rust: Err(CapabilityError::UnknownCapability(name)); \
              Python: raise Err(CapabilityError_UnknownCapability(name)))",
    },
    CheckSpec {
        check: CheckId::CapabilityProbes,
        id: "CM11-capability-probes",
        title: "every capability answers its example-input with JSON",
        required: true,
        fix: "give every capability an example-input that is a JSON document it accepts, and \
              answer with JSON text; report bad input as `invalid-input`, never trap",
    },
    CheckSpec {
        check: CheckId::Evolution,
        id: "CM12-evolution",
        title: "10,000 evolution steps keep the level finite",
        required: true,
        fix: "keep the level finite in evolve: clamp it, cap elapsed-ms (a host may pass a \
              long pause), avoid divisions by zero",
    },
    CheckSpec {
        check: CheckId::CpuDeadline,
        id: "CM13-cpu-deadline",
        title: "every call returns within the CPU deadline",
        required: true,
        fix: "every call must return well within the deadline: bound loops and the work done \
              per call, spread long work over evolve steps",
    },
    CheckSpec {
        check: CheckId::MemoryCap,
        id: "CM14-memory-cap",
        title: "every instance stays within the memory cap",
        required: true,
        fix: "keep the instance's memory under the cap: bound buffers, caches and the number \
              of messages kept",
    },
    CheckSpec {
        check: CheckId::Shutdown,
        id: "CM15-shutdown",
        title: "the shutdown hook returns in time",
        required: true,
        fix: "shutdown must return promptly: no waiting, loops or heavy work (the host \
              bounds it)",
    },
    CheckSpec {
        check: CheckId::BinarySize,
        id: "CM16-binary-size",
        title: "the component is not unduly large (advisory)",
        required: false,
        fix: "large components compile slowly on a host's first start: Rust opt-level = \"s\", \
              lto, strip; a Python component carries its interpreter (about 18 MB), which is \
              expected",
    },
    CheckSpec {
        check: CheckId::StartupTime,
        id: "CM17-startup-time",
        title: "compilation and instantiation are quick (advisory)",
        required: false,
        fix: "the first start compiles the component and the host caches the result, so later \
              starts are fast; a smaller component compiles faster; slow instantiation means \
              heavy start-up work in the component",
    },
    CheckSpec {
        check: CheckId::WallClock,
        id: "CM18-wall-clock",
        title: "every call returns within the wall-clock bound",
        required: true,
        fix: "never sleep or block in an export (wasi:io/poll, monotonic-clock subscriptions, \
              long waits): the host stops a call at its wall-clock bound (1.75 s by default) \
              and replaces the instance, losing its state; keep sends to peers few and quick \
              (at most 8 sends and 1 s per call)",
    },
];

// A row out of place would give a check another check's id and advice.
const _: () = {
    let mut i = 0;
    while i < CATALOGUE.len() {
        assert!(
            CATALOGUE[i].check as usize == i,
            "CATALOGUE is out of order"
        );
        i += 1;
    }
};

impl CheckId {
    /// Every check, in id order.
    pub const ALL: [CheckId; 18] = {
        let mut all = [CheckId::Component; 18];
        let mut i = 0;
        while i < all.len() {
            all[i] = CATALOGUE[i].check;
            i += 1;
        }
        all
    };

    /// The check's row of [`CATALOGUE`].
    pub fn spec(self) -> &'static CheckSpec {
        &CATALOGUE[self as usize]
    }

    /// The stable id, e.g. `CM08-messages`.
    pub fn id(self) -> &'static str {
        self.spec().id
    }

    /// What the check verifies, in a few words.
    pub fn title(self) -> &'static str {
        self.spec().title
    }

    /// Whether a failure fails the suite; advisory checks only warn.
    pub fn required(self) -> bool {
        self.spec().required
    }

    /// How to fix a failure of this check.
    pub fn fix(self) -> &'static str {
        self.spec().fix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_ordered() {
        let ids: Vec<&str> = CheckId::ALL.iter().map(|c| c.id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn ids_are_numbered_in_order() {
        for (i, check) in CheckId::ALL.iter().enumerate() {
            assert!(
                check.id().starts_with(&format!("CM{:02}-", i + 1)),
                "{} is not check {}",
                check.id(),
                i + 1
            );
        }
    }

    #[test]
    fn only_the_size_and_startup_checks_are_advisory() {
        let advisory: Vec<CheckId> = CheckId::ALL.into_iter().filter(|c| !c.required()).collect();
        assert_eq!(advisory, [CheckId::BinarySize, CheckId::StartupTime]);
    }
}
