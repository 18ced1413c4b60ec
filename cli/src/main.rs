//! `conduit`: the command line of the Conduit service mesh.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only
//! parses arguments and maps outcomes to exit codes: 0 on success (and
//! when the reader of its output went away, as `head` does), 1 when the
//! command failed (the error says what to do next), 2 for bad arguments
//! (clap's own errors).

// Output goes through `output`, which returns write errors; `println!`
// panics on a closed pipe.
#![deny(clippy::print_stdout)]

use std::process::ExitCode;

use clap::Parser;

mod api;
mod args;
mod cmd;
mod forward;
mod output;
mod values;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
