//! Entry points for the fuzz targets in `telemetry-store/fuzz`: the
//! store's decoders of bytes from peers and disk, and PromQL, driven the
//! way the store drives them, each returning what its target checks.
//! Built only with the `fuzzing` feature.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::db::{Db, DbOptions};
use crate::ingest::remote_write::{self, WalkLimits};
use crate::promql::{Engine, EngineOptions, QueryError, Stop};
use crate::query_text::{Syntax, TextLimits};

/// The request limits of a store with default flags.
const WALK_LIMITS: WalkLimits = WalkLimits {
    max_labels: 128,
    max_samples: 1_000_000,
    max_metadata: 10_000,
};

/// A remote-write body as `/api/v1/write` reads it: the samples and
/// label pairs found, or why it was refused.
pub fn remote_write(body: &[u8]) -> Result<(usize, usize), String> {
    let walked = remote_write::with_decompressed(body, |raw| {
        let (mut samples, mut labels) = (0, 0);
        let mut metadata = Vec::new();
        remote_write::walk(
            raw,
            &WALK_LIMITS,
            |l, s| {
                labels += l.len();
                samples += s.len();
            },
            &mut metadata,
        )
        .map(|()| (samples, labels))
    });
    walked.and_then(|r| r).map_err(|e| e.to_string())
}

/// A WAL segment as replay reads it: the records decoded, and the length
/// of the good prefix.
pub fn wal_segment(data: &[u8]) -> (usize, usize) {
    let mut records = 0;
    let (good, _) = crate::wal::read_frames(data, |_| records += 1);
    (records, good)
}

/// One WAL record payload, decoded: whether it was valid.
pub fn wal_record(payload: &[u8]) -> bool {
    crate::wal::record::decode(payload).is_ok()
}

/// A report's serialized histogram as ingest reads it: its count, the
/// count its window holds after the round trip through the window's
/// encoding, and the count of its `+Inf` bucket series (all three equal,
/// saturating).
pub fn histogram(hdr: &[u8]) -> Option<(u64, u64, u64)> {
    let h = conduit_api::histogram::decode(hdr).ok()?;
    let window = crate::model::Window::from_histogram(0, 1000, &h, 0.0, 0.001);
    let pairs = window
        .pairs()
        .expect("a window made from a histogram decodes");
    let in_window = pairs.iter().fold(0u64, |n, p| n.saturating_add(p.1));
    let buckets = conduit_api::histogram::bucket_counts(&h, 0.001);
    let inf = *buckets.last().expect("buckets end with +Inf");
    Some((h.len(), in_window, inf))
}

/// Whether `query` passes the text limits of a store with default flags.
pub fn query_text_accepted(query: &str) -> bool {
    text_limits().check(query, Syntax::PromQl).is_ok()
}

/// Evaluates `query` as an instant query on an empty store with default
/// limits and a `timeout`: its error kind, if any.
pub fn promql(query: &str, timeout: Duration) -> Result<(), &'static str> {
    let engine = engine();
    match engine.instant(query, 1_700_000_000_000, &Stop::after(timeout)) {
        Ok(_) => Ok(()),
        Err(QueryError::BadData(_)) => Err("bad_data"),
        Err(QueryError::Execution(_)) => Err("execution"),
        Err(QueryError::Timeout(_)) => Err("timeout"),
        Err(QueryError::Canceled(_)) => Err("canceled"),
        Err(QueryError::Internal(_)) => Err("internal"),
    }
}

fn text_limits() -> TextLimits {
    TextLimits {
        max_bytes: 65_536,
        max_depth: 128,
    }
}

/// One engine for all inputs: opening a database per input would be
/// most of the fuzzer's time.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        let db = Db::open(DbOptions {
            dir,
            block_range_ms: 7_200_000,
            retention_ms: 86_400_000,
            retention_bytes: u64::MAX,
            fsync: crate::FsyncPolicy::Never,
            max_series: 1000,
            raw_retention_ms: 0,
            wal_keep_max_bytes: 0,
            max_future_ms: 600_000,
        })
        .expect("an empty database opens");
        Engine::new(
            Arc::new(db),
            EngineOptions {
                lookback_ms: 300_000,
                max_samples: 1_000_000,
                timeout: Duration::from_secs(2),
                default_subquery_step_ms: 60_000,
                text: text_limits(),
                max_concurrency: 1,
            },
        )
    })
}

/// A valid block's files with `data` laid over one of them, as the store
/// opens a block it finds on disk: `data[0]` picks the file, `data[1..3]`
/// the offset (modulo its length), `data[3]`'s top bit cuts the file there
/// instead, and the rest is written over it. Opening and reading every
/// series must end in a block or in an error, never a panic; the series
/// and values read back, when it opens.
pub fn mutated_block(data: &[u8]) -> Result<(usize, usize), String> {
    let template = block_template();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("block");
    std::fs::create_dir(&path).map_err(|e| e.to_string())?;
    let pick = data.first().map_or(0, |&b| usize::from(b) % template.len());
    for (i, (name, bytes)) in template.iter().enumerate() {
        let mut bytes = bytes.clone();
        if i == pick && data.len() >= 4 && !bytes.is_empty() {
            mutate(&mut bytes, data);
        }
        std::fs::write(path.join(name), bytes).map_err(|e| e.to_string())?;
    }
    read_block(&path)
}

