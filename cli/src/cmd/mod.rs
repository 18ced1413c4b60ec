//! One module per subcommand.

use crate::args::{Cli, Command};

mod completion;
mod inject;
mod install;
mod version;

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version(args) => version::run(args),
        Command::Completion(args) => completion::run(args),
        Command::Install(args) => install::install(args),
        Command::Uninstall(args) => install::uninstall(args),
        Command::Inject(args) => inject::inject(args),
        Command::Uninject(args) => inject::uninject(args),
        Command::Check(_) => not_yet("check"),
        Command::Stat(_) => not_yet("stat"),
        Command::Top(_) => not_yet("top"),
        Command::Tap(_) => not_yet("tap"),
        Command::Edges(_) => not_yet("edges"),
        Command::Routes(_) => not_yet("routes"),
        Command::Dashboard(_) => not_yet("dashboard"),
        Command::Demo => not_yet("demo"),
    }
}

/// Commands that exist in the interface but not in this build say so.
fn not_yet(command: &str) -> anyhow::Result<()> {
    anyhow::bail!("`conduit {command}` is not implemented in this version of conduit yet")
}

/// The single-threaded runtime the networked commands share.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}
