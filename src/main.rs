//! CLI entry: parse the command line, run a command, map errors to exit codes.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use switchyard::cli::{self, Cli, Command};
use switchyard::config::{Config, Log, LogFormat};
use switchyard::reload::Trigger;
use switchyard::{demo, logging, server};

/// jemalloc rather than the system allocator (Cargo.toml says why, with the figures).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Have jemalloc return freed memory to the kernel from its own thread rather than inline in
/// whichever allocation comes next: after thousands of slow clients leave at once, that inline
/// purge of a gigabyte or more stalled legitimate requests for tens of milliseconds.
#[cfg(feature = "jemalloc")]
fn purge_in_background() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "jemalloc's background purge thread did not start; freed memory is returned inline");
    }
}

/// Built without jemalloc (`--no-default-features`): the system allocator has no such thread.
#[cfg(not(feature = "jemalloc"))]
fn purge_in_background() {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => print_or_fail(cli::check(&args.config)),
        Command::Explain(args) => print_or_fail(cli::explain(&args)),
        Command::Certs(cli::CertsCommand::Dev(args)) => print_or_fail(cli::certs_dev(&args)),
        Command::Audit(command) => command.run().print(),
        Command::Probe(args) => print_or_fail(
            switchyard::probe::probe(&args.url, args.timeout).map(|line| format!("{line}\n")),
        ),
        Command::Serve(args) => run(async move {
            let config = Config::load(&args.config)?;
            let _guard = logging::init(&config.log);
            purge_in_background();
            let handle = server::start(config).await?;
            serve_until_stopped(&handle).await?;
            tracing::info!("shutting down: draining in-flight requests");
            // A second SIGTERM/SIGINT cuts the drain short (exit 1): the operator asked twice.
            tokio::select! {
                () = handle.shutdown() => Ok(()),
                second = wait_for_signal() => {
                    second?;
                    tracing::error!("second stop signal: exiting without finishing the drain");
                    Err(anyhow::anyhow!("stopped by a second signal before the drain finished"))
                }
            }
        }),
        Command::Demo(args) => run(async move {
            let _guard = logging::init(&Log {
                format: LogFormat::Human,
                level: "info".to_owned(),
                access_log: true,
            });
            let demo = demo::start(args.port, args.admin_port).await?;
            println!("{}", demo::instructions(&demo));
            wait_for_signal().await?;
            demo.server.shutdown().await;
            Ok(())
        }),
    }
}

/// Print a command's output and exit 0, or its error and exit 1.
fn print_or_fail<E: std::fmt::Display>(result: Result<String, E>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run a command on the control runtime. Serving clients happens on the worker threads
/// (`runtime.rs`, `server.workers`); this runtime only starts them and runs the admin
/// listener, signals, health checks and credential refresh, so one thread is plenty.
fn run(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("switchyard-control")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reload the config on every SIGHUP; return on SIGTERM or SIGINT.
async fn serve_until_stopped(handle: &server::ServerHandle) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let stop = wait_for_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                stopped = &mut stop => return stopped,
                _ = hup.recv() => {
                    // In its own task, so that a slow reload (credentials, a Redis connect)
                    // never delays a stop signal. Reloads still run one at a time; the
                    // outcome is logged and counted by the reloader.
                    let reloader = handle.reloader();
                    tokio::spawn(async move { reloader.reload(Trigger::Signal).await });
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = handle;
        wait_for_signal().await
    }
}

/// Resolve on Ctrl-C (SIGINT) or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
