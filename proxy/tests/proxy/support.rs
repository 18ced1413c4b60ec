//! Real peers for the proxy under test: HTTP upstreams (HTTP/1 and HTTP/2),
//! clients, a Prometheus text reader, and a way to wait for asynchronous
//! effects without sleeping blindly.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use conduit_proxy::Proxy;
use conduit_proxy::config::Config;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Generous: the machine is shared and loaded.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
}

/// Parses flags exactly as the binary does.
pub(crate) fn config(extra: &[&str]) -> Config {
    let defaults = [
        ("--inbound-listen", "127.0.0.1:0"),
        ("--outbound-listen", "127.0.0.1:0"),
        ("--admin-listen", "127.0.0.1:0"),
        ("--tap-listen", "127.0.0.1:0"),
        ("--namespace", "test"),
        ("--deployment", "web"),
        ("--pod", "web-0"),
        ("--tap-sample-rate", "0"),
    ];
    let mut args = vec!["conduit-proxy"];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    Args::try_parse_from(args)
        .unwrap_or_else(|e| panic!("invalid test flags: {e}"))
        .config
}

/// A proxy on loopback, every listener on an ephemeral port.
pub(crate) async fn proxy(extra: &[&str]) -> Proxy {
    Proxy::start(config(extra)).await.expect("proxy starts")
}

pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>
        + Send
        + Sync,
>;

/// An HTTP server (HTTP/1 and HTTP/2 prior knowledge) that counts requests.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub(crate) fn hits(&self) -> usize {
        self.hits.load(SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn upstream<F, Fut>(handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    upstream_on(listener, handler)
}

pub(crate) fn upstream_on<F, Fut>(listener: TcpListener, handler: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    counter.fetch_add(1, SeqCst);
                    let rsp = handler(req);
                    async move { Ok::<_, Infallible>(rsp.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream { addr, hits, task }
}

pub(crate) fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body.into()));
    *rsp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    rsp
}

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// HTTP/1.1 with keep-alive.
pub(crate) fn http1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// HTTP/2 with prior knowledge.
pub(crate) fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A GET through `proxy` (the URI's authority is the proxy; `host` is the
/// request's authority).
pub(crate) async fn get(
    client: &HttpClient,
    proxy: SocketAddr,
    host: &str,
    path: &str,
) -> (u16, http::HeaderMap, Bytes) {
    let req = Request::get(format!("http://{proxy}{path}"))
        .header(http::header::HOST, host)
        .body(Full::default())
        .unwrap();
    send(client, req).await
}

pub(crate) async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
) -> (u16, http::HeaderMap, Bytes) {
    let rsp = tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = rsp.status().as_u16();
    let (parts, body) = rsp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (status, parts.headers, body)
}

/// `/metrics` of a proxy's admin server.
pub(crate) async fn metrics(admin: SocketAddr) -> Metrics {
    let (status, _, body) = get(&http1_client(), admin, "admin", "/metrics").await;
    assert_eq!(status, 200);
    Metrics::parse(std::str::from_utf8(&body).expect("UTF-8 metrics"))
}

/// Prometheus text, parsed into samples.
pub(crate) struct Metrics {
    pub(crate) text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub(crate) fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unparseable sample {l:?}")))
            .collect();
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// The sum of every series of `name` that has all of `labels`.
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|(_, v)| v).sum()
    }

    /// The series of `name` that have all of `labels`.
    pub(crate) fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = (&'a BTreeMap<String, String>, f64)> + 'a {
        self.samples
            .iter()
            .filter(move |(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, l, v)| (l, *v))
    }
}

fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_string(), BTreeMap::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next()? != '"' {
            return None;
        }
        let mut val = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    c => val.push(c),
                },
                '"' => break,
                c => val.push(c),
            }
        }
        labels.insert(key, val);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name.to_string(), labels, value))
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// [`WAIT`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until `/metrics` satisfies `check`, and returns that scrape.
pub(crate) async fn metrics_when(
    admin: SocketAddr,
    what: &str,
    check: impl Fn(&Metrics) -> bool,
) -> Metrics {
    eventually(what, || async {
        let m = metrics(admin).await;
        check(&m).then_some(m)
    })
    .await
}

/// A port nothing listens on (bound, then released).
pub(crate) async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}
