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
