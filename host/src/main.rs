//! `cell-host`: parses arguments, starts tracing and calls the library:
//! a cell run (binds the listener and serves until SIGTERM or Ctrl-C; a
//! second one exits at once, status 130), a run of many cells (the same,
//! each cell on its own listener; exits non-zero only when every cell
//! failed) or `cell-host conformance PLUGIN.wasm` (checks a plugin and
//! exits 0, 1 or 2).

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context as _;
use cell_host::{Args, Cli, Command, ConformanceArgs, FleetConfig, HostConfig, RunConfig};
use clap::Parser;

fn main() -> ExitCode {
    match Cli::parse() {
        Cli::Run(args) => run_cell(*args),
        Cli::Command(Command::Conformance(args)) => conformance(args),
    }
}

/// One subscriber per process; `RUST_LOG` overrides `default`.
fn init_tracing(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("cell-host: cannot start the async runtime: {error}");
            ExitCode::from(2)
        })
}

fn run_cell(args: Args) -> ExitCode {
    init_tracing("info");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(_) => return ExitCode::FAILURE,
    };
    let outcome = runtime.block_on(serve(args));
    // A forced exit must not wait for tasks still running (a call stuck in
    // the plugin, a deregistration in flight).
    runtime.shutdown_background();
    match outcome {
        Ok(Stopped::Cleanly) => ExitCode::SUCCESS,
        Ok(Stopped::Forced) => {
            eprintln!("cell-host: second signal: exiting at once, without finishing the shutdown");
            ExitCode::from(130)
        }
        Err(error) => {
            eprintln!("cell-host: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a cell run ended.
enum Stopped {
    /// The shutdown ran to its end.
    Cleanly,
    /// A second signal cut it short.
    Forced,
}

/// Exit 0 when every required check passed, 1 when one failed, 2 when the
/// suite could not run or write its report (clap exits 2 on usage errors).
fn conformance(args: ConformanceArgs) -> ExitCode {
    // The plugin's failures are the report's business, not log noise.
    init_tracing("error");
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(cell_host::conformance::run_command(&args, &mut stdout)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("cell-host conformance: {error}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<Stopped> {
    // Through `Error` so that the message starts "invalid configuration:".
    match RunConfig::try_from(args).map_err(cell_host::Error::from)? {
        RunConfig::Cell(config) => serve_cell(*config).await,
        RunConfig::Fleet(config) => serve_fleet(*config).await,
    }
}

/// One cell, exactly as before the host ran many.
async fn serve_cell(config: HostConfig) -> anyhow::Result<Stopped> {
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    until_signalled(|first| cell_host::run(config, listener, first)).await
}

/// Many cells; the run fails only when every cell failed.
async fn serve_fleet(config: FleetConfig) -> anyhow::Result<Stopped> {
    until_signalled(|first| async move {
        let end = cell_host::fleet::run(config, first).await?;
        if end.all_failed() {
            anyhow::bail!("{end}");
        }
        Ok(())
    })
    .await
}

/// Runs `run` until it ends; the first SIGTERM or Ctrl-C resolves the
/// shutdown future handed to it, a second ends the process at once.
async fn until_signalled<F, R, E>(run: F) -> anyhow::Result<Stopped>
where
    F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> R,
    R: Future<Output = Result<(), E>>,
    E: Into<anyhow::Error>,
{
    // Handlers installed before serving, so no signal is lost.
    let mut signals = Signals::install();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
    let first = Box::pin(async move {
        let _ = first_rx.await;
    });
    let run = run(first);
    tokio::pin!(run);
    tokio::select! {
        outcome = &mut run => return outcome.map(|()| Stopped::Cleanly).map_err(Into::into),
        () = signals.next() => {}
    }
    let _ = first_tx.send(());
    tokio::select! {
        outcome = run => outcome.map(|()| Stopped::Cleanly).map_err(Into::into),
        () = signals.next() => Ok(Stopped::Forced),
    }
}

/// SIGTERM and Ctrl-C (SIGINT), listened for from creation on.
struct Signals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::error!(%error, "cannot listen for {name}");
                None
            }
        };
        Self {
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "Ctrl-C"),
        }
    }

    #[cfg(not(unix))]
    fn install() -> Self {
        Self {}
    }

    /// Resolves at the next SIGTERM or Ctrl-C.
    #[cfg(unix)]
    async fn next(&mut self) {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    if signal.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.terminate) => {}
            () = recv(&mut self.interrupt) => {}
        }
    }

    /// Resolves at the next Ctrl-C.
    #[cfg(not(unix))]
    async fn next(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
