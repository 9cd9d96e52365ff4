//! `cell-host`: parses arguments, starts tracing and calls the library:
//! a cell run (binds the listener and serves until SIGTERM or Ctrl-C) or
//! `cell-host conformance PLUGIN.wasm` (checks a plugin and exits 0, 1 or 2).

use std::process::ExitCode;

use anyhow::Context as _;
use cell_host::{Args, Cli, Command, ConformanceArgs, HostConfig};
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
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cell-host: {error:#}");
            ExitCode::FAILURE
        }
    }
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

async fn serve(args: Args) -> anyhow::Result<()> {
    // Through `Error` so that the message starts "invalid configuration:".
    let config = HostConfig::try_from(args).map_err(cell_host::Error::from)?;
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    cell_host::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
