//! The head: the most recent data, in memory, compressed (with the
//! codes of [`crate::encoding`]).
//!
//! Series are found by label hash in lock stripes so concurrent ingest
//! streams rarely contend; each series has its own lock for its chunks.
//! Float series and histogram-window series have separate indexes, so
//! PromQL only ever sees float series (histograms are served to it as
//! `_bucket`/`_sum`/`_count` float series written at ingest).

pub(crate) mod chunk;
pub(crate) mod chunk_files;
pub(crate) mod labels;
pub(crate) mod series;

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use conduit_api::Labels;

pub(crate) use labels::{CompactLabels, LabelInterner};
pub(crate) use series::{MemSeries, Reject};

use crate::model::{Kind, SeriesRef};
use crate::prefetch;
use crate::series::hash::{FastBuild, FastHasher};
use crate::series::{Index, Matcher};

const STRIPES: usize = 64;

/// How many lookups of one stripe go through each pass of
/// [`Head::find_many`] together: about as many cache misses as a core
/// keeps in flight.
const LOOKUP_GROUP: usize = 16;

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

/// Why the head refused to create a series.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SeriesLimit {
    /// The head is full.
    #[error(
        "limit of {limit} active series reached: new series are refused (existing ones keep working); raise --max-active-series or reduce label cardinality"
    )]
    Active { limit: usize },
    /// Too many label sets already share this one's hash: with the keyed
    /// hash that happens by chance about never, so someone is crafting
    /// them, and a longer chain would make every lookup of theirs a scan.
    #[error(
        "{MAX_HASH_CHAIN} series already share this label set's hash: new series with it are refused; check what sends such label sets"
    )]
    HashChain,
}

/// Most series kept under one label-set hash.
const MAX_HASH_CHAIN: usize = 8;

/// A series to find: its label set in compact form and that form's
/// [`hash_encoded`].
#[derive(Clone, Copy)]
pub(crate) struct SeriesKey<'a> {
    pub(crate) hash: u64,
    pub(crate) encoded: &'a [u8],
}

