//! The processes of the proxy benchmark: the upstream application (this
//! binary in another mode), conduit-proxy and haproxy, each pinned to a
//! core when `taskset` is available, and what /proc says about them.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A child process killed when dropped.
pub(crate) struct Process {
    pub(crate) name: &'static str,
    child: Child,
}

impl Process {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn memory(&self) -> Result<Memory, String> {
        memory(self.pid()).map_err(|e| format!("{}: {e}", self.name))
    }

    /// CPU time (user + system) used so far, in seconds.
    pub(crate) fn cpu_seconds(&self) -> Result<f64, String> {
        cpu_seconds(self.pid()).map_err(|e| format!("{}: {e}", self.name))
    }
}

/// A process's memory, split the one way that compares two proxies:
/// anonymous pages (heap, stacks, buffers: what one more sidecar costs)
/// and file-backed ones (its binary and libraries, which every copy of the
/// same binary on a host shares, though a lone process shares them with
/// nobody and the kernel then calls them private).
#[derive(Clone, Copy, Default)]
pub(crate) struct Memory {
    pub(crate) rss_kib: u64,
    pub(crate) anonymous_kib: u64,
    pub(crate) file_kib: u64,
}

/// [`Memory`] of any process, from `/proc/PID/smaps_rollup`.
pub(crate) fn memory(pid: u32) -> Result<Memory, String> {
    let rollup =
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).map_err(|e| e.to_string())?;
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .sum()
    };
    let (rss_kib, anonymous_kib) = (field("Rss:"), field("Anonymous:"));
    Ok(Memory {
        rss_kib,
        anonymous_kib,
        file_kib: rss_kib.saturating_sub(anonymous_kib),
    })
}

/// [`Process::rss_kib`] of any process.
pub(crate) fn rss_kib(pid: u32) -> Result<(u64, u64), String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name}"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

/// [`Process::cpu_seconds`] of any process.
pub(crate) fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
    let (user, system) = ticks(11).zip(ticks(12)).ok_or("bad /proc stat")?;
    Ok((user + system) / 100.0)
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a scenario runs: here, on this many cores (seen before pinning),
/// or already done by a pinned copy of this process.
pub(crate) enum Pinned {
    Here(usize),
    Done,
}

/// Runs the scenario again pinned to core 0 (where the generator and the
/// upstream belong) when there are two cores or more and `taskset`
/// exists, so the proxies can have core 1 to themselves. Once pinned, a
/// process sees one core, so the count comes along in the environment.
pub(crate) fn run_pinned(scenario: &str, args: &[String]) -> Result<Pinned, String> {
    if let Ok(n) = std::env::var("CONDUIT_LT_CORES") {
        return Ok(Pinned::Here(n.parse().unwrap_or(1)));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 || !has("taskset") {
        return Ok(Pinned::Here(cores));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = Command::new("taskset")
        .args(["-c", "0"])
        .arg(me)
        .arg(scenario)
        .args(args)
        .env("CONDUIT_LT_CORES", cores.to_string())
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(Pinned::Done)
    } else {
        Err(format!("the pinned run failed: {status}"))
    }
}

/// `taskset -c CORE program` when taskset exists, else `program`.
pub(crate) fn pinned(core: Option<usize>, program: &Path) -> Command {
    match core {
        Some(c) if has("taskset") => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        _ => Command::new(program),
    }
}

pub(crate) fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn free_port() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())
}

