//! Remote write out with several requests in flight (`--remote-write-shards`):
//! a real Prometheus, which refuses out-of-order samples, takes a backlog
//! sent by four shards at once whole; a receiver of the test's own that
//! answers slowly sees as many requests at once as there are shards and
//! never more; and a store killed while its shards wait for answers
//! resends, once restarted, exactly what was in flight: nothing it had
//! acknowledged, nothing lost.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use support::*;

/// Series written by [`write_backlog`], and samples of each.
const SERIES: usize = 40;
const POINTS: usize = 50;

/// Writes `POINTS` remote-write requests to the store, each one sample of
/// every one of `SERIES` series, a second apart from `t0`.
async fn write_backlog(store: SocketAddr, t0: i64) {
    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    for k in 0..POINTS as i64 {
        let series: Vec<WriteSeries<'_>> = ids
            .iter()
            .map(|id| {
                (
                    vec![("__name__", "sharded_total"), ("id", id.as_str())],
                    vec![(t0 + k * 1000, k as f64)],
                )
            })
            .collect();
        let (status, body) = post(
            &format!("http://{store}/api/v1/write"),
            "application/x-protobuf",
            write_request(&series),
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
}

/// The timestamps every series of [`write_backlog`] should arrive with, in
/// order.
fn expected(t0: i64) -> HashMap<String, Vec<i64>> {
    (0..SERIES)
        .map(|i| {
            (
                format!("__name__=sharded_total,id={i}"),
                (0..POINTS as i64).map(|k| t0 + k * 1000).collect(),
            )
        })
        .collect()
}

/// How what a receiver took differs from [`expected`]: samples taken
/// twice, missing, and series taken out of order; empty when none.
fn differences(taken: &HashMap<String, Vec<i64>>, want: &HashMap<String, Vec<i64>>) -> String {
    let (mut twice, mut missing, mut disordered) = (0, 0, 0);
    for (series, times) in want {
        let got = taken.get(series).map(Vec::as_slice).unwrap_or_default();
        let distinct: std::collections::BTreeSet<_> = got.iter().collect();
        twice += got.len() - distinct.len();
        missing += times.iter().filter(|t| !distinct.contains(t)).count();
        disordered += usize::from(!got.is_sorted());
    }
    let unknown = taken.keys().filter(|k| !want.contains_key(*k)).count();
    if (twice, missing, disordered, unknown) == (0, 0, 0, 0) {
        return String::new();
    }
    format!(
        "{twice} samples taken twice, {missing} missing, {disordered} series out of order, {unknown} unknown series"
    )
}

fn metric(m: &str, name: &str) -> u64 {
    m.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {m}"))
        .parse()
        .unwrap()
}

// What a receiver decodes: Prometheus' remote-write protobuf.
#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Sample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// What the test's receiver has seen.
#[derive(Default)]
struct Seen {
    in_flight: usize,
    max_in_flight: usize,
    /// Requests it holds unanswered for good.
    held: usize,
    /// Timestamps taken (answered 204), per series, in the order taken.
    taken: HashMap<String, Vec<i64>>,
    /// Samples of held requests, per series.
    held_samples: HashMap<String, Vec<i64>>,
}

/// A remote-write receiver of the test's own: it answers each request
/// after `delay`, the first `answers` of them; it holds every later one
/// without an answer.
struct Receiver {
    seen: Arc<Mutex<Seen>>,
    answers: Arc<AtomicUsize>,
}

impl Receiver {
    /// Listens now; takes connections once `open` is called, so what the
    /// store sends before waits for it.
    fn bind() -> (std::net::TcpListener, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    }

    fn open(listener: std::net::TcpListener, delay: Duration, answers: usize) -> Self {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let answers = Arc::new(AtomicUsize::new(answers));
        let (s, a) = (seen.clone(), answers.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, answers) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        serve(req, seen.clone(), answers.clone(), delay)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { seen, answers }
    }

    fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap())
    }
}

