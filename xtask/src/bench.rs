//! `cargo xtask bench`: run the benchmarks of `load-tests/` with release
//! binaries; each scenario writes its figures to `load-tests/RESULTS.md`.

use crate::process::{Result, cargo, exec, step};

pub(crate) fn run(args: &[String]) -> Result {
    step("building release binaries");
    exec(cargo().args(["build", "--release", "--bins"]))?;
    step("running load-tests");
    exec(
        cargo()
            .args(["run", "--release", "-p", "conduit-load-tests", "--"])
            .args(args),
    )
}
