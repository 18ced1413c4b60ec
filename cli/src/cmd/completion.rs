//! `conduit completion SHELL`

use clap::CommandFactory;

use crate::args::{Cli, CompletionArgs};

pub(crate) fn run(args: CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "conduit", &mut std::io::stdout());
    Ok(())
}
