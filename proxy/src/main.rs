//! `conduit-proxy`: the sidecar. `conduit-proxy run` (the default) proxies;
//! every flag can also be set as `CONDUIT_PROXY_<FLAG_IN_UPPER_SNAKE>`.

use clap::{Parser, Subcommand};
use conduit_proxy::Proxy;
use conduit_proxy::config::Config;

mod init;

#[derive(Parser)]
#[command(
    name = "conduit-proxy",
    version = conduit_api::VERSION,
    about = "Conduit's sidecar proxy: carries, secures and measures every request of a pod",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `run`'s flags, accepted without the subcommand too.
    #[command(flatten)]
    run: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default when no subcommand is given).
    Run(Box<Config>),
    /// Program the pod's iptables to send its traffic through the proxy
    /// (the `conduit-init` container's job), then exit.
    Init(init::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let config = match cli.command {
        Some(Command::Run(config)) => *config,
        Some(Command::Init(args)) => return init::main(args),
        None => cli.run,
    };
    match run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-proxy: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("conduit_proxy=info,warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(config: Config) -> anyhow::Result<()> {
    let threads = usize::from(config.worker_threads);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let proxy = Proxy::start(config).await?;
        shutdown_signal().await;
        tracing::info!("shutting down");
        drop(proxy);
        Ok(())
    })
}

/// SIGTERM (the kubelet, `conduit demo`) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the proxy");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
