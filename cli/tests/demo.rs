//! `conduit demo` end to end, as a new user meets it: one command brings up
//! the store, the controller and the emoji-vote application behind real
//! proxies; `stat`, `tap`, `edges`, the PromQL API and the dashboard show
//! the traffic; a killed proxy comes back; and when the demo ends nothing
//! of it is left running.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit_api::json::{Authz, Edges, Golden, Stat};
use conduit_testbed::engine::{Engine, Kind};
use conduit_testbed::{TempDir, bin};

/// Demo ports with this offset sit outside Linux's ephemeral port range
/// (32768–60999), so sockets other tests open cannot take them.
const PORT_OFFSETS: &[u16] = &[14_000, 14_100, 14_200];
/// The rollout demo's, apart so both demos can run at once.
const ROLLOUT_PORT_OFFSETS: &[u16] = &[14_300, 14_400, 14_500];
/// For the demos that read their figures from an engine (each takes the
/// first offset free).
const ENGINE_PORT_OFFSETS: &[u16] = &[14_600, 14_700, 14_800];
const DURATION_S: u64 = 60;
/// Demo Deployments that serve HTTP/gRPC and so must show requests.
const HTTP_DEPLOYMENTS: &[&str] = &["web", "emoji", "voting"];
const FAILURE_RATE: f64 = 0.1;

struct Demo {
    child: Child,
    offset: u16,
    data: TempDir,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts the demo, moving to the next offset when a port is taken.
    fn start() -> Self {
        Self::start_with(PORT_OFFSETS, &["--with-intruder"])
    }

    /// Starts the demo with `extra` flags on the first free offset.
    fn start_with(offsets: &[u16], extra: &[&str]) -> Self {
        for &offset in offsets {
            let mut demo = Self::spawn(offset, extra);
            let deadline = Instant::now() + Duration::from_secs(120);
            while Instant::now() < deadline {
                if demo.stdout().contains("Conduit demo is running") {
                    return demo;
                }
                if let Some(status) = demo.child.try_wait().unwrap() {
                    let stderr = demo.stderr();
                    if stderr.contains("is not available") {
                        break;
                    }
                    panic!("conduit demo exited ({status}) before it was ready:\n{stderr}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            assert!(
                demo.child.try_wait().unwrap().is_some(),
                "conduit demo not ready in 120 s:\n{}",
                demo.stderr()
            );
        }
        panic!("every port offset tried was taken: {offsets:?}");
    }

    fn spawn(offset: u16, extra: &[&str]) -> Self {
        let data = TempDir::new("demo");
        let mut child = Command::new(bin("conduit"))
            .args(["demo", "--duration", &format!("{DURATION_S}s")])
            .args(["--port-offset", &offset.to_string()])
            .args(["--failure-rate", &FAILURE_RATE.to_string()])
            .args(extra)
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start conduit demo");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            offset,
            data,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn port(&self, base: u16) -> u16 {
        base + self.offset
    }

    fn api_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port(50_751))
    }

    fn store_http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(9095)))
    }

    /// The token that opens tap, which the demo writes for its user.
    fn api_token_file(&self) -> std::path::PathBuf {
        self.data.path().join("api-token")
    }

    /// `conduit ARGS --api-addr <the demo's> --api-token-file <the demo's>`,
    /// as the demo's banner says to run it.
    fn conduit(&self, args: &[&str]) -> Output {
        Command::new(bin("conduit"))
            .args(args)
            .args(["--api-addr", &self.api_addr()])
            .arg("--api-token-file")
            .arg(self.api_token_file())
            .output()
            .expect("run conduit")
    }

    /// An instant PromQL query against the demo's store.
    fn promql(&self, query: &str) -> serde_json::Value {
        let path = format!(
            "/api/v1/query?query={}",
            conduit_testbed::query_escape(query)
        );
        let (status, body) = http_get(self.store_http(), &path);
        assert_eq!(status, 200, "{query}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["data"]["result"].clone()
    }

    /// Every `/proc/*/cmdline` that mentions one of the demo's ports or its
    /// data dir: the processes the demo started.
    fn processes(&self) -> Vec<String> {
        let data = self.data.path().display().to_string();
        let pod_ports = format!("127.0.0.1:{}", self.port(47_000) / 100);
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            let ours = cmdline.contains(&data) || cmdline.contains(&pod_ports);
            if ours && !cmdline.contains("demo --duration") {
                let pid = entry.file_name().to_string_lossy().into_owned();
                found.push(format!("{pid}: {cmdline}"));
            }
        }
        found
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- conduit demo stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout(),
                self.stderr()
            );
        }
    }
}

fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    text
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// Bodies of `Transfer-Encoding: chunked` responses, joined.
fn dechunk(body: &str) -> String {
    if !body.contains("\r\n") || body.trim_start().starts_with(['{', '<']) {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` until it returns `Ok`, or fails with its last error.
fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("{what} not seen in {within:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// What `conduit authz` counts on `server` of `deployment`: denials, and
/// (when `allowed`) admissions by `admits`; each must have happened.
fn authz_counts(
    demo: &Demo,
    deployment: &str,
    server: &str,
    admits: &str,
    allowed: bool,
) -> Result<(), String> {
    let out = demo.conduit(&[
        "authz",
        &format!("deploy/{deployment}"),
        "-n",
        "demo",
        "-o",
        "json",
    ]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let authz: Authz = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let sum = |authorization: &str, value: fn(&conduit_api::json::AuthzRow) -> f64| {
        authz
            .rows
            .iter()
            .filter(|r| r.server == server && r.authorization == authorization)
            .map(value)
            .sum::<f64>()
    };
    let (admitted, denied) = (sum(admits, |r| r.allowed), sum("", |r| r.denied));
    if denied > 0.0 && (admitted > 0.0 || !allowed) {
        return Ok(());
    }
    Err(format!("allowed {admitted}, denied {denied}: {authz:?}"))
}

fn stat(demo: &Demo) -> Result<Stat, String> {
    let out = demo.conduit(&["stat", "deploy", "-n", "demo", "-o", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Golden metrics of every HTTP Deployment, the opaque TCP edge, and the
/// injected failure share of voting.
fn check_stat(demo: &Demo) -> Result<Stat, String> {
    let stat = stat(demo)?;
    for name in ["web", "emoji", "voting", "vote-store", "vote-bot"] {
        if !stat.rows.iter().any(|r| r.name == name) {
            return Err(format!("{name} missing from stat: {stat:?}"));
        }
    }
    for name in HTTP_DEPLOYMENTS {
        let row = stat.rows.iter().find(|r| r.name == *name).unwrap();
        let metrics = row.metrics.as_ref().ok_or(format!("{name}: no metrics"))?;
        if metrics.rps <= 0.0 {
            return Err(format!("{name}: rps {}", metrics.rps));
        }
        if row.meshed_pods != row.total_pods || row.total_pods == 0 {
            return Err(format!(
                "{name}: meshed {}/{}",
                row.meshed_pods, row.total_pods
            ));
        }
    }
    let voting = stat.rows.iter().find(|r| r.name == "voting").unwrap();
    let v = voting.metrics.as_ref().unwrap();
    if v.total() < 500 {
        return Err(format!("voting has only {} requests so far", v.total()));
    }
    at_the_injected_rate(v)?;
    let store = stat.rows.iter().find(|r| r.name == "vote-store").unwrap();
    if store.tcp_open_connections == 0 {
        return Err("vote-store has no open TCP connection (the opaque edge)".into());
    }
    Ok(stat)
}

#[test]
fn demo_runs_the_mesh_and_cleans_up() {
    let mut demo = Demo::start();
    let ready_at = Instant::now();
    let banner = demo.stdout();
    for expected in [
        format!("http://127.0.0.1:{}", demo.port(50_750)),
        format!("http://127.0.0.1:{}", demo.port(9095)),
        "conduit stat deploy -n demo".to_string(),
        "conduit tap deploy/web -n demo".to_string(),
        "conduit edges deploy -n demo".to_string(),
        format!("--api-token-file {}", demo.api_token_file().display()),
    ] {
        assert!(banner.contains(&expected), "{expected} missing:\n{banner}");
    }
    // The dashboard URL opens a session with the token, which only the
    // demo's user can read.
    use std::os::unix::fs::PermissionsExt;
    let token = std::fs::read_to_string(demo.api_token_file()).unwrap();
    assert!(
        banner.contains(&format!("/auth?token={}", token.trim())),
        "{banner}"
    );
    let mode = std::fs::metadata(demo.api_token_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Within 30 s the golden metrics show the traffic and the failure share.
    let stat = eventually(
        "stat of every demo Deployment",
        Duration::from_secs(30),
        || check_stat(&demo),
    );
    eprintln!("stat after {:?}: {stat:?}", ready_at.elapsed());

    // The PromQL API answers Grafana's kind of query.
    let result = demo.promql("sum(rate(request_total[30s]))by(deployment)");
    let deployments: Vec<&str> = result
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"]["deployment"].as_str())
        .collect();
    for name in HTTP_DEPLOYMENTS {
        assert!(deployments.contains(name), "{name} missing: {result}");
    }

    // Live tap prints requests to web as they happen: web's own end after
    // the two calls it makes, so a dozen events hold some of each.
    let tap = demo.conduit(&["tap", "deploy/web", "-n", "demo", "--limit", "12"]);
    assert!(
        tap.status.success(),
        "{}",
        String::from_utf8_lossy(&tap.stderr)
    );
    let tap = String::from_utf8_lossy(&tap.stdout);
    assert_eq!(
        tap.lines().filter(|l| l.starts_with("req ")).count(),
        12,
        "{tap}"
    );
    assert!(
        tap.contains(":authority=web.demo.svc.cluster.local:8080"),
        "{tap}"
    );

    // Edges: web talks to emoji (gRPC) and voting, voting to vote-store
    // (opaque TCP), all of it mTLS with both identities.
    let out = demo.conduit(&["edges", "deploy", "-n", "demo", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let edges: Edges = serde_json::from_slice(&out.stdout).unwrap();
    for dst in ["emoji", "voting"] {
        assert!(
            edges
                .edges
                .iter()
                .any(|e| e.src.name == "web" && e.dst.name == dst),
            "web -> {dst} missing: {edges:?}"
        );
    }
    for e in &edges.edges {
        let identity = |d: &str| format!("{d}.demo.serviceaccount.identity.conduit.cluster.local");
        assert!(e.secured, "not secured: {e:?}");
        assert_eq!(e.client_id, identity(&e.src.name), "{e:?}");
        assert_eq!(e.server_id, identity(&e.dst.name), "{e:?}");
    }
    assert!(
        edges
            .edges
            .iter()
            .any(|e| e.src.name == "voting" && e.dst.name == "vote-store"),
        "voting -> vote-store (TCP) missing: {edges:?}"
    );

    // The demo's policy: voting answers web only and vote-store voting
    // only; the intruder (unmeshed, calling their pods directly) is denied
    // at both, and each side is counted where `conduit authz` shows it.
    eventually(
        "voting's requests allowed and denied",
        Duration::from_secs(30),
        || authz_counts(&demo, "voting", "voting-grpc", "web-only", true),
    );
    // voting keeps one connection to vote-store open, admitted before the
    // window began: the window shows the denials, the counter the admission.
    eventually(
        "vote-store's connections denied",
        Duration::from_secs(30),
        || authz_counts(&demo, "vote-store", "vote-store-tcp", "voting-only", false),
    );
    let admitted = demo.promql(
        "inbound_tcp_authz_allow_total{deployment=\"vote-store\",srv_name=\"vote-store-tcp\",authz_name=\"voting-only\"}",
    );
    assert_eq!(admitted.as_array().map(Vec::len), Some(1), "{admitted}");
    // A denial shows in tap with its reason.
    let tap = demo.conduit(&[
        "tap",
        "deploy/voting",
        "-n",
        "demo",
        "--path",
        "/emojivoto.v1.VotingService/VoteIntruder",
        "--limit",
        "1",
    ]);
    let tap = String::from_utf8_lossy(&tap.stdout);
    assert!(
        tap.contains(":status=403")
            && tap.contains("error=\"unauthorized: no authorization of server voting-grpc"),
        "{tap}"
    );

    // Routes with no profile: vote-bot's proxy learned web's paths (the
    // query string does not count), and `conduit routes` shows them.
    let routes = eventually(
        "web's learned routes",
        Duration::from_secs(30),
        || -> Result<conduit_api::json::Routes, String> {
            let out = demo.conduit(&["routes", "deploy/web", "-n", "demo", "-o", "json"]);
            let routes: conduit_api::json::Routes =
                serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let seen = |name: &str| {
                routes
                    .rows
                    .iter()
                    .any(|r| r.route == name && r.learned && r.metrics.is_some())
            };
            if seen("GET /api/vote") && seen("GET /api/list") {
                Ok(routes)
            } else {
                Err(format!("{routes:?}"))
            }
        },
    );
    assert!(routes.rows.iter().all(|r| r.learned), "{routes:?}");
    let out = demo.conduit(&["routes", "deploy/web", "-n", "demo"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("GET /api/vote ") && l.contains("learned")),
        "{table}"
    );

    // Each pod's certificate, as the controller reads it in a handshake.
    let out = demo.conduit(&["identity", "deploy/emoji", "-n", "demo", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pods = pods.as_array().unwrap();
    assert_eq!(pods.len(), 2, "{pods:?}");
    for p in pods {
        let c = &p["certificate"];
        assert_eq!(
            c["dns_names"][0], "emoji.demo.serviceaccount.identity.conduit.cluster.local",
            "{p}"
        );
        assert_eq!(
            c["uris"][0], "spiffe://cluster.local/ns/demo/sa/emoji",
            "{p}"
        );
        assert!(
            c["issuer"].as_str().unwrap().contains("identity.conduit"),
            "{p}"
        );
    }

    // What web's proxies resolved, read from them over mTLS through the
    // controller: voting's endpoints and the identity each must prove.
    let out = demo.conduit(&[
        "diagnostics",
        "endpoints",
        "deploy/web",
        "-n",
        "demo",
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pods: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let voting_endpoints: Vec<&serde_json::Value> = pods
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["destinations"].as_array().unwrap())
        .filter(|d| d["authority"].as_str().unwrap().starts_with("voting."))
        .flat_map(|d| d["endpoints"].as_array().unwrap())
        .collect();
    assert!(!voting_endpoints.is_empty(), "{pods:#}");
    for e in voting_endpoints {
        assert_eq!(
            e["identity"], "voting.demo.serviceaccount.identity.conduit.cluster.local",
            "{e}"
        );
        assert_eq!(e["protocol_hint"], "h2", "{e}");
    }

    // The dashboard URL serves a page.
    let (status, page) = http_get(SocketAddr::from(([127, 0, 0, 1], demo.port(50_750))), "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.to_lowercase().contains("<html"), "{page}");

    kill_a_proxy_and_see_it_recover(&demo);

    // At the end of --duration the demo stops everything it started.
    let deadline = ready_at + Duration::from_secs(DURATION_S + 30);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "demo did not stop after --duration"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.success(),
        "demo exited with {status}:\n{}",
        demo.stderr()
    );
    assert!(demo.stderr().contains("every demo process has exited"));
    let left = demo.processes();
    assert!(left.is_empty(), "processes left behind: {left:#?}");
    for base in [9095, 9096, 50_750, 50_751, 47_000, 47_001, 47_013, 47_054] {
        let addr = SocketAddr::from(([127, 0, 0, 1], demo.port(base)));
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("{addr} still taken: {e}"));
    }
}

/// Kills web's proxy with SIGKILL: the demo restarts it, says so, vote-bot's
/// proxy counts the errors it got meanwhile, and web serves traffic again.
fn kill_a_proxy_and_see_it_recover(demo: &Demo) {
    let victim = demo
        .processes()
        .into_iter()
        .find(|p| p.contains("conduit-proxy") && p.contains("--pod web-0"))
        .expect("web-0's proxy process");
    let pid = victim.split(':').next().unwrap();
    let killed = Command::new("kill").args(["-KILL", pid]).status().unwrap();
    assert!(killed.success());

    eventually("the restart report", Duration::from_secs(10), || {
        let stderr = demo.stderr();
        if stderr.contains("proxy-web-0 exited") {
            Ok(())
        } else {
            Err(stderr)
        }
    });
    // The supervisor reports the exit before the replacement has started
    // (it backs off first); the log shows both starts once it has.
    let log = demo.data.path().join("logs").join("proxy-web-0.log");
    eventually(
        "the restarted proxy's start in its log",
        Duration::from_secs(10),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.matches("proxy started").count() >= 2 {
                Ok(())
            } else {
                Err(text)
            }
        },
    );

    eventually(
        "errors of the outage in vote-bot's metrics",
        Duration::from_secs(30),
        || {
            let result = demo.promql(
                "sum(increase(response_total{deployment=\"vote-bot\",direction=\"outbound\",\
             classification=\"failure\",status_code!=\"500\"}[1m]))",
            );
            let value = result[0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            if value > 0.0 {
                Ok(())
            } else {
                Err(result.to_string())
            }
        },
    );
    eventually("web serving again", Duration::from_secs(30), || {
        let result =
            demo.promql("sum(rate(request_total{deployment=\"web\",direction=\"inbound\"}[5s]))");
        let value = result[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if value > 0.0 {
            Ok(())
        } else {
            Err(result.to_string())
        }
    });
}

/// `conduit demo --rollout`: voting's second version starts beside the
/// first after the delay asked for, the demo says how to compare them, and
/// `conduit stat --by version` shows both with their own success rates,
/// the new one's clearly worse (30 points more failures).
#[test]
fn a_rollout_shows_two_versions_of_voting_with_their_own_success_rates() {
    let demo = Demo::start_with(
        ROLLOUT_PORT_OFFSETS,
        &["--rollout", "--rollout-after", "5s"],
    );
    assert!(
        demo.stdout().contains("In 5s, voting v2 rolls out"),
        "{}",
        demo.stdout()
    );
    let hint = "conduit stat deploy/voting -n demo --by version";
    eventually("the rollout's hint", Duration::from_secs(60), || {
        let out = demo.stdout();
        if out.contains("voting v2 now runs beside v1") && out.contains(hint) {
            Ok(())
        } else {
            Err(out)
        }
    });
    let stat = eventually("both versions of voting", Duration::from_secs(40), || {
        let out = demo.conduit(&[
            "stat",
            "deploy/voting",
            "-n",
            "demo",
            "--by",
            "version",
            "-t",
            "30s",
            "-o",
            "json",
        ]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let stat: Stat = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let requests = |v: &str| {
            stat.rows
                .iter()
                .find(|r| r.version.as_deref() == Some(v))
                .and_then(|r| r.metrics.as_ref())
                .map_or(0, |m| m.total())
        };
        // Enough requests that the success rates are not noise.
        if requests("v1") >= 200 && requests("v2") >= 60 {
            Ok(stat)
        } else {
            Err(format!("{stat:?}"))
        }
    });
    assert_eq!(stat.rows.len(), 2, "{stat:#?}");
    let success = |v: &str| {
        stat.rows
            .iter()
            .find(|r| r.version.as_deref() == Some(v))
            .and_then(|r| r.metrics.as_ref())
            .map(|m| m.success_rate)
            .unwrap()
    };
    assert!(
        success("v2") < success("v1") - 0.15,
        "v2 fails more: {stat:#?}"
    );
    for row in &stat.rows {
        assert_eq!((row.meshed_pods, row.total_pods), (1, 1), "{row:?}");
    }

    // Stopped, the demo stops the rolled-out pod too.
    let mut demo = demo;
    let term = Command::new("kill")
        .args(["-TERM", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = demo.child.wait().unwrap();
    assert!(status.success(), "demo exited with {status}");
    let left = demo.processes();
    assert!(left.is_empty(), "processes left behind: {left:#?}");
}

/// Whether `m`'s success rate is the demo's within four standard
/// deviations of its failures' binomial spread: a 200-request window
/// moves by ±2 points between windows by chance alone, and a fixed
/// tolerance fails a correct demo now and then.
fn at_the_injected_rate(m: &Golden) -> Result<(), String> {
    let expected = 1.0 - FAILURE_RATE;
    let spread = 4.0 * (FAILURE_RATE * expected / m.total() as f64).sqrt();
    if (m.success_rate - expected).abs() > spread {
        return Err(format!(
            "voting success rate {:.3} over {} requests, expected {expected} ± {spread:.3}",
            m.success_rate,
            m.total()
        ));
    }
    Ok(())
}

/// `conduit demo --remote-write-url … --metrics-backend prometheus:…`: the
/// demo's store forwards to a real engine, and `conduit stat` and `check`
/// answer from it: voting at the demo's failure rate.
fn the_demo_reads_its_figures_from(kind: Kind) {
    let engine = Engine::start(kind);
    let write = format!("{}/api/v1/write", engine.url());
    let backend = format!("prometheus:{}", engine.url());
    let demo = Demo::start_with(
        ENGINE_PORT_OFFSETS,
        &["--remote-write-url", &write, "--metrics-backend", &backend],
    );
    let voting = eventually(
        &format!("voting's figures from {kind:?}"),
        Duration::from_secs(60),
        || {
            let out = demo.conduit(&["stat", "deploy", "-n", "demo", "-t", "30s", "-o", "json"]);
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            let stat: Stat = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            let voting = stat
                .rows
                .iter()
                .find(|r| r.name == "voting")
                .and_then(|r| r.metrics.clone())
                .filter(|m| m.total() >= 200)
                .ok_or(format!("{stat:?}"))?;
            at_the_injected_rate(&voting)?;
            Ok(voting)
        },
    );
    assert!(voting.total() >= 200, "{voting:?}");
    let out = demo.conduit(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains(&backend))
        .unwrap_or_else(|| panic!("check names no metrics backend:\n{text}"));
    assert!(line.starts_with('√'), "{line}");
    // Without the engine, stat says so and names it.
    drop(engine);
    let out = demo.conduit(&["stat", "deploy", "-n", "demo"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&backend), "{stderr}");
}

#[test]
fn the_demo_reads_its_figures_from_prometheus() {
    the_demo_reads_its_figures_from(Kind::Prometheus);
}

/// VictoriaMetrics takes remote write at `/api/v1/write` too, and answers
/// the Prometheus query API at its root.
#[test]
fn the_demo_reads_its_figures_from_victoria_metrics() {
    the_demo_reads_its_figures_from(Kind::VictoriaMetrics);
}
