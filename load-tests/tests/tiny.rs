//! Every benchmark scenario in its tiny size (`conduit-load-tests all
//! --tiny --only NAME`): real peers, real binaries, seconds each. The
//! figures of a tiny run mean nothing; what is asserted is that the
//! scenario still runs end to end and writes its section with figures,
//! so the harness cannot rot between benchmark runs. Results go to a
//! scratch directory, never to the recorded `load-tests/RESULTS.md`.

use std::process::Command;

use conduit_testbed::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_conduit-load-tests");

/// Every scenario this file runs; `every_scenario_has_a_tiny_run` keeps it
/// equal to what `all` runs.
const TINY: &[&str] = &[
    "proxy", "h2", "mtls", "policy", "recorder", "routes", "store", "stat", "fleet", "sizing",
    "control", "ui", "soak",
];

fn tiny(scenario: &str) {
    let results = TempDir::new(&format!("tiny-{scenario}"));
    let out = Command::new(BIN)
        .args(["all", "--tiny", "--only", scenario])
        .env("CONDUIT_RESULTS_DIR", results.path())
        .output()
        .expect("run conduit-load-tests");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{scenario} (tiny) failed ({}):\n{stderr}",
        out.status
    );
    let md = std::fs::read_to_string(results.path().join("RESULTS.md")).expect("RESULTS.md");
    let section = section_of(&md, scenario)
        .unwrap_or_else(|| panic!("no {scenario} section in RESULTS.md:\n{md}"));
    let figures = section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|-"))
        .filter(|l| l.chars().any(|c| c.is_ascii_digit()))
        .count();
    assert!(
        figures > 0,
        "{scenario}'s section has no table row with a figure:\n{section}"
    );
    let summary = section_of(&md, "all").expect("the summary section of `all`");
    assert!(
        summary.contains(&format!("| {scenario} | `conduit-load-tests {scenario}")),
        "the summary does not list {scenario}:\n{summary}"
    );
}

fn section_of<'a>(md: &'a str, name: &str) -> Option<&'a str> {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    let b = md.find(&begin)? + begin.len();
    let e = md[b..].find(&end)? + b;
    Some(&md[b..e])
}

#[test]
fn every_scenario_has_a_tiny_run() {
    let out = Command::new(BIN)
        .args(["all", "--list"])
        .output()
        .expect("run conduit-load-tests all --list");
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        listed, TINY,
        "add a tiny test for every scenario `all` runs"
    );
}

#[test]
fn an_unknown_scenario_or_option_is_refused() {
    for args in [
        &["all", "--only", "nope"][..],
        &["all", "--fast"][..],
        &["proxy", "--rate", "0"][..],
        &["sizing", "--proxies", "500,100"][..],
        &["control", "--subscribers", "10001"][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(args[args.len() - 1].trim_start_matches('-')),
            "{args:?}: the error does not name what was wrong: {stderr}"
        );
    }
}

macro_rules! tiny_tests {
    ($($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                tiny(stringify!($name));
            }
        )*
    };
}

tiny_tests!(
    proxy, h2, mtls, policy, recorder, routes, store, stat, fleet, sizing, control, ui, soak
);
