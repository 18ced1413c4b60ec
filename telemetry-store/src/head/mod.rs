//! The head: the most recent data, in memory, compressed.
//!
//! Series are found by label hash in lock stripes so concurrent ingest
//! streams rarely contend; each series has its own lock for its chunks.
//! Float series and histogram-window series have separate indexes, so
//! PromQL only ever sees float series (histograms are served to it as
//! `_bucket`/`_sum`/`_count` float series written at ingest).

mod bits;
pub(crate) mod chunk;
pub(crate) mod chunk_files;
pub(crate) mod gorilla;
pub(crate) mod labels;
pub(crate) mod series;
pub(crate) mod varbit;
pub(crate) mod window;

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use conduit_api::Labels;

pub(crate) use self::bits::{BitReader, BitWriter};
pub(crate) use chunk::Sample;
pub(crate) use labels::{CompactLabels, LabelInterner};
pub(crate) use series::{Kind, MemSeries, Reject};
pub(crate) use window::Window;

use crate::series::hash::{FastBuild, FastHasher};
use crate::series::{Index, Matcher, SeriesRef};

const STRIPES: usize = 64;

type Stripe = RwLock<HashMap<u64, Bucket, FastBuild>>;
type RefStripe = RwLock<HashMap<SeriesRef, Arc<MemSeries>, FastBuild>>;

pub(crate) struct Head {
    by_hash: Box<[Stripe]>,
    by_ref: Box<[RefStripe]>,
    floats: RwLock<Index>,
    histograms: RwLock<Index>,
    next_ref: AtomicU64,
    len: AtomicUsize,
    created: AtomicU64,
    /// Samples before this time are in blocks; the head refuses them.
    min_valid_t: AtomicI64,
    max_series: usize,
    interner: Arc<LabelInterner>,
    /// Where frozen chunks' bytes are, by block range.
    pub(crate) chunk_files: chunk_files::ChunkFiles,
}

/// The head is full: the active-series limit refuses new series.
#[derive(Debug, thiserror::Error)]
#[error(
    "limit of {limit} active series reached: new series are refused (existing ones keep working); raise --max-active-series or reduce label cardinality"
)]
pub(crate) struct SeriesLimit {
    pub(crate) limit: usize,
}

/// Hashes a label set in its compact form (see [`labels`]), so raw
/// remote-write pairs, [`Labels`] and head series hash alike, a word at a
/// time.
pub(crate) fn hash_encoded(encoded: &[u8], kind: Kind) -> u64 {
    let mut h = FastHasher::default();
    h.write_u8(kind as u8);
    h.write(encoded);
    h.finish()
}

