//! `conduit-load-tests SCENARIO [ARGS...]`: runs one benchmark scenario and
//! appends its figures to `load-tests/RESULTS.md`.

use std::process::ExitCode;

mod proxy;
mod stat;

const USAGE: &str = "usage: conduit-load-tests SCENARIO [ARGS...]

scenarios:
  proxy [--rate RPS] [--seconds S] [--rounds R]
                              conduit-proxy vs a direct connection and haproxy (latency, max RPS, RSS)
  stat [DEPLOYMENTS] [RUNS]   `conduit stat` end to end with DEPLOYMENTS (1000) in the store
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("proxy") => proxy::run(&args[1..]),
        Some("stat") => stat::run(&args[1..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-load-tests: {e}");
            ExitCode::FAILURE
        }
    }
}
