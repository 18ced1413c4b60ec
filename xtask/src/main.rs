//! `cargo xtask`: the project's own automation, in Rust so it runs wherever
//! cargo does. Every task installs what it needs when it is missing, says
//! what it is doing, and can be re-run safely.
//!
//! - `test`  everything CI checks: format, lints, the whole test suite
//! - `demo`  build everything and run `conduit demo`
//! - `ui`    build the dashboard bundle
//! - `fuzz`  a short run of the proxy's and the store's fuzz targets
//! - `bench` run the benchmarks of `load-tests/`
//!
//! std only: xtask is compiled before anything else runs, so it stays cheap.

use std::process::ExitCode;

mod bench;
mod demo;
mod fuzz;
mod install;
mod process;
mod test;
mod ui;
mod workspace;

const USAGE: &str = "\
Usage: cargo xtask <TASK> [ARGS...]

Tasks:
  test            format check, clippy -D warnings, the whole test suite (what CI runs)
  demo [ARGS...]  build everything and run `conduit demo ARGS...`
  ui              build the dashboard bundle (WASM) where the controller serves it
  bench [NAME]    run a load-tests benchmark and update load-tests/RESULTS.md (proxy, mtls,
                  policy, routes, recorder, store, fleet, sizing, control, stat, ui, soak), or
                  `bench all [--quick]` for every one (within an hour; --quick within 5 minutes)
  fuzz [SECONDS]  fuzz each proxy and store parser for SECONDS (20) from its seeds (nightly)
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("test") => test::run(&rest),
        Some("demo") => demo::run(&rest),
        Some("ui") => ui::run(&rest),
        Some("bench") => bench::run(&rest),
        Some("fuzz") => fuzz::run(&rest),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
