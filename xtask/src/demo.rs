//! `cargo xtask demo`: build every binary, then hand over to `conduit demo`.

use std::process::Command;

use crate::process::{Result, cargo, exec, step};
use crate::workspace;

pub(crate) fn run(args: &[String]) -> Result {
    crate::ui::ensure_built()?;
    step("building Conduit (cargo build --bins)");
    exec(cargo().args(["build", "--bins"]))?;
    step("starting the demo (conduit demo)");
    exec(
        Command::new(workspace::debug_bin("conduit"))
            .arg("demo")
            .args(args),
    )
}
