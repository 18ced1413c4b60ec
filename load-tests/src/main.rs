//! `conduit-load-tests SCENARIO [ARGS...]`: runs one benchmark scenario (or
//! `all` of them) and writes its figures to `load-tests/RESULTS.md`
//! (`$CONDUIT_RESULTS_DIR/RESULTS.md` when set).

use std::process::ExitCode;

mod args;
mod control;
mod mtls;
mod plot;
mod policy;
mod proxy;
mod recorder;
mod report;
mod routes;
mod scratch;
mod soak;
mod stat;
mod store;
mod suite;
mod ui;

const USAGE: &str = "usage: conduit-load-tests SCENARIO [ARGS...]

scenarios:
  all [--quick | --tiny] [--only NAME,NAME...] [--list]
                              every scenario below in turn (full: within an hour; --quick: within 5 minutes;
                              --tiny: seconds each, only proving each still writes its figures)
  control [--subscribers N] [--rounds R]
                              a destination or policy change reaching 100 watching proxies and a real one (p50/p99)
  fleet [--proxies N] [--seconds S] [--rates R,R,...]
                              the store's tap history fed by 1000 proxies' flight recorders, rate raised until it falls behind
  h2 [--rate RPS] [--seconds S] [--rounds R]
                              conduit-proxy vs haproxy (h2) and nginx (grpc_pass) over HTTP/2 and gRPC unary, with h2load
  mtls [--rate RPS] [--seconds S] [--rounds R]
                              mTLS between two proxies vs plaintext, conduit vs haproxy (latency, RPS, handshakes)
  policy [--rate RPS] [--seconds S] [--rounds R]
                              the inbound policy check with 100 authorizations, and a proxy pair with and without policy
  proxy [--rate RPS] [--seconds S] [--rounds R]
                              conduit-proxy vs a direct connection and haproxy (latency, max RPS, RSS)
  recorder [--rate RPS] [--seconds S] [--rounds R]
                              the flight recorder and route learning per request: the parts alone, and proxies with and without
  routes [--requests N]       the proxy's path template learner per request, vs writing templates out
  sizing [--proxies N,N,...] [--seconds S] [--no-forward]
                              proxies per store: N proxies with a pod's series mix against one store, alone and forwarding
  soak [--seconds S] [--rps R] [--sample-every S]
                              the demo mesh at 1000 RPS for 30 minutes: every process's RSS and CPU over time, unexpected errors
  stat [DEPLOYMENTS] [RUNS]   `conduit stat` end to end with DEPLOYMENTS (1000) in the store
  store [--series N] [--hours H] [--deployments D] [--runs R]
                              the telemetry store vs Prometheus and VictoriaMetrics
  ui [RUNS]                   the dashboard: bundle size, first data row in headless Chromium
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("all") => suite::run(&args[1..]),
        Some("control") => control::run(&args[1..]),
        Some("fleet") => store::fleet::run(&args[1..]),
        Some("h2") => proxy::h2::run(&args[1..]),
        Some("mtls") => mtls::run(&args[1..]),
        Some("policy") => policy::run(&args[1..]),
        Some("proxy") => proxy::run(&args[1..]),
        Some("recorder") => recorder::run(&args[1..]),
        Some("routes") => routes::run(&args[1..]),
        Some("sizing") => store::sizing::run(&args[1..]),
        Some("soak") => soak::run(&args[1..]),
        Some("stat") => stat::run(&args[1..]),
        Some("store") => store::run(&args[1..]),
        Some("ui") => ui::run(&args[1..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit-load-tests: {e}");
            ExitCode::FAILURE
        }
    }
}
