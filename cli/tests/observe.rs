//! The observability commands' error paths, with a real controller and no
//! store or proxies: what a user sees when something is down or mistyped.
//! (With everything up, see `observe_e2e.rs`.)

use std::path::Path;
use std::process::{Command, Output};

use conduit_testbed::discovery::{self, Discovery};
use conduit_testbed::{Controller, TempDir, free_addr};

fn conduit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
        .args(args)
        .env_remove("CONDUIT_API_ADDR")
        .env_remove("CONDUIT_API_TOKEN_FILE")
        // No demo's token from this machine's real data directory.
        .env("XDG_DATA_HOME", "/nonexistent/conduit-test-data")
        .env("KUBECONFIG", "/nonexistent/conduit-test-kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("run conduit")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn controller_without_store(dir: &Path) -> (Controller, String) {
    let path = dir.join("discovery.yaml");
    // A pod whose proxy is gone: nothing answers at either address.
    let pod = conduit_api::discovery_file::Pod {
        tap: Some(free_addr()),
        ..discovery::pod("web-0", "127.0.0.1:1".parse().unwrap())
    };
    Discovery::new("demo")
        .deployment("web", vec![pod])
        .write(&path);
    let store = format!("http://{}", free_addr());
    (Controller::start_with_store_url(&store, &path), store)
}

