//! CM15: the shutdown hook, called last, returns within the host's bound.

use std::time::{Duration, Instant};

use crate::conformance::catalogue::CheckId;
use crate::conformance::format::human_ms;
use crate::conformance::result::CheckResult;

use super::prober::Prober;

/// CM15: the shutdown hook, bounded by `bound` (the host's bound).
pub(crate) async fn shutdown(p: &Prober, bound: Duration) -> CheckResult {
    let id = CheckId::Shutdown;
    let started = Instant::now();
    match tokio::time::timeout(bound, p.call(id, "shutdown", p.sandbox.shutdown())).await {
        Ok(Ok(())) => CheckResult::pass(
            id,
            format!(
                "returned in {} (the host allows {})",
                human_ms(started.elapsed()),
                human_ms(bound)
            ),
        ),
        Ok(Err(e)) => CheckResult::fail(id, e.to_string()),
        Err(_) => CheckResult::fail(
            id,
            format!(
                "did not return within the host's bound of {}",
                human_ms(bound)
            ),
        ),
    }
}
