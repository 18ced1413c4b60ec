//! The remote-write stream every peer receives: Linkerd-style series of a
//! mesh (counters, histogram buckets, gauges) sampled every interval,
//! pre-encoded as snappy protobuf requests so the sender costs nothing
//! during the measurement.
//!
//! Series are split into shards, each sent in time order by one
//! connection, the way Prometheus' remote-write queue shards by series.

use bytes::Bytes;

/// Samples per request: Prometheus' `max_samples_per_send`.
const SAMPLES_PER_REQUEST: usize = 2000;

pub(crate) struct Stream {
    /// Per shard, the requests in send order.
    pub(crate) shards: Vec<Vec<Bytes>>,
    pub(crate) series: usize,
    pub(crate) samples: u64,
}

/// How a series moves per interval, given the interval's request count.
#[derive(Clone, Copy)]
enum Motion {
    /// A counter growing by `share` × requests (requests, responses,
    /// cumulative latency buckets).
    Requests(f64),
    /// A counter of failures: about 1 % of requests.
    Failures,
    /// Bytes read: about 1.2 kB per request.
    Bytes,
    /// Open connections: a small integer that moves now and then.
    Connections,
}

struct SeriesGen {
    labels: Vec<(String, String)>,
    /// Which endpoint (and so which request rate and scrape) it belongs to.
    endpoint: usize,
    motion: Motion,
    value: f64,
}

/// A small deterministic PRNG (xorshift), so every run sends the same
/// data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Cumulative share of requests at or under each latency bucket: a
/// typical mesh service, most answers in a few milliseconds.
fn bucket_share(le: f64) -> f64 {
    match le {
        x if x <= 1.0 => 0.05,
        x if x <= 2.0 => 0.15,
        x if x <= 3.0 => 0.30,
        x if x <= 5.0 => 0.52,
        x if x <= 10.0 => 0.80,
        x if x <= 20.0 => 0.90,
        x if x <= 50.0 => 0.97,
        x if x <= 100.0 => 0.99,
        x if x <= 500.0 => 0.997,
        x if x <= 1000.0 => 0.999,
        _ => 1.0,
    }
}

/// Series of endpoints (Deployment × authority × direction), 14 each.
fn series_set(count: usize) -> (Vec<SeriesGen>, usize) {
    let buckets = conduit_api::metrics::LATENCY_BUCKETS_MS;
    let mut out = Vec::with_capacity(count);
    let mut endpoint = 0usize;
    while out.len() < count {
        let deployment = format!("deploy-{:04}", endpoint / 40);
        let base = vec![
            ("namespace".to_string(), "bench".to_string()),
            ("deployment".to_string(), deployment.clone()),
            (
                "pod".to_string(),
                format!("{deployment}-{:x}", endpoint % 3),
            ),
            (
                "direction".to_string(),
                if endpoint.is_multiple_of(2) {
                    "inbound"
                } else {
                    "outbound"
                }
                .to_string(),
            ),
            (
                "authority".to_string(),
                format!("svc-{:02}.bench.svc.cluster.local:8080", endpoint % 40),
            ),
        ];
        let mut push = |name: &str, extra: Vec<(&str, String)>, motion: Motion| {
            let mut labels = base.clone();
            labels.push(("__name__".to_string(), name.to_string()));
            labels.extend(extra.into_iter().map(|(n, v)| (n.to_string(), v)));
            labels.sort();
            let value = match motion {
                Motion::Connections => 3.0,
                _ => 0.0,
            };
            out.push(SeriesGen {
                labels,
                endpoint,
                motion,
                value,
            });
        };
        push("request_total", vec![], Motion::Requests(1.0));
        push(
            "response_total",
            vec![
                ("classification", "success".into()),
                ("status_code", "200".into()),
            ],
            Motion::Requests(0.99),
        );
        push(
            "response_total",
            vec![
                ("classification", "failure".into()),
                ("status_code", "500".into()),
            ],
            Motion::Failures,
        );
        for le in buckets.iter().step_by(3) {
            push(
                "response_latency_ms_bucket",
                vec![("le", format!("{le}"))],
                Motion::Requests(bucket_share(*le)),
            );
        }
        push("tcp_read_bytes_total", vec![], Motion::Bytes);
        push("tcp_open_connections", vec![], Motion::Connections);
        endpoint += 1;
    }
    out.truncate(count);
    (out, endpoint)
}

