//! Running commands loudly: each is printed before it runs, and a failure
//! names the command that failed.

use std::process::Command;

pub(crate) type Result<T = ()> = std::result::Result<T, String>;

/// Prints a step heading, so long runs show where they are.
pub(crate) fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio; a non-zero exit is an error.
pub(crate) fn exec(cmd: &mut Command) -> Result {
    let line = describe(cmd);
    eprintln!("$ {line}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{line}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{line}` failed ({status})"))
    }
}

/// Runs `cmd` quietly and returns its trimmed stdout, or `None` when it
/// cannot start or fails. For probing what is installed.
pub(crate) fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A `cargo` command using the same toolchain that runs xtask.
pub(crate) fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
