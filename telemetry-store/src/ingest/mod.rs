//! Ingest: turns the proxies' telemetry reports and Prometheus
//! remote-write requests into batches for the database.
//!
//! A proxy's latency histogram arrives once per interval; the store keeps
//! it as a histogram window (for exact quantiles) and also advances
//! cumulative `<metric>_bucket{le=…}`, `_sum` and `_count` counters, so
//! `histogram_quantile()` and Linkerd's dashboards work unchanged.

pub(crate) mod attribution;
mod gather;
mod metadata;
pub(crate) mod remote_write;
pub(crate) mod telemetry;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use conduit_api::Labels;
use conduit_api::histogram::bucket_counts;
use conduit_api::labels::is_valid_name;
use conduit_api::metrics::{LATENCY_BUCKETS_MS, family};
use hdrhistogram::Histogram;

use crate::db::{Batch, Db, Outcome};
use crate::exemplars::Exemplars;
use crate::head::{MemSeries, labels};
use crate::model::{Kind, Window};
use crate::promql::format_float;
use crate::series::{LabelsExt, METRIC_NAME};
use gather::Gathered;

/// Counters of what arrived, for `/metrics` and `Status`.
#[derive(Default)]
pub(crate) struct IngestStats {
    pub(crate) reports: AtomicU64,
    pub(crate) reports_refused_time: AtomicU64,
    /// Reports a proxy sent again that were already stored.
    pub(crate) reports_repeated: AtomicU64,
    /// Reports proxies dropped before they reached this store.
    pub(crate) reports_missed: AtomicU64,
    pub(crate) report_series_cut: AtomicU64,
    pub(crate) proxy_series_refused: AtomicU64,
    pub(crate) metadata_evicted: AtomicU64,
    pub(crate) report_series_rejected: AtomicU64,
    pub(crate) remote_write_requests: AtomicU64,
    pub(crate) remote_write_rejected: AtomicU64,
    pub(crate) invalid_series: AtomicU64,
}

use metadata::MetadataTable;
pub(crate) use metadata::MetricMeta;

/// What peers may send, per series and per request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IngestLimits {
    pub(crate) max_labels_per_series: usize,
    pub(crate) max_samples_per_write: usize,
    pub(crate) max_metadata: usize,
    pub(crate) max_series_per_report: usize,
    pub(crate) max_series_per_proxy: usize,
    pub(crate) exemplars_per_series: usize,
    pub(crate) exemplars_max_series: usize,
}

pub(crate) struct Ingester {
    pub(crate) db: Arc<Db>,
    pub(crate) limits: IngestLimits,
    accumulators: Mutex<HashMap<u64, Accumulator>>,
    metadata: Mutex<MetadataTable>,
    pub(crate) stats: IngestStats,
    /// Where the reports' tap events go, when the tap history is on.
    pub(crate) tap: Option<Arc<crate::tap::TapIndex>>,
    /// Which workloads each identity may report for.
    pub(crate) attribution: Arc<attribution::Attribution>,
    /// The reports' exemplars, for `/api/v1/query_exemplars`.
    pub(crate) exemplars: Arc<Exemplars>,
}

/// The cumulative series a histogram series feeds.
struct Accumulator {
    buckets: Vec<(Arc<MemSeries>, f64)>,
    sum: (Arc<MemSeries>, f64),
    count: (Arc<MemSeries>, f64),
}

/// Why a series of a write was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeriesError {
    #[error("invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    LabelName(String),
    #[error("label {0:?} has a value that is not valid UTF-8")]
    LabelValue(String),
    #[error("a label name or value holds byte 0xfe or 0xff, which is not valid UTF-8")]
    NotUtf8,
    #[error("label {0:?} appears more than once")]
    Duplicate(String),
    #[error("series without a metric name (__name__)")]
    NoName,
    #[error("invalid metric name {0:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    MetricName(String),
    #[error(transparent)]
    Limit(#[from] crate::head::SeriesLimit),
    #[error("invalid histogram: {0}")]
    Histogram(String),
    #[error("label {0:?} names another workload or identity than the reporting proxy's own")]
    Foreign(String),
    #[error("series has more than {0} labels (--max-labels-per-series)")]
    TooManyLabels(usize),
    #[error(
        "the proxy already writes {0} series (--max-series-per-proxy): its new series are refused; reduce its label cardinality or raise the limit"
    )]
    ProxyLimit(usize),
}

