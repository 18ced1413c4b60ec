//! Load generators: a fixed rate (open loop, for latency) and as fast as
//! possible (closed loop, for throughput), both bounded in requests and
//! time, over HTTP/1.1 keep-alive connections.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

/// Where to send requests and as which authority.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
}

pub(crate) async fn connect(t: &Target) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(t.addr)
        .await
        .map_err(|e| format!("{}: connect {}: {e}", t.name, t.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{}: handshake: {e}", t.name))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One request; returns the body length.
pub(crate) async fn request(
    sender: &mut SendRequest<Empty<Bytes>>,
    t: &Target,
) -> Result<usize, String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let req = http::Request::get("/bench")
        .header(http::header::HOST, &t.host)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let rsp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{}: {e}", t.name))?;
    if !rsp.status().is_success() {
        return Err(format!("{}: status {}", t.name, rsp.status()));
    }
    let body = rsp.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(body.to_bytes().len())
}

/// Latency in µs of `rate` requests per second for `duration`, spread over
/// `conns` connections. Latency is measured from the moment each request
/// is sent (the timer only paces the sends).
pub(crate) async fn fixed_rate(
    t: &Target,
    rate: u32,
    duration: Duration,
    conns: usize,
) -> Result<Histogram<u64>, String> {
    let per_conn = duration.as_secs_f64() * f64::from(rate) / conns as f64;
    let requests = per_conn.round() as u64;
    let period = Duration::from_secs_f64(conns as f64 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for i in 0..conns {
        let t = t.clone();
        let mut sender = connect(&t).await?;
        let offset = period.mul_f64(i as f64 / conns as f64);
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
            let mut ticker = tokio::time::interval_at(start + offset, period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            for _ in 0..requests {
                ticker.tick().await;
                let sent = std::time::Instant::now();
                let len = request(&mut sender, &t).await?;
                if len != super::BODY_BYTES {
                    return Err(format!("{}: body of {len} bytes", t.name));
                }
                h.saturating_record(sent.elapsed().as_micros() as u64);
            }
            Ok::<_, String>(h)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    for task in tasks {
        let h = task.await.map_err(|e| e.to_string())??;
        all.add(h).map_err(|e| format!("{e:?}"))?;
    }
    Ok(all)
}

/// Completed requests per second with `conns` connections sending back to
/// back for `duration`.
pub(crate) async fn max_rate(t: &Target, duration: Duration, conns: usize) -> Result<f64, String> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let t = t.clone();
        let mut sender = connect(&t).await?;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                request(&mut sender, &t).await?;
                n += 1;
            }
            Ok::<_, String>(n)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.map_err(|e| e.to_string())??;
    }
    Ok(total as f64 / duration.as_secs_f64())
}
