//! `cargo xtask bench`: run the benchmarks of `load-tests/` with release
//! binaries; each scenario writes its figures to `load-tests/RESULTS.md`.

use crate::install;
use crate::process::{Result, cargo, exec, step};

/// The peers the scenarios measure against (haproxy for `proxy` and
/// `mtls`, haproxy, nginx and h2load for `h2`, Prometheus and
/// VictoriaMetrics for `store`), taskset to pin processes to cores,
/// Chromium for `ui`.
pub(crate) const BENCH_PACKAGES: &[&str] = &[
    "haproxy",
    "nginx",
    "nghttp2-client",
    "prometheus",
    "victoria-metrics",
    "util-linux",
    "chromium",
    "chromium-driver",
];

pub(crate) fn run(args: &[String]) -> Result {
    step("benchmark peers");
    install::apt(BENCH_PACKAGES)?;
    if matches!(args.first().map(String::as_str), Some("all" | "ui")) {
        // The ui scenario serves the dashboard's bundle.
        crate::ui::ensure_built()?;
    }
    step("building release binaries");
    exec(cargo().args(["build", "--release", "--bins"]))?;
    step("running load-tests");
    exec(
        cargo()
            .args(["run", "--release", "-p", "conduit-load-tests", "--"])
            .args(args),
    )
}
