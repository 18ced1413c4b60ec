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