fn mutate(bytes: &mut Vec<u8>, data: &[u8]) {
    let at = usize::from(u16::from_le_bytes([data[1], data[2]])) % bytes.len();
    if data[3] & 0x80 != 0 {
        bytes.truncate(at);
    }
    for (i, b) in data[4..].iter().enumerate() {
        match bytes.get_mut(at + i) {
            Some(slot) => *slot = *b,
            None => bytes.push(*b),
        }
    }
}

fn read_block(path: &std::path::Path) -> Result<(usize, usize), String> {
    let block = crate::block::Block::open(path, &Arc::default()).map_err(|e| e.to_string())?;
    block.check_index().map_err(|e| e.to_string())?;
    let series = block.series().map_err(|e| e.to_string())?;
    let mut values = 0;
    for id in 0..series.len() {
        let (samples, windows) = block.data(id).map_err(|e| e.to_string())?;
        values += samples.len() + windows.len();
    }
    Ok((series.len(), values))
}

/// The files of one small block with float and histogram series, written
/// once by the store's own block writer.
fn block_template() -> &'static Vec<(String, Vec<u8>)> {
    static TEMPLATE: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = write_template(dir.path());
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
            .expect("the block was written")
            .map(|e| {
                let e = e.expect("a directory entry");
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).expect("a block file"))
            })
            .collect();
        files.sort();
        files
    })
}

fn write_template(parent: &std::path::Path) -> std::path::PathBuf {
    use crate::model::{Kind, Window};
    use conduit_api::Labels;
    let mut w = crate::block::writer::BlockWriter::create(parent, 0, 600_000, 1, 0)
        .expect("a block writer");
    let labels = |name: &str, pod: &str| {
        Labels::try_from_pairs([("__name__", name.to_string()), ("pod", pod.to_string())])
            .expect("valid labels")
    };
    let mut h = conduit_api::histogram::new_latency_histogram();
    for us in [900, 1_500, 40_000] {
        conduit_api::histogram::record_latency_us(&mut h, us);
    }
    let windows: Vec<Window> = (0..5)
        .map(|i| Window::from_histogram(i * 60_000, (i + 1) * 60_000, &h, 41.4, 0.001))
        .collect();
    w.add(&labels("request_total", "a"), Kind::Float, &samples(), &[])
        .expect("a float series");
    w.add(&labels("request_total", "b"), Kind::Float, &samples(), &[])
        .expect("a float series");
    w.add(
        &labels("response_latency_ms", "a"),
        Kind::Histogram,
        &[],
        &windows,
    )
    .expect("a histogram series");
    w.finish().expect("the block is finished").0
}

fn samples() -> Vec<crate::model::Sample> {
    (0..600).map(|t| (t * 1000, (t * t) as f64)).collect()
}

/// A tap history query as `/api/v1/tap/search` runs it, over a few
/// indexed events: whether it was accepted. Anything refused must be
/// refused as a bad query.
pub fn tap_query(query: &str) -> Result<usize, String> {
    match tap_index().search(query, 0, i64::MAX, 10, false) {
        Ok(events) => Ok(events.len()),
        Err(crate::tap::TapError::BadQuery(e)) => Err(e),
        Err(other) => panic!("{query:?} failed as more than a bad query: {other}"),
    }
}

fn tap_index() -> &'static crate::tap::TapIndex {
    use conduit_api::proto::tap::v1::TapEvent;
    static TAP: OnceLock<Arc<crate::tap::TapIndex>> = OnceLock::new();
    TAP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        let tap = crate::tap::TapIndex::open(crate::tap::TapOptions {
            dir,
            queue: 100,
            retention_ms: i64::MAX / 2,
            max_bytes: u64::MAX,
            max_results: 10_000,
            max_followers: 1,
            follow_rate: 100,
            max_future_ms: 600_000,
            text: TextLimits {
                max_bytes: 4096,
                max_depth: 32,
            },
        })
        .expect("a tap index opens");
        let now = crate::time::now_ms();
        let events: Vec<TapEvent> = (0..20)
            .map(|i| TapEvent {
                request_id: format!("r{i}"),
                method: "GET".into(),
                authority: format!("web{i}.demo:80"),
                path: format!("/api/vote/{i}"),
                http_status: 200 + i,
                request_start_unix_us: (now - 1000 + i64::from(i)) * 1000,
                ..TapEvent::default()
            })
            .collect();
        tap.offer(events);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tap.stats.indexed.load(std::sync::atomic::Ordering::Relaxed) < 20 {
            assert!(std::time::Instant::now() < deadline, "indexing stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
        tap
    })
}

/// An HTTP API time parameter (`time=`, `start=`, `end=`: Unix seconds or
/// RFC 3339) and duration parameter (`step=`, `timeout=`: seconds or a
/// Prometheus duration), as the store reads them.
pub fn api_time(text: &str) -> (Option<i64>, Option<i64>) {
    (
        crate::time::parse_timestamp_ms(text).ok(),
        crate::time::parse_api_duration_ms(text).ok(),
    )
}