/// `points` samples of `series` series every `interval_ms`, ending at
/// `end_ms`, split into `shards`.
pub(crate) fn generate(
    series: usize,
    points: usize,
    interval_ms: i64,
    end_ms: i64,
    shards: usize,
) -> Stream {
    let (mut set, endpoints) = series_set(series);
    let mut rng = Rng::new(7);
    // Requests per second of each endpoint: 1 to 100, log-uniform.
    let rates: Vec<f64> = (0..endpoints)
        .map(|_| 10f64.powf(rng.unit() * 2.0))
        .collect();
    let first_ms = end_ms - (points as i64 - 1) * interval_ms;
    let mut out = vec![Vec::new(); shards];
    let mut pending: Vec<Vec<u8>> = vec![Vec::new(); shards];
    let mut counts = vec![0usize; shards];
    let mut samples = 0u64;
    let mut requests = vec![0f64; endpoints];
    let mut scrape = vec![0i64; endpoints];
    for p in 0..points {
        for e in 0..endpoints {
            // Poisson-like noise around the endpoint's rate.
            let n = rates[e] * interval_ms as f64 / 1000.0;
            requests[e] = (n + (rng.unit() - 0.5) * 2.0 * n.sqrt()).max(0.0).round();
            // One timestamp per pod scrape: offset per pod, a few ms of
            // jitter now and then.
            let jitter = match rng.next() % 10 {
                0 => 1,
                1 => -1,
                2 => (rng.next() % 7) as i64 - 3,
                _ => 0,
            };
            scrape[e] = first_ms + p as i64 * interval_ms - ((e % 3) as i64 * 4_999) + jitter;
        }
        for (i, s) in set.iter_mut().enumerate() {
            let n = requests[s.endpoint];
            s.value += match s.motion {
                Motion::Requests(share) => (n * share).round(),
                Motion::Failures => (n * 0.01 * rng.unit() * 2.0).floor(),
                Motion::Bytes => n * 1200.0 + (rng.next() % 64) as f64,
                Motion::Connections => match rng.next() % 10 {
                    0 if s.value > 1.0 => -1.0,
                    1 => 1.0,
                    _ => 0.0,
                },
            };
            let shard = i % shards;
            encode_series(&mut pending[shard], &s.labels, scrape[s.endpoint], s.value);
            counts[shard] += 1;
            samples += 1;
            if counts[shard] == SAMPLES_PER_REQUEST {
                out[shard].push(finish(&mut pending[shard]));
                counts[shard] = 0;
            }
        }
    }
    for (shard, buf) in pending.iter_mut().enumerate() {
        if !buf.is_empty() {
            out[shard].push(finish(buf));
        }
    }
    Stream {
        shards: out,
        series,
        samples,
    }
}

fn finish(buf: &mut Vec<u8>) -> Bytes {
    let body = snap::raw::Encoder::new().compress_vec(buf).expect("snappy");
    buf.clear();
    Bytes::from(body)
}

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

/// Appends one `TimeSeries` with one sample to a `WriteRequest` body.
pub(crate) fn encode_series(req: &mut Vec<u8>, labels: &[(String, String)], t: i64, v: f64) {
    let mut ts = Vec::with_capacity(256);
    for (n, val) in labels {
        let mut l = Vec::with_capacity(n.len() + val.len() + 4);
        field(&mut l, 1, n.as_bytes());
        field(&mut l, 2, val.as_bytes());
        field(&mut ts, 1, &l);
    }
    let mut s = Vec::with_capacity(20);
    s.push(1 << 3 | 1);
    s.extend_from_slice(&v.to_bits().to_le_bytes());
    varint(&mut s, 2 << 3);
    varint(&mut s, t as u64);
    field(&mut ts, 2, &s);
    field(req, 1, &ts);
}