impl Head {
    /// A head cut into blocks of `block_range_ms`, keeping its frozen
    /// chunks in files in `dir`.
    pub(crate) fn new(
        max_series: usize,
        block_range_ms: i64,
        dir: std::path::PathBuf,
        interner: Arc<LabelInterner>,
    ) -> Self {
        Self {
            by_hash: (0..STRIPES).map(|_| RwLock::default()).collect(),
            by_ref: (0..STRIPES).map(|_| RwLock::default()).collect(),
            floats: RwLock::default(),
            histograms: RwLock::default(),
            next_ref: AtomicU64::new(1),
            len: AtomicUsize::new(0),
            created: AtomicU64::new(0),
            min_valid_t: AtomicI64::new(i64::MIN),
            max_series,
            interner,
            chunk_files: chunk_files::ChunkFiles::new(block_range_ms, dir),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Series created since the process started.
    pub(crate) fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    pub(crate) fn min_valid_t(&self) -> i64 {
        self.min_valid_t.load(Ordering::Acquire)
    }

    pub(crate) fn set_min_valid_t(&self, t: i64) {
        self.min_valid_t.fetch_max(t, Ordering::AcqRel);
    }

    /// Finds a series by its label set in compact form and that form's
    /// [`hash_encoded`].
    pub(crate) fn find(&self, hash: u64, kind: Kind, encoded: &[u8]) -> Option<Arc<MemSeries>> {
        let stripe = read(&self.by_hash[hash as usize % STRIPES]);
        stripe.get(&hash)?.find(kind, encoded).cloned()
    }

    /// Finds or creates the series; creation is refused past the limit.
    pub(crate) fn get_or_create(
        &self,
        labels: Labels,
        kind: Kind,
    ) -> Result<Arc<MemSeries>, SeriesLimit> {
        let encoded = labels::encode(&labels);
        let hash = hash_encoded(&encoded, kind);
        if let Some(s) = self.find(hash, kind, &encoded) {
            return Ok(s);
        }
        let mut stripe = write(&self.by_hash[hash as usize % STRIPES]);
        if let Some(s) = stripe.get(&hash).and_then(|b| b.find(kind, &encoded)) {
            return Ok(s.clone());
        }
        if self.len() >= self.max_series {
            return Err(SeriesLimit {
                limit: self.max_series,
            });
        }
        let r = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let series = Arc::new(MemSeries::new(
            r,
            self.interner.intern_encoded(encoded),
            kind,
        ));
        Bucket::add(&mut stripe, hash, series.clone());
        self.created.fetch_add(1, Ordering::Relaxed);
        drop(stripe);
        self.register(series.clone(), &labels);
        Ok(series)
    }

    /// Re-creates a series from the WAL with its original ref. A label set
    /// logged again under a newer ref (after it was dropped as idle) maps to
    /// the series already restored.
    pub(crate) fn restore(&self, r: SeriesRef, labels: Labels, kind: Kind) -> Arc<MemSeries> {
        let encoded = labels::encode(&labels);
        let hash = hash_encoded(&encoded, kind);
        if let Some(s) = self.find(hash, kind, &encoded) {
            self.next_ref.fetch_max(r + 1, Ordering::Relaxed);
            return s;
        }
        if let Some(s) = self.get(r) {
            return s;
        }
        self.next_ref.fetch_max(r + 1, Ordering::Relaxed);
        let series = Arc::new(MemSeries::new(
            r,
            self.interner.intern_encoded(encoded),
            kind,
        ));
        series.mark_logged();
        Bucket::add(
            &mut write(&self.by_hash[hash as usize % STRIPES]),
            hash,
            series.clone(),
        );
        self.register(series.clone(), &labels);
        series
    }

    fn register(&self, series: Arc<MemSeries>, labels: &Labels) {
        self.index(series.kind)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(series.r, labels);
        write(&self.by_ref[series.r as usize % STRIPES]).insert(series.r, series);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, series: &MemSeries) {
        let hash = hash_encoded(series.labels.bytes(), series.kind);
        let mut stripe = write(&self.by_hash[hash as usize % STRIPES]);
        Bucket::remove(&mut stripe, hash, series.r);
        drop(stripe);
        if write(&self.by_ref[series.r as usize % STRIPES])
            .remove(&series.r)
            .is_some()
        {
            self.index(series.kind)
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(series.r, &series.labels);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        read(&self.by_ref[r as usize % STRIPES]).get(&r).cloned()
    }

    pub(crate) fn index(&self, kind: Kind) -> &RwLock<Index> {
        match kind {
            Kind::Float => &self.floats,
            Kind::Histogram => &self.histograms,
        }
    }

    /// Series matching every matcher, sorted by ref.
    pub(crate) fn select(&self, kind: Kind, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let refs = self
            .index(kind)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .select(matchers);
        refs.into_iter().filter_map(|r| self.get(r)).collect()
    }

    /// Every series, in no particular order.
    pub(crate) fn all(&self) -> Vec<Arc<MemSeries>> {
        self.by_ref
            .iter()
            .flat_map(|stripe| read(stripe).values().cloned().collect::<Vec<_>>())
            .collect()
    }
}

/// The series whose label sets share a hash: almost always one, kept
/// inline so a lookup follows one pointer less (remote write looks up
/// every series of every request).
enum Bucket {
    One(Arc<MemSeries>),
    Many(Vec<Arc<MemSeries>>),
}

impl Bucket {
    fn find(&self, kind: Kind, encoded: &[u8]) -> Option<&Arc<MemSeries>> {
        let is = |s: &&Arc<MemSeries>| s.kind == kind && s.labels.bytes() == encoded;
        match self {
            Bucket::One(s) => Some(s).filter(is),
            Bucket::Many(list) => list.iter().find(is),
        }
    }

    fn add(map: &mut HashMap<u64, Bucket, FastBuild>, hash: u64, series: Arc<MemSeries>) {
        match map.remove(&hash) {
            None => map.insert(hash, Bucket::One(series)),
            Some(Bucket::One(first)) => map.insert(hash, Bucket::Many(vec![first, series])),
            Some(Bucket::Many(mut list)) => {
                list.push(series);
                map.insert(hash, Bucket::Many(list))
            }
        };
    }

    fn remove(map: &mut HashMap<u64, Bucket, FastBuild>, hash: u64, r: SeriesRef) {
        let left = match map.remove(&hash) {
            Some(Bucket::One(s)) if s.r != r => Some(Bucket::One(s)),
            Some(Bucket::Many(mut list)) => {
                list.retain(|s| s.r != r);
                match list.len() {
                    0 => None,
                    1 => list.pop().map(Bucket::One),
                    _ => Some(Bucket::Many(list)),
                }
            }
            _ => None,
        };
        if let Some(b) = left {
            map.insert(hash, b);
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