#[test]
fn controller_down_is_one_line_naming_where_it_looked() {
    let addr = free_addr().to_string();
    for args in [
        vec!["stat", "deploy", "-n", "demo"],
        vec!["edges", "deploy"],
        vec!["tap", "deploy/web"],
        vec!["top", "deploy/web", "--once"],
        vec!["routes", "deploy/web"],
    ] {
        let mut full = args.clone();
        full.extend(["--api-addr", &addr]);
        let out = conduit(&full);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(&addr) && err.contains("conduit check"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn without_any_address_every_place_is_named() {
    // The local default may be taken by a running demo on a developer's
    // machine; the message is only checked when nothing answers there.
    let out = conduit(&["stat", "deploy"]);
    if out.status.success() {
        return;
    }
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for place in [
        "--api-addr",
        "127.0.0.1:50751",
        "kubeconfig",
        "conduit check",
    ] {
        assert!(err.contains(place), "{place} missing from: {err}");
    }
}

#[test]
fn check_fails_with_exit_1_when_the_control_plane_is_down() {
    let addr = free_addr().to_string();
    let out = conduit(&["check", "--api-addr", &addr]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("× the control plane is reachable"), "{text}");
    assert!(text.contains(&addr), "{text}");
}

#[test]
fn store_down_is_reported_by_stat_and_check() {
    let dir = TempDir::new("observe");
    let (controller, store) = controller_without_store(dir.path());
    let api = controller.grpc.to_string();

    let out = conduit(&["stat", "deploy", "-n", "demo", "--api-addr", &api]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the telemetry store at {store} is unreachable")),
        "{err}"
    );
    assert!(err.contains("conduit check"), "{err}");

    let out = conduit(&["check", "--api-addr", &api, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "a failed check exits 1");
    let check: conduit_api::json::Check = serde_json::from_slice(&out.stdout).unwrap();
    let status_of = |needle: &str| {
        check
            .results
            .iter()
            .find(|r| r.description.contains(needle))
            .unwrap_or_else(|| panic!("no check about {needle}: {check:#?}"))
            .status
    };
    use conduit_api::json::CheckStatus::*;
    assert_eq!(status_of("control plane is reachable"), Ok);
    assert_eq!(status_of("version matches"), Ok);
    assert_eq!(status_of("static discovery file"), Ok);
    assert_eq!(status_of("telemetry store"), Failed);
}

#[test]
fn unknown_deployments_and_untappable_pods_are_named() {
    let dir = TempDir::new("observe");
    let (controller, _) = controller_without_store(dir.path());
    let api = controller.grpc.to_string();
    let token = controller.api_token_file.display().to_string();
    let token = ["--api-token-file", token.as_str()];

    let out = conduit(
        &[
            &["tap", "deploy/nope", "-n", "demo", "--api-addr", &api][..],
            &token,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("deployment demo/nope not found"),
        "{}",
        stderr(&out)
    );

    let out = conduit(
        &[
            &[
                "top",
                "deploy/nope",
                "-n",
                "demo",
                "--once",
                "--api-addr",
                &api,
            ][..],
            &token,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("demo/nope not found"),
        "{}",
        stderr(&out)
    );

    let out = conduit(
        &[
            &["tap", "deploy/web", "-n", "demo", "--api-addr", &api][..],
            &token,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the tap server of any pod of demo/web"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tap_top_and_diagnostics_need_the_control_planes_token() {
    let dir = TempDir::new("observe");
    let (controller, _) = controller_without_store(dir.path());
    let api = controller.grpc.to_string();
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let wrong = wrong.display().to_string();
    for args in [
        vec!["tap", "deploy/web", "-n", "demo"],
        vec!["tap", "deploy/web", "-n", "demo", "--since", "1h"],
        vec!["top", "deploy/web", "-n", "demo", "--once"],
        vec!["diagnostics", "proxy-metrics", "deploy/web", "-n", "demo"],
    ] {
        let without = conduit(&[&args[..], &["--api-addr", &api]].concat());
        assert_eq!(without.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&without).contains("need the control plane's API token"),
            "{args:?}: {}",
            stderr(&without)
        );
        let with_wrong =
            conduit(&[&args[..], &["--api-addr", &api, "--api-token-file", &wrong]].concat());
        assert_eq!(with_wrong.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&with_wrong).contains("not the one of this control plane"),
            "{args:?}: {}",
            stderr(&with_wrong)
        );
    }
    // Aggregates stay readable without it.
    let out = conduit(&["edges", "deploy", "-n", "demo", "--api-addr", &api]);
    assert!(!stderr(&out).contains("token"), "{}", stderr(&out));
}

#[test]
fn bad_windows_and_filters_are_usage_errors() {
    for (args, expected) in [
        (vec!["stat", "deploy", "-t", "0s"], "shorter than 1s"),
        (
            vec!["stat", "deploy", "-t", "5 minutes"],
            "invalid duration",
        ),
        (
            vec!["stat", "deploy", "-t", "2d"],
            "longer than the maximum",
        ),
        (
            vec!["stat", "deploy", "--from", "pod/x"],
            "unsupported resource",
        ),
        (
            vec!["stat", "deploy", "--to", "deploy"],
            "names no Deployment",
        ),
        (
            vec!["tap", "deploy/web", "--path", "api"],
            "must start with '/'",
        ),
        (
            vec!["tap", "deploy/web", "--method", "get"],
            "not an HTTP method",
        ),
        (vec!["tap", "deploy/web", "--max-rps", "0"], "max-rps"),
        (vec!["tap", "deploy/web", "--query", "path:/x"], "--since"),
        (
            vec!["tap", "deploy/web", "--since", "yesterday"],
            "invalid duration",
        ),
        (vec!["top", "deploy/web", "-t", "1x"], "invalid duration"),
        (
            vec![
                "stat",
                "deploy",
                "-n",
                "Demo_NS",
                "--from-namespace",
                "Bad_NS",
                "--from",
                "deploy/x",
            ],
            "not a valid namespace name",
        ),
    ] {
        let out = conduit(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = conduit(&["top", "deploy", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs one Deployment"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dashboard_prints_the_controllers_url() {
    let dir = TempDir::new("observe");
    let (controller, _) = controller_without_store(dir.path());
    let out = conduit(&[
        "dashboard",
        "--no-browser",
        "--api-addr",
        &controller.grpc.to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("Conduit dashboard: http://{}", controller.http)
    );
}
