//! [`Prober`]: a loaded plugin plus the log of every call the suite made
//! to it, which CM13 and CM14 judge afterwards.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::plugin::{PluginError, PluginSandbox};

use crate::conformance::catalogue::CheckId;

/// One call the suite made.
#[derive(Debug, Clone)]
pub(crate) struct CallRecord {
    /// The check that made it.
    pub check: CheckId,
    /// The export called.
    pub export: &'static str,
    /// Wall time of the call (instantiation included when it made one).
    pub elapsed: Duration,
    /// How it failed, if it did.
    pub failure: Option<PluginError>,
}

/// A loaded plugin plus the log of every call made to it.
pub(crate) struct Prober {
    /// The plugin.
    pub sandbox: PluginSandbox,
    calls: Mutex<Vec<CallRecord>>,
}

impl Prober {
    /// Wraps a loaded plugin.
    pub fn new(sandbox: PluginSandbox) -> Self {
        Self {
            sandbox,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call made so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a call made outside the prober (the load's `manifest`).
    pub fn record(&self, record: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Runs and records one call.
    pub(super) async fn call<T>(
        &self,
        check: CheckId,
        export: &'static str,
        call: impl Future<Output = Result<T, PluginError>>,
    ) -> Result<T, PluginError> {
        let started = Instant::now();
        let result = call.await;
        self.record(CallRecord {
            check,
            export,
            elapsed: started.elapsed(),
            failure: result.as_ref().err().cloned(),
        });
        result
    }
}
