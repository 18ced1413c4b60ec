//! Small HTTP servers with known behaviour (delay, failure share) to put
//! behind proxies, and a bounded load generator to send them traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Clone, Debug, Default)]
pub struct UpstreamSpec {
    /// Added before every response.
    pub delay: Duration,
    /// Every `fail_every`-th request (1-based) gets a 500; 0 never fails.
    /// Deterministic, so a test knows the exact success rate it sent.
    pub fail_every: u64,
}

/// An HTTP/1.1 + HTTP/2 server on a free loopback port, running on its own
/// thread until dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub served: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start(spec: UpstreamSpec) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("upstream addr");
        let served = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let count = served.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(serve(listener, spec, count, stopped));
        });
        Self {
            addr,
            served,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = self.thread.take().map(std::thread::JoinHandle::join);
    }
}

async fn serve(
    listener: std::net::TcpListener,
    spec: UpstreamSpec,
    served: Arc<AtomicU64>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let (spec, served) = (spec.clone(), served.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (spec, served) = (spec.clone(), served.clone());
                async move {
                    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                    let _ = req.into_body().collect().await;
                    tokio::time::sleep(spec.delay).await;
                    let status = if spec.fail_every > 0 && n % spec.fail_every == 0 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from_static(b"ok\n")))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Sends `GET path` with `Host: authority` to `target` (e.g. a proxy's
/// outbound listener) at `rps` for `duration`, over `concurrency` HTTP/1.1
/// connections. Returns (responses by status, elapsed). Bounded in count
/// and time; a request that fails to get any response counts as status 0.
pub fn drive_load(
    target: SocketAddr,
    authority: &str,
    paths: &[&str],
    rps: u32,
    duration: Duration,
) -> (std::collections::BTreeMap<u16, u64>, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let authority = authority.to_string();
    let paths: Vec<String> = paths.iter().map(ToString::to_string).collect();
    rt.block_on(async move {
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build_http::<Empty<Bytes>>();
        let total = (f64::from(rps) * duration.as_secs_f64()).round() as u64;
        let interval = Duration::from_secs_f64(1.0 / f64::from(rps.max(1)));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..total {
            let at = start + interval.mul_f64(i as f64);
            tokio::time::sleep_until(at.into()).await;
            let path = &paths[(i as usize) % paths.len()];
            let req = Request::get(format!("http://{target}{path}"))
                .header(hyper::header::HOST, authority.as_str())
                .body(Empty::new())
                .expect("request");
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                    Ok(Ok(resp)) => {
                        let status = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
                        status
                    }
                    _ => 0,
                }
            }));
        }
        let mut by_status = std::collections::BTreeMap::new();
        for t in tasks {
            *by_status.entry(t.await.unwrap_or(0)).or_insert(0) += 1;
        }
        (by_status, start.elapsed())
    })
}
