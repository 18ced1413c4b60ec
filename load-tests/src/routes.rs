//! `conduit-load-tests routes`: what learning path templates costs a
//! request, in process: the proxy's learner of one authority asked about
//! one request at a time (the hot path: a known template, the overflow
//! past the budget), against a learner keyed by template strings, which
//! writes each request's template out and looks it up under a lock.

use std::time::Instant;

use conduit_proxy::learned_routes::{bench_lookups, bench_string_keyed};

use crate::report;

const USAGE: &str = "usage: conduit-load-tests routes [--requests N]";
/// The proxy's default `--learned-routes-max`.
const BUDGET: u32 = 100;

struct Case {
    name: &'static str,
    paths: Vec<String>,
    /// Requests the learner counts under a template of their own.
    own: fn(usize) -> usize,
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let requests = match args {
        [] => 2_000_000,
        [flag, n] if flag == "--requests" => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("invalid --requests {n:?}\n{USAGE}"))?,
        _ => return Err(USAGE.to_string()),
    };
    let cases = [
        Case {
            name: "500 ids, one template (`/api/vote/{id}`)",
            paths: (0..500)
                .map(|i| format!("/api/vote/{}", 1000 + i))
                .collect(),
            own: |n| n,
        },
        Case {
            name: "6 segments with a UUID and a number",
            paths: (0..500)
                .map(|i| format!("/api/v1/users/550e8400-e29b-41d4-a716-{i:012}/orders/{i}"))
                .collect(),
            own: |n| n,
        },
        Case {
            name: "100 templates known, requests spread over them",
            paths: (0..BUDGET)
                .map(|i| format!("/api/r{i}/items/{i}"))
                .collect(),
            own: |n| n,
        },
        Case {
            name: "hostile: 10 000 distinct words, past the budget",
            paths: (0..10_000).map(|i| format!("/page/w{}", word(i))).collect(),
            own: |n| n.min(BUDGET as usize),
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let rounds = requests.div_ceil(case.paths.len());
        let n = rounds * case.paths.len();
        let start = Instant::now();
        let own = bench_lookups(BUDGET, &case.paths, rounds);
        let learner = start.elapsed().as_nanos() as f64 / n as f64;
        let expected = (case.own)(case.paths.len()) * rounds;
        if own != expected {
            return Err(format!(
                "{}: {own} own templates, expected {expected}",
                case.name
            ));
        }
        let start = Instant::now();
        let peer_own = bench_string_keyed(BUDGET, &case.paths, rounds);
        let peer = start.elapsed().as_nanos() as f64 / n as f64;
        if peer_own != expected {
            return Err(format!(
                "{}: the peer learned {peer_own}, expected {expected}",
                case.name
            ));
        }
        println!(
            "{}: learner {learner:.0} ns, string-keyed {peer:.0} ns",
            case.name
        );
        rows.push(format!(
            "| {} | {n} | {learner:.0} | {peer:.0} |",
            case.name
        ));
    }
    let body = format!(
        "## routes: learning path templates ({})\n\n\
         `cargo run --release -p conduit-load-tests -- routes --requests {requests}`\n\n\
         Nanoseconds per request of one authority's learner (default budget of {BUDGET} \
         templates) on one core, in process, with the series lookup it does per request; \
         the peer is a learner keyed by template strings (the template written out, then \
         looked up under a lock). The learner allocates nothing per request, the peer one \
         string; on a loaded machine runs differ by up to half.\n\n\
         | case | requests | learner ns/request | string-keyed ns/request |\n\
         |---|---:|---:|---:|\n{}\n",
        report::today(),
        rows.join("\n")
    );
    report::write_section("routes", &body)
}

/// A lower-case word for `i`, never an identifier.
fn word(mut i: usize) -> String {
    let mut w = String::new();
    loop {
        w.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return w;
        }
    }
}
