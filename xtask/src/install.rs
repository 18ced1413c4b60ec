//! Installing what tasks need, idempotently: each function checks first and
//! does nothing when the tool is already there.

use std::path::PathBuf;
use std::process::Command;

use crate::process::{Result, exec, probe, step};
use crate::workspace;

/// Installs Debian packages that are not installed yet.
pub(crate) fn apt(packages: &[&str]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    step(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    let sudo = !is_root();
    let apt_get = |args: &[&str]| {
        let mut cmd = if sudo {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        } else {
            Command::new("apt-get")
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    exec(&mut apt_get(&["update", "-qq"]))?;
    let mut install = apt_get(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    exec(&mut install)
}

fn dpkg_installed(package: &str) -> bool {
    probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn is_root() -> bool {
    probe(Command::new("id").arg("-u")).as_deref() == Some("0")
}

/// A Python virtualenv under `target/venv` with the given pinned
/// requirements; returns the path of its `bin/` directory.
pub(crate) fn python_venv(requirements: &[&str]) -> Result<PathBuf> {
    let venv = workspace::target_dir().join("venv");
    let bin = venv.join("bin");
    if !bin.join("python").exists() {
        step("creating Python virtualenv");
        exec(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    let frozen = probe(Command::new(bin.join("pip")).arg("freeze")).unwrap_or_default();
    let missing: Vec<&str> = requirements
        .iter()
        .copied()
        .filter(|r| !frozen.lines().any(|l| l.eq_ignore_ascii_case(r)))
        .collect();
    if !missing.is_empty() {
        step(&format!("pip install {}", missing.join(" ")));
        exec(
            Command::new(bin.join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(&missing),
        )?;
    }
    Ok(bin)
}

/// Where pinned tools built or downloaded for tasks live: `tools/` in the
/// cargo target dir, so they survive `git clean` of the sources, follow
/// `CARGO_TARGET_DIR`, and never touch the system.
pub(crate) fn tools_dir() -> PathBuf {
    workspace::target_dir().join("tools")
}

/// `cargo install`s crate `krate` at exactly `version` into
/// [`tools_dir`] unless `bin --version` already reports it; returns the
/// path of `bin`.
pub(crate) fn cargo_tool(krate: &str, version: &str, bin: &str) -> Result<PathBuf> {
    let root = tools_dir();
    let path = root.join("bin").join(bin);
    let installed = probe(Command::new(&path).arg("--version"));
    if installed
        .as_deref()
        .and_then(|v| v.split_whitespace().nth(1))
        == Some(version)
    {
        return Ok(path);
    }
    step(&format!(
        "cargo install {krate} {version} into {} (compiles from source; minutes on 2 cores)",
        root.display()
    ));
    let install = |locked: bool| {
        let mut cmd = crate::process::cargo();
        cmd.args(["install", "--force", "--root"])
            .arg(&root)
            .arg(krate)
            .args(["--version", &format!("={version}")]);
        if locked {
            cmd.arg("--locked");
        }
        exec(&mut cmd)
    };
    // A crate's own lock file can name a version the registry has since
    // yanked; then resolve afresh.
    install(true).or_else(|e| {
        eprintln!("{e}; retrying without --locked");
        install(false)
    })?;
    Ok(path)
}

/// `npm install`s `package@version` into `tools/npm` unless it is there;
/// returns the path of its executable `bin`. Installs Debian's `npm` when
/// there is none.
pub(crate) fn npm_tool(package: &str, version: &str, bin: &str) -> Result<PathBuf> {
    let prefix = tools_dir().join("npm");
    let path = prefix.join("node_modules").join(".bin").join(bin);
    let manifest = prefix
        .join("node_modules")
        .join(package)
        .join("package.json");
    let current = std::fs::read_to_string(&manifest).unwrap_or_default();
    if path.exists() && current.contains(&format!("\"version\": \"{version}\"")) {
        return Ok(path);
    }
    if probe(Command::new("npm").arg("--version")).is_none() {
        apt(&["npm"])?;
    }
    step(&format!(
        "npm install {package}@{version} into {}",
        prefix.display()
    ));
    exec(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
            ])
            .arg(&prefix)
            .arg(format!("{package}@{version}")),
    )?;
    Ok(path)
}
