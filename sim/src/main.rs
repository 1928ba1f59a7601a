//! The `connect-sim` binary: parses the flags (the same fields as `SimConfig`), starts the
//! simulator and prints exactly one line to stdout once bound,
//! `connect-sim listening on http://IP:PORT`, so a parent process can read the port.
//! Logs go to stderr (RUST_LOG filters them, default `info`). Stops on SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use connect_sim::SimConfig;
use tracing_subscriber::EnvFilter;

/// A local Amazon Connect simulator: StartChatContact and CreatePersistentContactAssociation
/// with Connect's quotas, idempotency, fault injection and counters (GET /_sim/stats,
/// POST /_sim/reset).
#[derive(Parser)]
#[command(name = "connect-sim", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8500")]
    addr: SocketAddr,
    #[command(flatten)]
    config: SimConfig,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let sim = match connect_sim::start(cli.config, cli.addr).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("connect-sim: cannot start on {}: {e}", cli.addr);
            return std::process::ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "connect-sim listening on {}", sim.endpoint_url());
    let _ = out.flush();
    drop(out);
    wait_for_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
