//! `conduit`: the command line of the Conduit service mesh.
//!
//! Each subcommand lives in its own module under `cmd/`; this file only
//! parses arguments and maps outcomes to exit codes: 0 on success, 1 when
//! the command failed (the error says what to do next), 2 for bad arguments
//! (clap's own errors).

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
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}
