//! The `conduit-proxy` binary: help, flag errors, configuration from the
//! environment, and a clean exit on SIGTERM.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_conduit-proxy");

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn help_lists_flags_and_their_environment_names() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "run",
        "--inbound-listen",
        "CONDUIT_PROXY_INBOUND_LISTEN",
        "--outbound-endpoint",
        "--telemetry-addr",
        "--destination-addr",
        "--opaque-ports",
        "--max-header-bytes",
    ] {
        assert!(help.contains(expected), "--help lacks {expected}:\n{help}");
    }
}

#[test]
fn bad_flags_are_explained() {
    for (args, hint) in [
        (&["--outbound-endpoint", "nonsense"][..], "AUTHORITY=ADDR"),
        (&["--telemetry-addr", "127.0.0.1:9096"], "http://"),
        (&["--opaque-ports", "99999"], "not a port"),
        (&["--detect-timeout", "soon"], "invalid duration"),
        (&["--mode", "magic"], "explicit"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(hint), "{args:?}: {err}");
    }
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(BIN)
        .args(["--admin-listen", &busy.local_addr().unwrap().to_string()])
        .args([
            "--inbound-listen",
            "127.0.0.1:0",
            "--outbound-listen",
            "127.0.0.1:0",
            "--tap-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot listen on --admin-listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_from_the_environment_and_stops_on_sigterm() {
    let app = upstream(|_| async { text(200, "ok") }).await;
    let (inbound, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .arg("run")
        .env("CONDUIT_PROXY_INBOUND_LISTEN", inbound.to_string())
        .env("CONDUIT_PROXY_ADMIN_LISTEN", admin.to_string())
        .env("CONDUIT_PROXY_OUTBOUND_LISTEN", "127.0.0.1:0")
        .env("CONDUIT_PROXY_TAP_LISTEN", "127.0.0.1:0")
        .env("CONDUIT_PROXY_INBOUND_APP_ADDR", app.addr.to_string())
        .env("CONDUIT_PROXY_NAMESPACE", "envns")
        .env("CONDUIT_PROXY_DEPLOYMENT", "envdeploy")
        .env("CONDUIT_PROXY_POD", "envdeploy-0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = http1_client();
    eventually("the proxy to be ready", || async {
        let req = http::Request::get(format!("http://{admin}/ready"))
            .body(http_body_util::Full::default())
            .unwrap();
        let ok = tokio::time::timeout(WAIT, client.request(req)).await;
        matches!(ok, Ok(Ok(r)) if r.status() == 200).then_some(())
    })
    .await;
    assert_eq!(get(&client, inbound, "web.test:80", "/").await.0, 200);
    let m = metrics_when(admin, "the request counted", |m| {
        m.sum("response_total", &[]) >= 1.0
    })
    .await;
    let labels = [
        ("namespace", "envns"),
        ("deployment", "envdeploy"),
        ("pod", "envdeploy-0"),
    ];
    assert_eq!(m.sum("request_total", &labels), 1.0, "{}", m.text);

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
