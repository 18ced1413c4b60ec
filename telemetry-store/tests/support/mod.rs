//! Shared by the integration tests: a store on loopback ports, HTTP
//! helpers over hyper's client, and remote-write encoding.

#![allow(dead_code, unreachable_pub)] // Each test binary uses a different subset.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use conduit_telemetry_store::{Config, Running, Store};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub struct TestStore {
    pub running: Running,
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn http(&self) -> SocketAddr {
        self.running.http_addr()
    }

    pub fn grpc(&self) -> SocketAddr {
        self.running.grpc_addr()
    }
}

/// The bearer token of every test store's remote write and tap history;
/// [`request`] presents it on every call.
pub const TOKEN: &str = "conduit-store-test-token";

/// A file holding [`TOKEN`], for `--remote-write-token-file` and
/// `--tap-token-file`.
pub fn token_file() -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("conduit-store-test-token-{}", std::process::id()));
    std::fs::write(&path, TOKEN).expect("write the test token");
    path
}

/// Opens remote write and the tap history to [`TOKEN`].
pub fn with_tokens(config: &mut Config) {
    let path = token_file();
    config.remote_write_token_file = Some(path.clone());
    config.tap_token_file = Some(path);
}

/// The `conduit-telemetry-store` binary, running on free loopback ports;
/// killed (SIGKILL) when dropped.
pub struct StoreProcess {
    pub child: Child,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// Its log so far, without colors.
    pub log: Arc<Mutex<String>>,
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl StoreProcess {
    /// Starts the binary on `dir` with `args`, and reads its addresses
    /// from its log (ports the store chose, so no other process can take
    /// them between a test's choice and the store's bind).
    pub fn spawn(dir: &Path, args: &[&str]) -> Self {
        Self::spawn_on(dir, ([127, 0, 0, 1], 0).into(), args)
    }

    /// As [`Self::spawn`], its gRPC server on `grpc`: a store restarted
    /// where its proxies already send.
    pub fn spawn_on(dir: &Path, grpc: SocketAddr, args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conduit-telemetry-store"))
            .args(["--http-listen", "127.0.0.1:0", "--grpc-listen"])
            .arg(grpc.to_string())
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .arg("--remote-write-token-file")
            .arg(token_file())
            .arg("--tap-token-file")
            .arg(token_file())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the store binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let plain = strip_ansi(&line);
                let field = |name: &str| {
                    let rest = plain.split(&format!("{name}=")).nth(1)?;
                    rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
                };
                if let (Some(http), Some(grpc)) = (field("http_addr"), field("grpc_addr")) {
                    let _ = tx.send((http, grpc));
                }
                sink.lock().unwrap().push_str(&(plain + "\n"));
            }
        });
        let (http, grpc) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the store did not start:\n{}", log.lock().unwrap()));
        Self {
            child,
            http,
            grpc,
            log,
        }
    }

    /// Sends `signal` (e.g. `STOP`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
    }

    /// SIGKILL, as `kill -9`.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A store on free loopback ports in a fresh temporary directory, its
/// closed endpoints open to [`TOKEN`].
pub async fn start_store(configure: impl FnOnce(&mut Config)) -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_data_dir(dir.path());
    with_tokens(&mut config);
    configure(&mut config);
    let store = Store::open(config).expect("store opens");
    let running = store.start().await.expect("store starts");
    TestStore { running, dir }
}

/// A real `conduit-proxy` in front of `app` as pod demo/web/web-1,
/// reporting every 200 ms to each of `stores` (gRPC addresses).
pub async fn start_proxy(
    app: SocketAddr,
    stores: &[SocketAddr],
    extra: &[&str],
) -> conduit_proxy::Proxy {
    use clap::Parser;
    #[derive(Parser)]
    struct ProxyArgs {
        #[command(flatten)]
        config: conduit_proxy::config::Config,
    }
    let stores: Vec<String> = stores.iter().map(|s| format!("http://{s}")).collect();
    let mut args = vec![
        "conduit-proxy".to_string(),
        "--inbound-listen=127.0.0.1:0".into(),
        "--outbound-listen=127.0.0.1:0".into(),
        "--admin-listen=127.0.0.1:0".into(),
        "--tap-listen=127.0.0.1:0".into(),
        format!("--inbound-app-addr={app}"),
        format!("--telemetry-addr={}", stores.join(",")),
        "--telemetry-interval=200ms".into(),
        "--namespace=demo".into(),
        "--deployment=web".into(),
        "--pod=web-1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = ProxyArgs::try_parse_from(args).expect("proxy flags").config;
    conduit_proxy::Proxy::start(config)
        .await
        .expect("proxy starts")
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub async fn get(url: &str) -> (u16, String) {
    request(hyper::Method::GET, url, None, Bytes::new()).await
}

pub async fn post(url: &str, content_type: &str, body: impl Into<Bytes>) -> (u16, String) {
    request(hyper::Method::POST, url, Some(content_type), body.into()).await
}

pub async fn request(
    method: hyper::Method,
    url: &str,
    content_type: Option<&str>,
    body: Bytes,
) -> (u16, String) {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    send(req.body(Full::new(body)).expect("request")).await
}

/// Sends a request as built, headers and all: its status and body.
pub async fn send(req: hyper::Request<Full<Bytes>>) -> (u16, String) {
    let url = req.uri().to_string();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(60), client.request(req))
        .await
        .unwrap_or_else(|_| panic!("{url}: no answer in 60 s"))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A plaintext gRPC channel to the store.
pub async fn grpc_channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
}

/// Percent-encodes a query parameter.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A series to remote-write: its labels and samples.
pub type WriteSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

/// A remote-write `WriteRequest`, hand-encoded in protobuf and snappy,
/// as any Prometheus-compatible agent sends it.
pub fn write_request(series: &[WriteSeries<'_>]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, tag: u64, bytes: &[u8]) {
        varint(out, tag << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut req = Vec::new();
    for (labels, samples) in series {
        let mut ts = Vec::new();
        for (n, v) in labels {
            let mut l = Vec::new();
            field(&mut l, 1, n.as_bytes());
            field(&mut l, 2, v.as_bytes());
            field(&mut ts, 1, &l);
        }
        for (t, v) in samples {
            let mut s = Vec::new();
            s.push(1 << 3 | 1);
            s.extend_from_slice(&v.to_bits().to_le_bytes());
            varint(&mut s, 2 << 3);
            varint(&mut s, *t as u64);
            field(&mut ts, 2, &s);
        }
        field(&mut req, 1, &ts);
    }
    snap::raw::Encoder::new()
        .compress_vec(&req)
        .expect("snappy")
}

/// Parses a Prometheus API JSON body.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Runs an instant query and returns the JSON answer.
pub async fn query(addr: SocketAddr, q: &str, t_ms: i64) -> serde_json::Value {
    let url = format!(
        "http://{addr}/api/v1/query?query={}&time={}",
        enc(q),
        t_ms as f64 / 1000.0
    );
    json(&get(&url).await.1)
}

/// A backend whose latency and status depend on the request path:
/// `(path, milliseconds, status)`, and `other` for any other path.
pub async fn path_backend(
    paths: &'static [(&'static str, u64, u16)],
    other: (u64, u16),
) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let (ms, status) = paths
                            .iter()
                            .find(|(p, _, _)| *p == req.uri().path())
                            .map_or(other, |&(_, ms, status)| (ms, status));
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}
