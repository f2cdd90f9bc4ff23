use std::process::ExitCode;

use clap::Parser;
use whatsapp_manager::config::{Cli, Command};
use whatsapp_manager::logging::EmojiPrefix;
use whatsapp_manager::{Application, Config};

fn main() -> ExitCode {
    private_umask();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("❌ Cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // A blocking call still stuck in a library (an HTTP fetch, a file lock) must not hold
    // the exit past the stop's budget.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run(cli: Cli) -> ExitCode {
    let filter = whatsapp_manager::logging::filter();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .event_format(EmojiPrefix(
            tracing_subscriber::fmt::format()
                .with_target(false)
                .with_ansi(ansi),
        ))
        .init();
    let Command::Serve(args) = cli.command;
    let app = match Application::build(Config::from(args)).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("❌ Cannot start: {e:#}");
            return ExitCode::from(2);
        }
    };
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("❌ Server stopped with an error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("ℹ️ Stop signal received");
}

/// Whatever a library creates on its own (a temporary file, a lock) is readable by this
/// user only. A backstop: the server's own files get their modes explicitly (see
/// `whatsapp_manager::files`). Set before any thread starts, as the umask is per process.
fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail and touches
    // no memory of ours.
    unsafe {
        libc::umask(0o077);
    }
}
