//! CM16 and CM17, the advisory checks: the file's size and how long the
//! plugin takes to start. They can only warn.

use std::time::Duration;

use crate::plugin::CacheOutcome;

use super::catalogue::{CheckId, LARGE_BINARY_BYTES, SLOW_COMPILE, SLOW_INSTANTIATE};
use super::format::{human_bytes, human_ms};
use super::result::CheckResult;

/// CM16: the file's size.
pub(crate) fn binary_size(size: u64) -> CheckResult {
    if size > LARGE_BINARY_BYTES {
        return CheckResult::warn(
            CheckId::BinarySize,
            format!(
                "{} ({size} bytes) is over {}: expect a slow first start while the host \
                 compiles it",
                human_bytes(size),
                human_bytes(LARGE_BINARY_BYTES)
            ),
            CheckId::BinarySize.fix(),
        );
    }
    CheckResult::pass(
        CheckId::BinarySize,
        format!(
            "{} (warning above {})",
            human_bytes(size),
            human_bytes(LARGE_BINARY_BYTES)
        ),
    )
}

/// CM17: compile (or cache load) and instantiation times.
pub(crate) fn startup_time(
    cache: CacheOutcome,
    compile: Duration,
    instantiate: Option<Duration>,
) -> CheckResult {
    let compiled = cache != CacheOutcome::Hit;
    let what = if compiled {
        "compile"
    } else {
        "load from the compile cache"
    };
    let mut text = format!("{what} {}", human_ms(compile));
    if let Some(instantiate) = instantiate {
        text.push_str(&format!(
            ", link + instantiate + first manifest {}",
            human_ms(instantiate)
        ));
    }
    let slow_compile = compiled && compile > SLOW_COMPILE;
    let slow_instantiate = instantiate.is_some_and(|i| i > SLOW_INSTANTIATE);
    if slow_compile || slow_instantiate {
        let mut limits = Vec::new();
        if slow_compile {
            limits.push(format!("compile over {}", human_ms(SLOW_COMPILE)));
        }
        if slow_instantiate {
            limits.push(format!("instantiation over {}", human_ms(SLOW_INSTANTIATE)));
        }
        return CheckResult::warn(
            CheckId::StartupTime,
            format!("{text}: {}", limits.join(", ")),
            CheckId::StartupTime.fix(),
        );
    }
    CheckResult::pass(CheckId::StartupTime, text)
}
