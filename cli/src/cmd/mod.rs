//! One module per subcommand.

use crate::args::{Cli, Command};

mod authz;
mod check;
mod completion;
mod dashboard;
pub(crate) mod demo;
mod diagnostics;
mod edges;
mod identity;
mod inject;
mod install;
mod routes;
mod stat;
mod tap;
mod top;
mod version;

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Version(args) => version::run(args),
        Command::Completion(args) => completion::run(args),
        Command::Install(args) => install::install(args),
        Command::Uninstall(args) => install::uninstall(args),
        Command::Inject(args) => inject::inject(args),
        Command::Uninject(args) => inject::uninject(args),
        Command::Check(args) => check::run(args),
        Command::Stat(args) => stat::run(args),
        Command::Top(args) => top::run(args),
        Command::Tap(args) => tap::run(args),
        Command::Edges(args) => edges::run(args),
        Command::Routes(args) => routes::run(args),
        Command::Authz(args) => authz::run(args),
        Command::Identity(args) => identity::run(args),
        Command::Diagnostics(args) => diagnostics::run(args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Demo(args) => demo::run(args),
    }
}

/// The single-threaded runtime the networked commands share.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The Deployment a command needs (`deploy/NAME`), or a usage error.
pub(crate) fn required_name(
    target: &conduit_api::ResourceTarget,
    command: &str,
) -> anyhow::Result<String> {
    target
        .name
        .clone()
        .ok_or_else(|| anyhow::anyhow!("`conduit {command}` needs one Deployment: deploy/NAME"))
}

/// The `start_unix_ms` and `end_unix_ms` of a request for `bounds` and
/// `-t window`: both 0 (the window ending now) without --since and
/// --until; the end stays 0 (now, on the controller's clock) without
/// --until. A window that cannot hold data is refused before any request.
pub(crate) fn request_range(
    bounds: &crate::args::TimeBounds,
    window: std::time::Duration,
) -> anyhow::Result<(i64, i64)> {
    use conduit_api::time_range::TimeRange;
    if bounds.since.is_none() && bounds.until.is_none() {
        return Ok((0, 0));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let range = TimeRange::resolve(bounds.since, bounds.until, window, now)?;
    let end = if bounds.until.is_some() {
        range.end_ms
    } else {
        0
    };
    Ok((range.start_ms, end))
}