/// Counts a request in flight while it lives.
struct InFlight(Arc<Mutex<Seen>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

async fn serve(
    req: hyper::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Seen>>,
    answers: Arc<AtomicUsize>,
    delay: Duration,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let guard = {
        let mut s = seen.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        InFlight(seen.clone())
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let samples: Vec<(String, i64)> = WriteRequest::decode(raw.as_slice())
        .unwrap()
        .timeseries
        .into_iter()
        .flat_map(|ts| {
            let key = ts
                .labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            ts.samples
                .into_iter()
                .map(move |s| (key.clone(), s.timestamp))
        })
        .collect();
    let answer = answers
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if !answer {
        {
            let mut s = seen.lock().unwrap();
            s.held += 1;
            for (k, t) in samples {
                s.held_samples.entry(k).or_default().push(t);
            }
        }
        return std::future::pending().await;
    }
    tokio::time::sleep(delay).await;
    {
        let mut s = seen.lock().unwrap();
        for (k, t) in samples {
            s.taken.entry(k).or_default().push(t);
        }
    }
    drop(guard);
    Ok(hyper::Response::builder()
        .status(204)
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// Waits until `done`, failing with `what` after `secs`.
async fn wait_for(secs: u64, what: impl Fn() -> String, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(secs), "{}", what());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_gets_one_request_per_shard_at_once() {
    let mut took_by_shards = Vec::new();
    for shards in [1, 4] {
        let (listener, addr) = Receiver::bind();
        let store = start_store(|c| {
            c.remote_write_url = Some(format!("http://{addr}/api/v1/write"));
            c.remote_write_batch = 50;
            c.remote_write_shards = shards;
        })
        .await;
        let t0 = now_ms() - 120_000;
        write_backlog(store.http(), t0).await;
        let began = Instant::now();
        let rx = Receiver::open(listener, Duration::from_millis(100), usize::MAX);
        let want = expected(t0);
        wait_for(
            60,
            || format!("{shards} shards: not everything arrived"),
            || rx.seen(|s| s.taken.values().map(Vec::len).sum::<usize>()) == SERIES * POINTS,
        )
        .await;
        let took = began.elapsed();
        rx.seen(|s| {
            assert_eq!(
                s.taken, want,
                "{shards} shards: every sample once, in order"
            );
            assert_eq!(
                s.max_in_flight, shards as usize,
                "{shards} shards: requests in flight at once"
            );
        });
        took_by_shards.push(took);
        let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
        assert_eq!(
            metric(&m, "conduit_store_remote_write_sent_samples_total"),
            (SERIES * POINTS) as u64
        );
    }
    // Four requests at a time drain the backlog in about a quarter of
    // the time one does (the receiver takes 100 ms for each).
    assert!(
        took_by_shards[1] < took_by_shards[0] / 2,
        "1 shard: {:?}, 4 shards: {:?}",
        took_by_shards[0],
        took_by_shards[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_killed_mid_forwarding_resends_only_what_was_in_flight() {
    const SHARDS: usize = 4;
    const ANSWERED: usize = 8;
    let (listener, addr) = Receiver::bind();
    let url = format!("http://{addr}/api/v1/write");
    let args = [
        "--remote-write-url",
        &url,
        "--remote-write-batch",
        "50",
        "--remote-write-shards",
        "4",
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = StoreProcess::spawn(dir.path(), &args);
    let t0 = now_ms() - 120_000;
    write_backlog(store.http, t0).await;
    // The receiver takes 8 requests, then holds one of each shard.
    let rx = Receiver::open(listener, Duration::ZERO, ANSWERED);
    wait_for(
        60,
        || rx.seen(|s| format!("{} held, {} taken", s.held, s.taken.len())),
        || rx.seen(|s| s.held == SHARDS),
    )
    .await;
    // Each shard saves its cursor before it sends the next request, so
    // those held prove the acknowledgements before them are on disk.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (taken_before, in_flight): (usize, usize) = rx.seen(|s| {
        assert_eq!(s.held, SHARDS, "no request beyond one per shard");
        (
            s.taken.values().map(Vec::len).sum(),
            s.held_samples.values().map(Vec::len).sum(),
        )
    });
    assert!(taken_before > 0 && in_flight > 0);
    store.kill_9();

    rx.answers.store(usize::MAX, Ordering::SeqCst);
    let store = StoreProcess::spawn(dir.path(), &args);
    let want = expected(t0);
    wait_for(
        60,
        || {
            format!(
                "not everything arrived after the restart:\n{}",
                store.log.lock().unwrap()
            )
        },
        || rx.seen(|s| s.taken.values().map(Vec::len).sum::<usize>()) >= SERIES * POINTS,
    )
    .await;
    // Anything sent twice would arrive late, after the rest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    rx.seen(|s| {
        assert_eq!(
            differences(&s.taken, &want),
            "",
            "after the restart: nothing acknowledged sent again, nothing lost"
        );
        assert_eq!(s.taken, want);
    });
    let (_, m) = get(&format!("http://{}/metrics", store.http)).await;
    assert_eq!(
        metric(&m, "conduit_store_remote_write_sent_samples_total") as usize,
        SERIES * POINTS - taken_before,
        "the restarted store sent what was in flight ({in_flight} samples) and what was never sent, no more"
    );
}

const PROMETHEUS: &str = "/usr/bin/prometheus";

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_takes_a_backlog_sent_by_four_shards_in_order() {
    assert!(
        std::path::Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} not found: apt-get install prometheus"
    );
    let (listener, addr) = Receiver::bind();
    drop(listener);
    let store = start_store(|c| {
        c.remote_write_url = Some(format!("http://{addr}/api/v1/write"));
        c.remote_write_batch = 50;
        c.remote_write_shards = 4;
    })
    .await;
    // Prometheus is not up yet: the whole backlog waits in the WAL, and
    // each series' 50 samples go out in several requests.
    let t0 = now_ms() - 120_000;
    write_backlog(store.http(), t0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let _prometheus = Prometheus(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(["--web.enable-remote-write-receiver", "--log.level=warn"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let started = Instant::now();
    loop {
        let (_, m) = get(&format!("http://{}/metrics", store.http())).await;
        assert_eq!(
            metric(&m, "conduit_store_remote_write_failed_samples_total"),
            0,
            "Prometheus refused samples (out of order?):\n{m}"
        );
        if metric(&m, "conduit_store_remote_write_sent_samples_total") == (SERIES * POINTS) as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "remote write did not drain:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = query(
        addr,
        "count_over_time(sharded_total[5m])",
        t0 + POINTS as i64 * 1000,
    )
    .await;
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), SERIES, "{v}");
    for s in result {
        assert_eq!(s["value"][1], POINTS.to_string(), "{s}");
    }
}
