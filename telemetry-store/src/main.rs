//! `conduit-telemetry-store`: the mesh's time-series database as a
//! process. See `--help` for the flags (each also a `CONDUIT_STORE_*`
//! environment variable); logs go to stderr, filtered by `RUST_LOG`.

use clap::Parser;
use conduit_telemetry_store::{Config, Store};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    conduit_telemetry_store::memory::tune_allocator();
    let config = Config::parse();
    if let Err(e) = run(config).await {
        eprintln!("conduit-telemetry-store: {e:#}");
        std::process::exit(1);
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let store = Store::open(config)?;
    store.serve(shutdown()).await
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