fn stripe_of(hash: u64) -> usize {
    hash as usize % STRIPES
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
        let stripe = read(&self.by_hash[stripe_of(hash)]);
        stripe.get(&hash)?.find(kind, encoded).cloned()
    }

    /// Finds the series of `labels`, creating nothing.
    pub(crate) fn find_labels(&self, labels: &Labels, kind: Kind) -> Option<Arc<MemSeries>> {
        let encoded = labels::encode(labels);
        self.find(hash_encoded(&encoded, kind), kind, &encoded)
    }

    /// Finds many series at once, for one remote-write request: `out[i]`
    /// is the series of `keys[i]`, `None` when the head has none.
    ///
    /// Looked up one at a time, each series costs three cache misses in a
    /// row (table slot, series, label bytes), with lock atomics between
    /// two lookups that keep the CPU from overlapping them: a fifth of
    /// ingest CPU. Here each stripe is locked once for all its keys, and
    /// a group of keys goes through the levels together, prefetching the
    /// next level for the whole group before any of it is compared.
    pub(crate) fn find_many(
        &self,
        kind: Kind,
        keys: &[SeriesKey<'_>],
        out: &mut Vec<Option<Arc<MemSeries>>>,
    ) {
        out.clear();
        out.resize(keys.len(), None);
        let (order, starts) = order_by_stripe(keys);
        for (stripe, bounds) in starts.windows(2).enumerate() {
            if bounds[0] == bounds[1] {
                continue;
            }
            let map = read(&self.by_hash[stripe]);
            for group in order[bounds[0]..bounds[1]].chunks(LOOKUP_GROUP) {
                let mut buckets = [None; LOOKUP_GROUP];
                for (bucket, &i) in buckets.iter_mut().zip(group) {
                    *bucket = map.get(&keys[i].hash);
                    if let Some(s) = bucket.map(Bucket::first) {
                        prefetch::line(&s.kind);
                        prefetch::line(&s.labels);
                    }
                }
                for s in buckets.iter().flatten().map(|b| b.first()) {
                    prefetch::bytes(s.labels.bytes(), 4);
                }
                for (bucket, &i) in buckets.iter().zip(group) {
                    out[i] = bucket.and_then(|b| b.find(kind, keys[i].encoded).cloned());
                }
            }
        }
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
        self.create_under(hash, kind, encoded, &labels)
    }

    /// Creates the series of `labels` (in compact form: `encoded`) under
    /// `hash`, unless another thread just did.
    fn create_under(
        &self,
        hash: u64,
        kind: Kind,
        encoded: Vec<u8>,
        labels: &Labels,
    ) -> Result<Arc<MemSeries>, SeriesLimit> {
        let mut stripe = write(&self.by_hash[stripe_of(hash)]);
        let bucket = stripe.get(&hash);
        if let Some(s) = bucket.and_then(|b| b.find(kind, &encoded)) {
            return Ok(s.clone());
        }
        if self.len() >= self.max_series {
            return Err(SeriesLimit::Active {
                limit: self.max_series,
            });
        }
        if bucket.is_some_and(|b| b.len() >= MAX_HASH_CHAIN) {
            return Err(SeriesLimit::HashChain);
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
        self.register(series.clone(), labels);
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
            &mut write(&self.by_hash[stripe_of(hash)]),
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
        let mut stripe = write(&self.by_hash[stripe_of(hash)]);
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
    fn first(&self) -> &Arc<MemSeries> {
        match self {
            Bucket::One(s) => s,
            Bucket::Many(list) => &list[0],
        }
    }

    fn len(&self) -> usize {
        match self {
            Bucket::One(_) => 1,
            Bucket::Many(list) => list.len(),
        }
    }

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

/// Indices of `keys` grouped by stripe: stripe `s` has
/// `order[starts[s]..starts[s + 1]]`.
fn order_by_stripe(keys: &[SeriesKey<'_>]) -> (Vec<usize>, [usize; STRIPES + 1]) {
    let mut starts = [0usize; STRIPES + 1];
    for k in keys {
        starts[stripe_of(k.hash) + 1] += 1;
    }
    for s in 0..STRIPES {
        starts[s + 1] += starts[s];
    }
    let mut next = starts;
    let mut order = vec![0; keys.len()];
    for (i, k) in keys.iter().enumerate() {
        let slot = &mut next[stripe_of(k.hash)];
        order[*slot] = i;
        *slot += 1;
    }
    (order, starts)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(dir: &tempfile::TempDir) -> Head {
        Head::new(10_000, 7_200_000, dir.path().into(), Arc::default())
    }

    fn key(encoded: &[u8]) -> SeriesKey<'_> {
        SeriesKey {
            hash: hash_encoded(encoded, Kind::Float),
            encoded,
        }
    }

    #[test]
    fn find_many_finds_what_find_finds_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let head = head(&dir);
        let sets: Vec<Labels> = (0..500)
            .map(|i| Labels::try_from_pairs([("__name__", "m"), ("i", &i.to_string())]).unwrap())
            .collect();
        for l in &sets[..400] {
            head.get_or_create(l.clone(), Kind::Float).unwrap();
        }
        // Same labels, other kind: not a float series.
        head.get_or_create(sets[450].clone(), Kind::Histogram)
            .unwrap();
        // Every stripe, in an order unlike the stripes', some keys twice.
        let encoded: Vec<Vec<u8>> = sets
            .iter()
            .rev()
            .chain(&sets[..3])
            .map(labels::encode)
            .collect();
        let keys: Vec<SeriesKey<'_>> = encoded.iter().map(|e| key(e)).collect();
        let mut out = vec![None; 3];
        head.find_many(Kind::Float, &keys, &mut out);
        assert_eq!(out.len(), keys.len());
        for (k, found) in keys.iter().zip(&out) {
            let one = head.find(k.hash, Kind::Float, k.encoded);
            assert_eq!(found.as_ref().map(|s| s.r), one.as_ref().map(|s| s.r));
            if let Some(s) = found {
                assert_eq!(s.labels.bytes(), k.encoded);
            }
        }
        assert_eq!(out.iter().flatten().count(), 403);
    }

    /// Label sets that share a hash (forced here, as an attacker who
    /// could compute the hash would craft them) stop at a short chain:
    /// the head refuses more instead of scanning ever longer lists.
    #[test]
    fn a_hash_chain_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let head = head(&dir);
        let labels = |i: usize| Labels::try_from_pairs([("__name__", format!("m{i}"))]).unwrap();
        for i in 0..MAX_HASH_CHAIN {
            let series = Arc::new(MemSeries::new(
                i as u64 + 1,
                head.interner.intern(&labels(i)),
                Kind::Float,
            ));
            Bucket::add(&mut write(&head.by_hash[stripe_of(7)]), 7, series);
        }
        let colliding = labels(99);
        let encoded = labels::encode(&colliding);
        assert!(matches!(
            head.create_under(7, Kind::Float, encoded, &colliding),
            Err(SeriesLimit::HashChain)
        ));
        // Other hashes are untouched.
        assert!(head.get_or_create(labels(101), Kind::Float).is_ok());
    }

    /// Two label sets under one hash (the real hash makes this rare, so
    /// it is forced here): each key finds its own series, not the first.
    #[test]
    fn find_many_tells_label_sets_with_one_hash_apart() {
        let dir = tempfile::tempdir().unwrap();
        let head = head(&dir);
        let labels = |v: &str| Labels::try_from_pairs([("__name__", v)]).unwrap();
        let (a, b, missing) = (labels("a"), labels("b"), labels("c"));
        for (r, l) in [(1, &a), (2, &b)] {
            let series = Arc::new(MemSeries::new(r, head.interner.intern(l), Kind::Float));
            Bucket::add(&mut write(&head.by_hash[stripe_of(7)]), 7, series);
        }
        let encoded = [&b, &a, &missing].map(labels::encode);
        let keys: Vec<SeriesKey<'_>> = encoded
            .iter()
            .map(|e| SeriesKey {
                hash: 7,
                encoded: e,
            })
            .collect();
        let mut out = Vec::new();
        head.find_many(Kind::Float, &keys, &mut out);
        let refs: Vec<Option<SeriesRef>> = out.iter().map(|s| s.as_ref().map(|s| s.r)).collect();
        assert_eq!(refs, [Some(2), Some(1), None]);
    }
}
