//! The HTTP listener: accepts connections up to a cap and serves each with
//! hyper (HTTP/1.1 and HTTP/2), with the timeouts a server facing the
//! cluster needs.
//!
//! `axum::serve` builds hyper without a timer, and hyper then silently
//! skips its header read timeout: a client sending a header byte now and
//! then held a connection, and a task, forever. Here hyper gets tokio's
//! timer, and a watchdog per connection closes what hyper cannot see:
//!
//! - a connection that has not delivered a first request within the header
//!   timeout (a slow HTTP/2 preface or HEADERS frame, which hyper's HTTP/1
//!   timer does not cover);
//! - a connection on which no byte moved either way for the idle timeout:
//!   closed gracefully (an answer being computed is still sent), and
//!   dropped if still nothing moves for as long again.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

/// Timeouts and caps of the HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Streams one HTTP/2 connection may have open.
    pub max_streams: u32,
}

/// How long connections get to finish their answers once the store stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stopped` turns true.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let builder = Arc::new(builder(&limits));
    let mut connections = JoinSet::new();
    let mut full_since_warned: Option<Instant> = None;
    loop {
        if slots.available_permits() == 0
            && full_since_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            tracing::warn!(
                max = limits.max_connections,
                "the HTTP server is at its connection limit (--http-max-connections): new connections wait to be accepted"
            );
            full_since_warned = Some(Instant::now());
        }
        let slot = tokio::select! {
            () = stopping(&mut stopped) => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let tcp = tokio::select! {
            () = stopping(&mut stopped) => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, say: the next accept may work.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(
            builder.clone(),
            tcp,
            router.clone(),
            limits,
            stopped.clone(),
            slot,
        ));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, finished)
        .await
        .is_err()
    {
        tracing::info!("closing HTTP connections still streaming after the shutdown grace period");
    }
    Ok(())
}

/// Resolves once the store is stopping.
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

fn builder(limits: &HttpLimits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // hyper restarts it while a kept-alive connection waits for its
        // next request: it is also the HTTP/1 idle timeout.
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(64 << 10)
        // No pings: they would count as activity and keep an idle
        // connection from ever timing out; the idle timeout ends dead
        // peers' connections as well.
        .keep_alive_interval(None)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024));
    b
}

/// What a connection did, for its watchdog.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` when a byte last moved.
    last_ms: AtomicU64,
    requested: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            requested: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let since_open = self.opened.elapsed();
        since_open.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// What the watchdog does with a connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Stop taking requests; finish what is in flight.
    Close,
    Drop,
}

fn verdict(a: &Activity, limits: &HttpLimits) -> Verdict {
    if !a.requested.load(Ordering::Relaxed) && a.opened.elapsed() > limits.header_timeout {
        return Verdict::Drop;
    }
    let idle = a.idle();
    if idle > limits.idle_timeout * 2 {
        Verdict::Drop
    } else if idle > limits.idle_timeout {
        Verdict::Close
    } else {
        Verdict::Keep
    }
}

async fn connection(
    builder: Arc<Builder<TokioExecutor>>,
    tcp: TcpStream,
    router: Router,
    limits: HttpLimits,
    mut stopped: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: tcp,
        activity: activity.clone(),
    });
    let service = FirstRequest {
        inner: TowerToHyperService::new(router),
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let every = (limits.header_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(every);
    let mut closing = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            () = stopping(&mut stopped), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick() => match verdict(&activity, &limits) {
                Verdict::Keep => {}
                Verdict::Close if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                Verdict::Close => {}
                Verdict::Drop => {
                    tracing::debug!("dropping a stalled HTTP connection");
                    return;
                }
            },
        }
    }
}

/// The router, noting that a connection delivered a request.
#[derive(Clone)]
struct FirstRequest<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for FirstRequest<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        self.activity.requested.store(true, Ordering::Relaxed);
        self.inner.call(req)
    }
}

/// A connection's socket, noting when bytes move.
struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_drops_silent_connections_and_closes_idle_ones() {
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(200),
            max_connections: 1,
            max_streams: 1,
        };
        let a = Activity::new();
        assert_eq!(verdict(&a, &limits), Verdict::Keep);
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(verdict(&a, &limits), Verdict::Drop, "no request in time");
        a.requested.store(true, Ordering::Relaxed);
        a.touch();
        assert_eq!(verdict(&a, &limits), Verdict::Keep);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(verdict(&a, &limits), Verdict::Close, "idle");
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(verdict(&a, &limits), Verdict::Drop, "idle twice over");
    }
}
