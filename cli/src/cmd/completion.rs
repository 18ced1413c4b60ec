//! `conduit completion SHELL`

use std::io::Write;

use clap::CommandFactory;

use crate::args::{Cli, CompletionArgs};

pub(crate) fn run(args: CompletionArgs) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    // clap_complete panics on a failed write, so it writes to memory.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "conduit", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}
