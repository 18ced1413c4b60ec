//! The `conduit` binary as a user runs it.

use std::process::{Command, Output};

fn conduit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .env_remove("CONDUIT_API_ADDR")
        .output()
        .expect("run conduit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_command_of_the_mesh() {
    let out = conduit(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    for command in [
        "install",
        "inject",
        "uninject",
        "check",
        "stat",
        "top",
        "tap",
        "edges",
        "routes",
        "authz",
        "identity",
        "dashboard",
        "demo",
        "version",
        "completion",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "`{command}` missing from --help:\n{help}"
        );
    }
}

#[test]
fn version_without_control_plane_says_where_it_looked() {
    let addr = conduit_testbed::free_addr().to_string();
    let out = conduit(&["version", "--api-addr", &addr]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("Client version: {}", env!("CARGO_PKG_VERSION"))));
    assert!(text.contains("Server version: unavailable"), "{text}");
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains("conduit check"), "{text}");
}

#[test]
fn version_reports_the_control_plane() {
    let dir = conduit_testbed::TempDir::new("version");
    let discovery = dir.path().join("discovery.yaml");
    std::fs::write(&discovery, "version: 1\n").unwrap();
    let store = format!("http://{}", conduit_testbed::free_addr());
    let controller = conduit_testbed::Controller::start_with_store_url(&store, &discovery);
    let addr = controller.grpc.to_string();
    let out = conduit(&["version", "--api-addr", &addr, "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["client"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["server"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["server"]["mode"], "local");
    assert_eq!(
        json["server"]["dashboard_url"],
        format!("http://{}", controller.http)
    );
}

#[test]
fn client_only_version_does_not_dial() {
    let out = conduit(&["version", "--client"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("Client version: {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_arguments_exit_2_with_clap_error() {
    let out = conduit(&["stat", "pods/web"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unsupported resource"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completion_scripts_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = conduit(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(stdout(&out).contains("conduit"), "{shell}");
    }
}

/// Runs `conduit args` into a pipe whose reader takes one line and leaves,
/// as `conduit ... | head -1` does; the pipe holds 4 KiB, far less than
/// the output, so a write after the reader left is certain.
fn into_a_reader_that_leaves(args: &[&str]) -> Output {
    use std::io::BufRead;

    // Close-on-exec, so the child holds no read end of its own.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("a pipe");
    rustix::pipe::fcntl_setpipe_size(&write, 4096).expect("shrink the pipe");
    let child = Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .env_remove("CONDUIT_API_ADDR")
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run conduit");
    let mut reader = std::io::BufReader::new(std::fs::File::from(read));
    let mut line = String::new();
    reader.read_line(&mut line).expect("the first line");
    assert!(!line.is_empty());
    drop(reader);
    child.wait_with_output().expect("conduit exits")
}

#[test]
fn a_reader_that_leaves_early_ends_commands_quietly() {
    for args in [&["completion", "bash"][..], &["install"]] {
        let out = into_a_reader_that_leaves(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "conduit {args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Error"),
            "conduit {args:?} said: {err}"
        );
    }
}