/// Starts `conduit-load-tests proxy --upstream N` and reads the ports its
/// N listeners got.
pub(crate) fn upstream(
    core: Option<usize>,
    listeners: usize,
) -> Result<(Process, Vec<SocketAddr>), String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = pinned(core, &me)
        .args(["proxy", "--upstream", &listeners.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the upstream: {e}"))?;
    let stdout = child.stdout.take().ok_or("no upstream stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addrs = line
        .split_whitespace()
        .map(|a| a.parse().map_err(|_| format!("upstream said {line:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        Process {
            name: "upstream",
            child,
        },
        addrs,
    ))
}

/// The upstream application: every listener answers every request with
/// the same 1 KiB body, keep-alive, over HTTP/1.1 or HTTP/2 (prior
/// knowledge, as gRPC clients speak it); a gRPC request gets its 1 KiB
/// as one gRPC message and `grpc-status: 0` in the trailers.
pub(crate) fn serve_upstream(listeners: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let mut bound = Vec::new();
        for _ in 0..listeners {
            bound.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let addrs: Vec<String> = bound
            .iter()
            .map(|l| l.local_addr().map(|a| a.to_string()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        println!("{}", addrs.join(" "));
        let body = Bytes::from(vec![b'x'; super::BODY_BYTES]);
        let mut tasks = Vec::new();
        for l in bound {
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((s, _)) = l.accept().await else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    let body = body.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let body = body.clone();
                            async move { Ok::<_, Infallible>(answer(req, body).await) }
                        });
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

type AnswerBody = BoxBody<Bytes, Infallible>;

/// The upstream's answer: 1 KiB, and for the recorder scenario a 500
/// when the query says `fail`, or after [`SLOW`] when it says `slow`.
async fn answer(
    req: http::Request<hyper::body::Incoming>,
    body: Bytes,
) -> http::Response<AnswerBody> {
    if is_grpc(&req) {
        return grpc_answer(req, body).await;
    }
    let mut rsp = http::Response::new(Full::new(body).boxed());
    match req.uri().query() {
        Some("fail") => *rsp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR,
        Some("slow") => tokio::time::sleep(SLOW).await,
        _ => {}
    }
    rsp
}

fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A unary gRPC reply: the request read whole (as a server reads its
/// message), then `message` framed, then the status in the trailers.
async fn grpc_answer(
    req: http::Request<hyper::body::Incoming>,
    message: Bytes,
) -> http::Response<AnswerBody> {
    let _ = req.into_body().collect().await;
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put_slice(&message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [Frame::data(framed.freeze()), Frame::trailers(trailers)];
    let body = StreamBody::new(tokio_stream::iter(frames.map(Ok::<_, Infallible>)));
    let mut rsp = http::Response::new(body.boxed());
    rsp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    rsp
}

/// How long the upstream takes over a `?slow` request.
pub(crate) const SLOW: Duration = Duration::from_millis(3);

/// The proxy binary next to this one (built first), or the one named by
/// `CONDUIT_LT_PROXY_BIN` (e.g. a build with symbols, for profiling).
pub(crate) fn proxy_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("CONDUIT_LT_PROXY_BIN") {
        return Ok(PathBuf::from(bin));
    }
    binary("conduit-proxy")
}

/// The workspace binary `name` next to this one. `cargo xtask bench`
/// builds them all first; building here would resolve features for another
/// set of packages and rebuild what was just built.
pub(crate) fn binary(name: &str) -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = me.parent().ok_or("no binary directory")?.join(name);
    if !bin.exists() {
        return Err(format!(
            "{} is missing: run `cargo xtask bench` (it builds the release binaries first)",
            bin.display()
        ));
    }
    Ok(bin)
}

pub(crate) struct ProxyAddrs {
    pub(crate) inbound: SocketAddr,
    pub(crate) outbound: SocketAddr,
    pub(crate) admin: SocketAddr,
}

/// conduit-proxy in explicit mode with one worker thread, inbound to
/// `app`; `extra` adds flags (outbound endpoints, identity).
pub(crate) fn proxy(
    core: Option<usize>,
    app: SocketAddr,
    extra: &[String],
) -> Result<(Process, ProxyAddrs), String> {
    let bin = proxy_binary()?;
    let addrs = ProxyAddrs {
        inbound: free_port()?,
        outbound: free_port()?,
        admin: free_port()?,
    };
    let mut cmd = pinned(core, &bin);
    cmd.args(["--inbound-listen", &addrs.inbound.to_string()])
        .args(["--outbound-listen", &addrs.outbound.to_string()])
        .args(["--admin-listen", &addrs.admin.to_string()])
        .args(["--tap-listen", &free_port()?.to_string()])
        .args(["--inbound-app-addr", &app.to_string()])
        .args([
            "--namespace",
            "bench",
            "--deployment",
            "bench",
            "--pod",
            "bench-0",
        ])
        .args(["--worker-threads", "1"])
        .args(extra);
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    Ok((
        Process {
            name: "conduit-proxy",
            child,
        },
        addrs,
    ))
}

/// haproxy in front of `app`, HTTP/1.1 keep-alive on both sides.
pub(crate) fn haproxy(
    core: Option<usize>,
    app: SocketAddr,
    dir: &Path,
) -> Result<(Process, SocketAddr), String> {
    haproxy_speaking(core, app, dir, "haproxy", "")
}

/// haproxy in front of `app` speaking HTTP/2 on both sides (h2c, prior
/// knowledge), as it proxies gRPC.
pub(crate) fn haproxy_h2(
    core: Option<usize>,
    app: SocketAddr,
    dir: &Path,
) -> Result<(Process, SocketAddr), String> {
    haproxy_speaking(core, app, dir, "haproxy-h2", " proto h2")
}

/// One thread, `proto` (haproxy's `proto …`, or nothing for HTTP/1.1) on
/// its listener and towards `app`.
fn haproxy_speaking(
    core: Option<usize>,
    app: SocketAddr,
    dir: &Path,
    name: &str,
    proto: &str,
) -> Result<(Process, SocketAddr), String> {
    let listen = free_port()?;
    let config = format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
         defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend fe\n  bind {listen}{proto}\n  default_backend be\n\
         backend be\n  server app {app}{proto}\n"
    );
    Ok((haproxy_with(core, dir, name, &config)?, listen))
}

/// nginx in front of `app` with `grpc_pass`: one process (no master),
/// one worker's worth of work, pinned to `core`, everything it writes in
/// `dir`. Its default closes a connection after 1 000 requests, which
/// would fail the streams in flight; the other peers keep theirs open.
pub(crate) fn nginx_grpc(
    core: Option<usize>,
    app: SocketAddr,
    dir: &Path,
) -> Result<(Process, SocketAddr), String> {
    if !has("nginx") {
        return Err(
            "nginx not found: install the Debian package (apt-get install -y nginx)".into(),
        );
    }
    let listen = free_port()?;
    let d = dir.display();
    let config = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/nginx-body;\n  proxy_temp_path {d}/nginx-proxy;\n\
         fastcgi_temp_path {d}/nginx-fastcgi;\n  uwsgi_temp_path {d}/nginx-uwsgi;\n  scgi_temp_path {d}/nginx-scgi;\n\
         upstream app {{ server {app}; keepalive 64; keepalive_requests 10000000; }}\n\
         server {{ listen {listen} http2; keepalive_requests 10000000;\n\
         location / {{ grpc_pass grpc://app; }} }}\n}}\n"
    );
    let cfg = dir.join("nginx.conf");
    std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
    let child = pinned(core, Path::new("nginx"))
        .arg("-e")
        .arg(dir.join("nginx.log"))
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nginx: {e}"))?;
    Ok((
        Process {
            name: "nginx",
            child,
        },
        listen,
    ))
}

/// haproxy running `config` (written to `dir/NAME.cfg`, its log to
/// `dir/NAME.log`), pinned to `core`.
pub(crate) fn haproxy_with(
    core: Option<usize>,
    dir: &Path,
    name: &str,
    config: &str,
) -> Result<Process, String> {
    if !has("haproxy") {
        return Err(
            "haproxy not found: install the Debian package (apt-get install -y haproxy)".into(),
        );
    }
    let cfg = dir.join(format!("{name}.cfg"));
    std::fs::write(&cfg, config).map_err(|e| e.to_string())?;
    // Its complaints (a refused certificate, a bad directive) stay next to
    // its configuration.
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let child = pinned(core, Path::new("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start haproxy: {e}"))?;
    Ok(Process {
        name: "haproxy",
        child,
    })
}

/// Waits until something accepts connections on `addr`.
pub(crate) async fn wait_listening(addr: SocketAddr, what: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{what} did not start listening on {addr}"))
}
