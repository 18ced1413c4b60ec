//! `cargo xtask test`: everything CI checks, in the order that fails
//! fastest.
//!
//! Lints run inside the test build rather than as a separate
//! `cargo clippy`: clippy-driver is set as the workspace rustc wrapper with
//! `-D warnings`, so every workspace target is linted exactly as
//! `cargo clippy --all-targets -- -D warnings` would, while dependencies are
//! compiled once instead of once for checking and once for testing.
//! The dashboard crate (wasm32, its own toolchain) is linted apart, and
//! the proxy's and the store's fuzz targets run briefly at the end.

use std::path::PathBuf;
use std::process::Command;

use crate::install;
use crate::process::{Result, cargo, exec, probe, step};

/// Real programs the tests run against instead of mocks: Prometheus for
/// PromQL comparison and, with VictoriaMetrics, as the controller's
/// external metrics backend; iptables, iproute2 and setpriv (util-linux) for
/// transparent mode in a network namespace; openssl to verify the
/// certificates `conduit install` generates; tcpdump to prove what crosses
/// loopback between proxies is encrypted; Chromium and chromedriver for
/// the dashboard's browser test; and every benchmark's peers, for their
/// tiny runs.
const TEST_PACKAGES: &[&str] = &[
    "prometheus",
    "victoria-metrics",
    "tcpdump",
    "iptables",
    "iproute2",
    "util-linux",
    "openssl",
    "chromium",
    "chromium-driver",
];

/// Seconds of fuzzing per target: enough to replay the corpus and mutate
/// it some ten thousand times; `cargo xtask fuzz` runs longer.
const FUZZ_SECONDS: u32 = 10;

/// Python tools the tests run, pinned, installed into `target/venv`.
const TEST_PYTHON: &[&str] = &["kubernetes-validate==1.37.0"];

pub(crate) fn run(args: &[String]) -> Result {
    step("format: cargo fmt --check");
    exec(cargo().args(["fmt", "--all", "--", "--check"]))
        .map_err(|e| format!("{e}\nrun `cargo fmt --all` and commit the result"))?;

    step("test dependencies");
    install::apt(TEST_PACKAGES)?;
    install::apt(crate::bench::BENCH_PACKAGES)?;
    let venv = install::python_venv(TEST_PYTHON)?;
    // The dashboard's browser tests open the bundle the controller serves.
    crate::ui::ensure_built()?;
    crate::ui::lint()?;

    let clippy = clippy_driver()?;
    let lint = |cmd: &mut Command| {
        cmd.env("RUSTC_WORKSPACE_WRAPPER", &clippy)
            .env(
                "CLIPPY_ARGS",
                "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
            )
            .env(
                "CONDUIT_KUBERNETES_VALIDATE",
                venv.join("kubernetes-validate"),
            );
    };

    step("doc tests (nextest does not run them)");
    let mut cmd = cargo();
    cmd.args(["test", "--doc"]);
    lint(&mut cmd);
    exec(&mut cmd)?;

    // End-to-end tests start the binaries of other packages (the demo app,
    // the store, the proxies), which a test build alone does not link.
    // `--all-targets` keeps the feature set of the test build, so nextest
    // below reuses every artifact instead of compiling dependencies again.
    step("build every target with clippy -D warnings");
    let mut cmd = cargo();
    cmd.args(["build", "--all-targets"]);
    lint(&mut cmd);
    exec(&mut cmd)?;

    step("build with clippy -D warnings and run every test");
    let mut cmd = cargo();
    if has_nextest() {
        cmd.args(["nextest", "run", "--all-targets", "--profile", "ci"]);
    } else {
        eprintln!("cargo-nextest not found; using cargo test");
        cmd.args(["test", "--all-targets"]);
    }
    cmd.args(args);
    lint(&mut cmd);
    exec(&mut cmd)?;

    // Last, as it builds the proxy once more (nightly, sanitizers).
    step("fuzz the proxy's and the store's parsers briefly");
    crate::fuzz::fuzz_for(FUZZ_SECONDS)
}

fn has_nextest() -> bool {
    probe(cargo().args(["nextest", "--version"])).is_some()
}

/// clippy-driver of the toolchain that runs cargo: it sits next to cargo.
fn clippy_driver() -> Result<PathBuf> {
    let beside_cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|c| c.parent().map(|d| d.join("clippy-driver")))
        .filter(|p| p.exists());
    if let Some(path) = beside_cargo {
        return Ok(path);
    }
    probe(Command::new("rustup").args(["which", "clippy-driver"]))
        .map(PathBuf::from)
        .ok_or_else(|| "clippy-driver not found: run `rustup component add clippy`".to_string())
}
