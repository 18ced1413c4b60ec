//! `cargo xtask fuzz [SECONDS]`: a short libFuzzer run of every fuzz target
//! of the proxy (`proxy/fuzz`) and the telemetry store
//! (`telemetry-store/fuzz`), starting from the checked-in seeds and the
//! local corpus, so a parser change that panics on odd bytes is caught
//! before it ships. cargo-fuzz needs a nightly toolchain for the sanitizer
//! flags; the targets live in their own workspace so the main build stays
//! on stable.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;
use crate::process::{Result, exec, probe, step};
use crate::workspace;

/// The cargo-fuzz release the targets are written against.
const CARGO_FUZZ: &str = "0.13.2";

/// Seconds per target when none are given: long enough to mutate the seeds
/// many thousand times, short enough to run before every push.
const DEFAULT_SECONDS: u32 = 20;

/// The fuzz crates, each a workspace of its own.
const FUZZ_DIRS: &[&str] = &["proxy/fuzz", "telemetry-store/fuzz"];

pub(crate) fn run(args: &[String]) -> Result {
    let seconds = match args.first() {
        None => DEFAULT_SECONDS,
        Some(s) => s
            .parse()
            .map_err(|_| format!("`{s}` is not a number of seconds per target"))?,
    };
    fuzz_for(seconds)
}

/// Fuzzes every target for `seconds`.
pub(crate) fn fuzz_for(seconds: u32) -> Result {
    let nightly = probe(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]))
        .ok_or(
            "cargo fuzz needs a nightly toolchain: `rustup toolchain install nightly --profile minimal`",
        )?;
    eprintln!("fuzzing with {nightly}");
    let path = cargo_fuzz_path()?;
    for dir in FUZZ_DIRS {
        fuzz_crate(dir, seconds, &path)?;
    }
    Ok(())
}

/// Fuzzes every target of the crate in `dir` (relative to the workspace).
fn fuzz_crate(dir: &str, seconds: u32, path: &std::ffi::OsStr) -> Result {
    let fuzz_dir = workspace::root().join(dir);
    for target in targets(&fuzz_dir)? {
        step(&format!("fuzz {dir} {target} for {seconds} s"));
        let corpus = fuzz_dir.join("corpus").join(&target);
        std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
        exec(
            Command::new("rustup")
                .args(["run", "nightly", "cargo", "fuzz", "run", "-O", &target])
                .arg(&corpus)
                .arg(fuzz_dir.join("seeds").join(&target))
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .env("PATH", path)
                .current_dir(&fuzz_dir),
        )
        .map_err(|e| {
            format!(
                "{e}\nthe crashing input is under {dir}/artifacts/{target}/; \
                 replay it with `cargo +nightly fuzz run {target} FILE` in {dir}"
            )
        })?;
    }
    Ok(())
}

/// `PATH` with a cargo-fuzz of the pinned version on it: the one already
/// on `PATH`, else one installed into the tools dir.
fn cargo_fuzz_path() -> Result<std::ffi::OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = probe(Command::new("cargo-fuzz").arg("--version"));
    if on_path.is_some_and(|v| v.ends_with(CARGO_FUZZ)) {
        return Ok(path);
    }
    let bin = install::cargo_tool("cargo-fuzz", CARGO_FUZZ, "cargo-fuzz")?;
    let dir = bin.parent().map(Path::to_path_buf).unwrap_or_default();
    std::env::join_paths(std::iter::once(dir).chain(std::env::split_paths(&path)))
        .map_err(|e| e.to_string())
}

/// The fuzz targets: one file each under `fuzz_targets/`.
fn targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir: PathBuf = fuzz_dir.join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    Ok(names)
}