/// A histogram's `value_scale`, checked before any of its series exists.
pub(crate) fn check_scale(scale: f64) -> Result<(), SeriesError> {
    if scale.is_finite() && scale > 0.0 {
        return Ok(());
    }
    Err(SeriesError::Histogram(format!(
        "value_scale must be positive, got {scale}"
    )))
}

/// Why a whole remote-write request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error(transparent)]
    Decode(#[from] remote_write::DecodeError),
    #[error("cannot write the WAL: {0}")]
    Io(#[from] std::io::Error),
}

/// What became of a write or a report.
#[derive(Debug, Default)]
pub(crate) struct WriteSummary {
    pub(crate) outcome: Outcome,
    pub(crate) rejected_series: u64,
    pub(crate) first_error: Option<String>,
}

impl WriteSummary {
    fn reject(&mut self, e: &SeriesError) {
        self.rejected_series += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

pub(crate) fn valid_metric_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

impl Ingester {
    pub(crate) fn new(
        db: Arc<Db>,
        tap: Option<Arc<crate::tap::TapIndex>>,
        limits: IngestLimits,
    ) -> Self {
        let own = family::ALL.iter().map(|f| {
            let meta = MetricMeta {
                kind: f.kind.as_str().to_string(),
                help: f.help.to_string(),
                unit: String::new(),
            };
            (f.name.to_string(), meta)
        });
        let metadata = MetadataTable::new(limits.max_metadata, own);
        Self {
            db,
            limits,
            accumulators: Mutex::default(),
            metadata: Mutex::new(metadata),
            stats: IngestStats::default(),
            exemplars: Arc::new(Exemplars::new(
                limits.exemplars_per_series,
                limits.exemplars_max_series,
            )),
            tap,
            attribution: Arc::default(),
        }
    }

    pub(crate) fn metadata(&self) -> BTreeMap<String, MetricMeta> {
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
    }

    /// Forgets the metadata and accumulators of what was not seen since
    /// `before_ms`, and the accumulators of histograms gone from the head
    /// (each holds its bucket series, which would stay in memory).
    pub(crate) fn forget_before(&self, before_ms: i64) {
        self.metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget_before(before_ms);
        self.accumulators
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r, _| self.db.head.get(*r).is_some());
    }

    /// Stores a remote-write request (decompressed protobuf): every valid
    /// series' samples; invalid or refused series are counted and the
    /// first reason reported. A malformed body stores nothing.
    pub(crate) fn remote_write(&self, raw: &[u8]) -> Result<WriteSummary, WriteError> {
        self.stats
            .remote_write_requests
            .fetch_add(1, Ordering::Relaxed);
        let mut summary = WriteSummary::default();
        let mut metadata = Vec::new();
        let batch = gather::with_gathered(|gathered| {
            self.gather(raw, gathered, &mut metadata, &mut summary)?;
            Ok::<_, WriteError>(self.resolve(gathered, &mut summary))
        })
        .inspect_err(|_| {
            self.stats
                .remote_write_rejected
                .fetch_add(1, Ordering::Relaxed);
        })?;
        self.record_metadata(metadata);
        summary.outcome = self.db.commit(&batch)?;
        self.stats
            .invalid_series
            .fetch_add(summary.rejected_series, Ordering::Relaxed);
        if summary.rejected_series > 0 || summary.outcome.rejected() > 0 {
            self.stats
                .remote_write_rejected
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(summary)
    }

    /// Collects the request's series with samples, labels sorted by name
    /// and without empty values (as Prometheus drops them).
    fn gather(
        &self,
        raw: &[u8],
        gathered: &mut Gathered,
        metadata: &mut Vec<remote_write::MetricMetadata>,
        summary: &mut WriteSummary,
    ) -> Result<(), remote_write::DecodeError> {
        let mut sorted: Vec<(&[u8], &[u8])> = Vec::with_capacity(16);
        let limits = remote_write::WalkLimits {
            max_labels: self.limits.max_labels_per_series,
            max_samples: self.limits.max_samples_per_write,
            max_metadata: self.limits.max_metadata,
        };
        remote_write::walk(
            raw,
            &limits,
            |labels, samples| {
                if samples.is_empty() {
                    return;
                }
                sorted.clear();
                sorted.extend(labels.iter().filter(|l| !l.1.is_empty()));
                if !sorted.is_sorted_by(|a, b| a.0 < b.0) {
                    sorted.sort_by(|a, b| a.0.cmp(b.0));
                }
                if !gathered.push(sorted.iter().copied(), samples) {
                    summary.reject(&SeriesError::NotUtf8);
                }
            },
            metadata,
        )
    }

    /// The batch of gathered series: known ones found all at once, new
    /// ones validated and created.
    fn resolve(&self, gathered: &Gathered, summary: &mut WriteSummary) -> Batch {
        let keys = gathered.keys();
        let mut found = Vec::new();
        self.db.head.find_many(Kind::Float, &keys, &mut found);
        let mut batch = Batch::default();
        batch.floats.reserve(gathered.sample_count());
        for ((key, series), samples) in keys.iter().zip(found).zip(gathered.samples()) {
            let series = match series.map_or_else(|| self.create(key.encoded), Ok) {
                Ok(s) => s,
                Err(e) => {
                    summary.reject(&e);
                    continue;
                }
            };
            batch
                .floats
                .extend(samples.iter().map(|&x| (series.clone(), x)));
        }
        batch
    }

    /// Validates a new series' labels (in compact form) and creates it.
    fn create(&self, encoded: &[u8]) -> Result<Arc<MemSeries>, SeriesError> {
        let mut owned = Vec::new();
        for (n, v) in labels::pairs(encoded) {
            let name = std::str::from_utf8(n)
                .map_err(|_| SeriesError::LabelName(String::from_utf8_lossy(n).into()))?;
            if !is_valid_name(name) {
                return Err(SeriesError::LabelName(name.to_string()));
            }
            let value =
                std::str::from_utf8(v).map_err(|_| SeriesError::LabelValue(name.to_string()))?;
            owned.push((name, value));
        }
        let labels = Labels::try_from_pairs(owned).map_err(|e| match e {
            conduit_api::labels::LabelError::InvalidName(n) => SeriesError::LabelName(n),
            conduit_api::labels::LabelError::Duplicate(n) => SeriesError::Duplicate(n),
        })?;
        let name = labels.metric_name().ok_or(SeriesError::NoName)?;
        if !valid_metric_name(name) {
            return Err(SeriesError::MetricName(name.to_string()));
        }
        Ok(self.db.series(labels, Kind::Float)?)
    }

    fn record_metadata(&self, metadata: Vec<remote_write::MetricMetadata>) {
        if metadata.is_empty() {
            return;
        }
        let evicted = self
            .metadata
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(metadata, crate::time::now_ms());
        self.stats
            .metadata_evicted
            .fetch_add(evicted, Ordering::Relaxed);
    }

    /// Adds one histogram report to `batch`: the window, and the next
    /// values of its cumulative bucket, sum and count series.
    fn histogram(
        &self,
        hist: Arc<MemSeries>,
        labels: Labels,
        window: Window,
        h: &Histogram<u64>,
        batch: &mut Batch,
    ) -> Result<(), SeriesError> {
        let (scale, sum, end_ms) = (window.scale, window.sum, window.end_ms);
        let name = labels.metric_name().ok_or(SeriesError::NoName)?.to_string();
        if hist.lock().check_window(&window).is_err() {
            // A repeated or late interval: the window check in the commit
            // counts it; the counters must not advance twice.
            batch.windows.push((hist, window));
            return Ok(());
        }
        let mut accs = self.accumulators.lock().unwrap_or_else(|e| e.into_inner());
        let acc = match accs.entry(hist.r) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(self.accumulator(&name, &labels)?)
            }
        };
        let counts = bucket_counts(h, scale);
        for ((series, value), c) in acc.buckets.iter_mut().zip(counts) {
            *value += c as f64;
            batch.floats.push((series.clone(), (end_ms, *value)));
        }
        acc.sum.1 += sum;
        acc.count.1 += h.len() as f64;
        batch.floats.push((acc.sum.0.clone(), (end_ms, acc.sum.1)));
        batch
            .floats
            .push((acc.count.0.clone(), (end_ms, acc.count.1)));
        batch.windows.push((hist, window));
        Ok(())
    }

    /// The cumulative series of a histogram, continuing from their last
    /// values in the head (so a restart does not look like a reset).
    fn accumulator(&self, name: &str, labels: &Labels) -> Result<Accumulator, SeriesError> {
        let base = labels.without_metric_name();
        let make = |metric: String,
                    extra: Option<(&str, String)>|
         -> Result<(Arc<MemSeries>, f64), SeriesError> {
            let mut l = base.with(METRIC_NAME, &metric);
            if let Some((n, v)) = extra {
                l.insert(n, v);
            }
            let s = self.db.series(l, Kind::Float)?;
            let last = s.lock().last().map_or(0.0, |(_, v)| v);
            Ok((s, last))
        };
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_MS.len() + 1);
        for &le in LATENCY_BUCKETS_MS.iter().chain([f64::INFINITY].iter()) {
            buckets.push(make(
                format!("{name}_bucket"),
                Some(("le", format_float(le))),
            )?);
        }
        Ok(Accumulator {
            buckets,
            sum: make(format!("{name}_sum"), None)?,
            count: make(format!("{name}_count"), None)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request with a known series (labels out of order, samples in
    /// two entries), a new series sent twice, an empty label and a value
    /// that is not UTF-8: each valid series gets all its samples, in order,
    /// and only the invalid one is refused.
    #[test]
    fn a_request_stores_every_valid_series() {
        use crate::db::DbOptions;
        use prost::Message;
        use remote_write::{Label, Sample, TimeSeries, WriteRequest};

        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(DbOptions {
            dir: dir.path().into(),
            block_range_ms: 7_200_000,
            retention_ms: 86_400_000,
            retention_bytes: u64::MAX,
            fsync: crate::FsyncPolicy::Never,
            max_series: 100,
            raw_retention_ms: 0,
            wal_keep_max_bytes: 0,
            max_future_ms: 600_000,
        })
        .unwrap();
        let ingester = Ingester::new(
            Arc::new(db),
            None,
            IngestLimits {
                max_labels_per_series: 10,
                max_samples_per_write: 100,
                max_metadata: 10,
                max_series_per_report: 100,
                max_series_per_proxy: 100,
                exemplars_per_series: 0,
                exemplars_max_series: 1,
            },
        );
        let series = |labels: &[(&str, &[u8])], samples: &[(i64, f64)]| TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.as_bytes().to_vec().into(),
                    value: v.to_vec().into(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        };
        let write = |timeseries| {
            let body = WriteRequest {
                timeseries,
                metadata: vec![],
            };
            ingester.remote_write(&body.encode_to_vec()).unwrap()
        };
        write(vec![series(
            &[("__name__", b"up"), ("job", b"a")],
            &[(500, 0.0)],
        )]);
        let summary = write(vec![
            series(&[("job", b"a"), ("__name__", b"up")], &[(1000, 1.0)]),
            series(&[("__name__", b"new"), ("empty", b"")], &[(1000, 2.0)]),
            series(&[("__name__", b"bad"), ("v", b"\xff")], &[(1000, 3.0)]),
            series(&[("__name__", b"new")], &[(2000, 4.0)]),
            series(
                &[("__name__", b"up"), ("job", b"a")],
                &[(2000, 5.0), (3000, 6.0)],
            ),
        ]);
        assert_eq!(summary.rejected_series, 1);
        assert!(summary.first_error.unwrap().contains("UTF-8"));
        assert_eq!(summary.outcome.accepted, 5);
        let mut stored: Vec<(String, Vec<(i64, f64)>)> = ingester
            .db
            .head
            .all()
            .iter()
            .map(|s| {
                let mut samples = Vec::new();
                s.lock().samples(i64::MIN, i64::MAX, &mut samples).unwrap();
                (s.labels.labels().to_string(), samples)
            })
            .collect();
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            stored,
            [
                (
                    r#"{__name__="new"}"#.to_string(),
                    vec![(1000, 2.0), (2000, 4.0)]
                ),
                (
                    r#"{__name__="up", job="a"}"#.to_string(),
                    vec![(500, 0.0), (1000, 1.0), (2000, 5.0), (3000, 6.0)]
                ),
            ]
        );
    }

    #[test]
    fn metric_names() {
        assert!(valid_metric_name("request_total"));
        assert!(valid_metric_name("a:b_c"));
        assert!(!valid_metric_name("1a"));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(""));
    }
}
