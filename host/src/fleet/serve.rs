//! Serving a host of many cells, and stopping it in the order the single
//! cell uses, each step bounded and done for all cells at once:
//! 1. liveness and the plugin watches stop;
//! 2. every registered cell is deregistered (in batches), still serving;
//! 3. every listener (the admin API's too) stops accepting and drains;
//! 4. every plugin's shutdown hook runs, concurrently.
//!
//! Per cell there are two tasks (its accept loop and its plugin watch) and
//! no thread; liveness is one task for the host. A cell whose slot fails
//! (discovery refused it, its server failed) stops serving at once; the
//! host ends by itself when every cell has failed.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Fleet, FleetEnd, ReadyCell};
use crate::admin::{AdminHost, admin_app};
use crate::error::Error;
use crate::liveness::{self, BatchMode, LiveCell, LivenessEnd};
use crate::{api, plugin_watch, server};

impl Fleet {
    /// Serves every running cell, registers them all, and runs until
    /// `shutdown` resolves or every cell has failed; then stops (see the
    /// module docs). Answers how the host ended: [`FleetEnd::AllFailed`]
    /// when every cell failed.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<FleetEnd, Error> {
        let Fleet {
            config,
            slots,
            ready,
            discovery,
            admin,
            engine,
        } = self;
        let host = &config.host;
        let bounds = host.shutdown;
        let stop_tasks = CancellationToken::new();
        let stop_http = CancellationToken::new();

        let mut servers = JoinSet::new();
        let mut watches = JoinSet::new();
        let mut live = Vec::with_capacity(ready.len());
        for ReadyCell {
            slot,
            cell,
            listener,
        } in ready
        {
            let app = server::harden(api::app(cell.clone(), host.api), host.server);
            let (limits, drain) = (host.server, bounds.drain);
            let stop = stop_http.child_token();
            let serving = slot.clone();
            servers.spawn(async move {
                let serve = server::serve(listener, app, limits, stop.clone(), drain);
                tokio::pin!(serve);
                let result = tokio::select! {
                    result = &mut serve => result,
                    () = serving.failure() => {
                        stop.cancel();
                        serve.await
                    }
                };
                if let Err(error) = result
                    && !stop.is_cancelled()
                {
                    serving.fail(format!("the HTTP server failed: {error}"));
                }
            });
            let (watched, watch_cell) = (slot.clone(), cell.clone());
            let (settings, stop) = (host.plugin_watch, stop_tasks.clone());
            // A random phase per cell, so that the cells' plugin calls
            // spread over the interval instead of coming all at once.
            let phase = settings.state_every.mul_f64(rand::random::<f64>());
            watches.spawn(async move {
                let watch = async {
                    tokio::time::sleep(phase).await;
                    plugin_watch::run_plugin_watch(watch_cell, settings, stop.clone()).await;
                };
                tokio::select! {
                    () = watch => {}
                    () = stop.cancelled() => {}
                    () = watched.failure() => {}
                }
            });
            live.push(LiveCell { slot, cell });
        }
        if let Some(listener) = admin {
            let token = config.admin.as_ref().and_then(|a| a.token.clone());
            let admin_host = Arc::new(AdminHost::new(config.host_id.clone(), slots.clone()));
            let app = server::harden(admin_app(admin_host, token), host.server);
            if let Ok(local) = listener.local_addr() {
                tracing::info!(admin = %format!("http://{local}"), "admin API serving");
            }
            servers.spawn(server_logged(server::serve(
                listener,
                app,
                host.server,
                stop_http.child_token(),
                bounds.drain,
            )));
        }
        let running = live.len();
        tracing::info!(
            host_id = %config.host_id,
            cells = slots.len(),
            running,
            discovery = %host.discovery_url,
            batch = ?config.batch,
            "cells serving"
        );
        let mut liveness = tokio::spawn(liveness::run_liveness(
            live.clone(),
            discovery.clone(),
            config.host_id.clone(),
            host.lifecycle,
            config.batch,
            stop_tasks.clone(),
        ));

        let all_failed = async {
            for slot in &slots {
                slot.failure().await;
            }
        };
        let mut shutdown = std::pin::pin!(shutdown);
        let mut liveness_done = false;
        tokio::select! {
            () = &mut shutdown => tracing::info!(host_id = %config.host_id, "shutdown requested"),
            () = all_failed => tracing::error!(host_id = %config.host_id, "every cell failed; stopping"),
            end = &mut liveness => {
                liveness_done = true;
                match end {
                    Ok(LivenessEnd::AllRefused) => tracing::error!(
                        host_id = %config.host_id,
                        "discovery refused every cell; stopping"
                    ),
                    Ok(LivenessEnd::Cancelled) => {}
                    Err(error) => tracing::error!(%error, "the liveness task failed; stopping"),
                }
            }
        }

        // 1. Liveness and the watches stop (calls in flight keep their
        //    own bounds).
        stop_tasks.cancel();
        if !liveness_done {
            let _ = liveness.await;
        }
        while watches.join_next().await.is_some() {}
        // 2. Deregister every cell, bounded, still serving.
        let batch = config.batch == BatchMode::Auto;
        let deregistering =
            liveness::deregister_all(&live, &discovery, &config.host_id, batch, bounds.deregister);
        // The call bounds itself; this bound only guards against a bug.
        if tokio::time::timeout(bounds.deregister * 2, deregistering)
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_ms = bounds.deregister.as_millis() as u64,
                "deregistration overran its bound"
            );
        }
        // 3. Stop accepting everywhere; drain, each listener within its bound.
        stop_http.cancel();
        while let Some(joined) = servers.join_next().await {
            if let Err(error) = joined {
                tracing::warn!(%error, "an HTTP server task failed");
            }
        }
        // 4. Every plugin's shutdown hook, concurrently, each bounded.
        let mut hooks = JoinSet::new();
        for LiveCell { cell, .. } in live {
            let limit = bounds.plugin_hook;
            hooks.spawn(async move {
                match tokio::time::timeout(limit, cell.sandbox.shutdown()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(cell_id = %cell.cell_id(), %error, "plugin shutdown hook failed")
                    }
                    Err(_) => tracing::warn!(
                        cell_id = %cell.cell_id(),
                        timeout_ms = limit.as_millis() as u64,
                        "plugin shutdown hook timed out"
                    ),
                }
            });
        }
        while hooks.join_next().await.is_some() {}
        drop(engine);
        let end = FleetEnd::of(&slots);
        tracing::info!(host_id = %config.host_id, %end, "host stopped");
        Ok(end)
    }
}

/// Awaits the admin API's server, logging a failure.
async fn server_logged(serve: impl Future<Output = std::io::Result<()>>) {
    if let Err(error) = serve.await {
        tracing::warn!(%error, "the admin API's server failed");
    }
}
