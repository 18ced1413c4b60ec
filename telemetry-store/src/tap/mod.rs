//! Tap history: every tap event the proxies sample into their reports is
//! indexed with tantivy, so past requests can be searched by who, what,
//! status and latency (`dst_deployment:voting AND status:[500 TO 599]`,
//! `latency_ms:>250`), newest first, or followed live.
//!
//! Indexing never slows metric ingest: reports hand their events to a
//! bounded queue without waiting (events that do not fit are dropped and
//! counted), and one background thread indexes, commits every half second
//! and applies retention by age and by size.

pub(crate) mod query;
mod schema;
mod upgrade;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use conduit_api::proto::tap::v1::TapEvent;
use tantivy::collector::{Collector, Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{EnableScoring, Query, RangeQuery};
use tantivy::{Index, IndexReader, IndexWriter, Order, Searcher, TantivyDocument, Term};

pub(crate) use schema::json;
use schema::{Fields, TIME};

use crate::query_text::{Syntax, TextLimits};

const COMMIT_EVERY: Duration = Duration::from_millis(500);
const WRITER_MEMORY: usize = 32 << 20;

#[derive(Default)]
pub(crate) struct TapStats {
    pub(crate) indexed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) deleted_by_retention: AtomicU64,
    /// Events dated beyond the future window (or before 1970).
    pub(crate) refused_time: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TapError {
    #[error("invalid tap query: {0}")]
    BadQuery(String),
    #[error("tap index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error(
        "cannot open the tap index at {0}: {1} (move the directory aside to start a fresh index)"
    )]
    Open(PathBuf, String),
    #[error(
        "{0} clients already follow the tap history (--tap-max-followers): close one of them, or raise the limit"
    )]
    TooManyFollowers(usize),
}

pub(crate) struct TapOptions {
    pub(crate) dir: PathBuf,
    pub(crate) queue: usize,
    pub(crate) retention_ms: i64,
    pub(crate) max_bytes: u64,
    /// Most events one search returns.
    pub(crate) max_results: usize,
    /// Clients following at once.
    pub(crate) max_followers: usize,
    /// Most events a second sent to one follower; a faster stream of
    /// matches is sent late, never skipped.
    pub(crate) follow_rate: usize,
    /// How far past the store's clock an event may be dated.
    pub(crate) max_future_ms: i64,
    pub(crate) text: TextLimits,
}

/// What a search or a follower may cost.
#[derive(Clone, Copy)]
struct Limits {
    max_results: usize,
    max_followers: usize,
    follow_rate: usize,
    max_future_ms: i64,
    text: TextLimits,
}

pub(crate) struct TapIndex {
    index: Index,
    fields: Fields,
    reader: IndexReader,
    queue: Mutex<Option<SyncSender<TapEvent>>>,
    indexer: Mutex<Option<JoinHandle<()>>>,
    pub(crate) stats: Arc<TapStats>,
    limits: Limits,
    followers: Arc<Semaphore>,
}

/// One of the `--tap-max-followers` places, held while a client follows.
pub(crate) struct Follower {
    _place: OwnedSemaphorePermit,
}

struct Indexer {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    stats: Arc<TapStats>,
    opts: TapOptions,
}

impl TapIndex {
    /// Opens (or creates) the index and starts its indexing thread.
    pub(crate) fn open(opts: TapOptions) -> Result<Arc<Self>, TapError> {
        let open_err = |e: &dyn std::fmt::Display| TapError::Open(opts.dir.clone(), e.to_string());
        std::fs::create_dir_all(&opts.dir).map_err(|e| open_err(&e))?;
        let (schema, fields) = Fields::schema();
        if let Some(carried) = upgrade::upgrade(&opts.dir, &schema, &fields, WRITER_MEMORY)
            .map_err(|e| open_err(&e))?
        {
            tracing::info!(events = carried, dir = %opts.dir.display(), "rebuilt the tap index with this version's fields");
        }
        let dir = MmapDirectory::open(&opts.dir).map_err(|e| open_err(&e))?;
        let index = Index::open_or_create(dir, schema).map_err(|e| open_err(&e))?;
        let reader = index.reader()?;
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let stats = Arc::new(TapStats::default());
        let (tx, rx) = sync_channel(opts.queue.max(1));
        let limits = Limits {
            max_results: opts.max_results.max(1),
            max_followers: opts.max_followers,
            follow_rate: opts.follow_rate.max(1),
            max_future_ms: opts.max_future_ms,
            text: opts.text,
        };
        let indexer = Indexer {
            writer,
            reader: reader.clone(),
            fields,
            stats: stats.clone(),
            opts,
        };
        let handle = std::thread::Builder::new()
            .name("tap-indexer".into())
            .spawn(move || indexer.run(rx))
            .map_err(|e| TapError::Open(PathBuf::new(), e.to_string()))?;
        Ok(Arc::new(Self {
            index,
            fields,
            reader,
            queue: Mutex::new(Some(tx)),
            indexer: Mutex::new(Some(handle)),
            stats,
            followers: Arc::new(Semaphore::new(limits.max_followers)),
            limits,
        }))
    }

    /// Queues events for indexing without ever waiting. Events dated
    /// beyond the future window are refused: searches and followers go by
    /// time, and a follower that saw an event from 2100 would wait for a
    /// newer one forever.
    pub(crate) fn offer(&self, events: Vec<TapEvent>) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = queue.as_ref() else { return };
        let latest = crate::time::now_ms().saturating_add(self.limits.max_future_ms);
        for e in events {
            let t = schema::time_ms(&e);
            if !(0..=latest).contains(&t) {
                self.stats.refused_time.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(e) {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events matching `q` in `[start, end]`, newest first (or oldest
    /// first with `ascending`), at most `limit`.
    ///
    /// Ranking every match by time costs a pass over all of them (200 ms
    /// for "newest 100 of 10 M"), so the search looks at a time window at
    /// the requested end first, sized to hold a few times `limit` events
    /// at the index's average density, and widens it eightfold until it
    /// holds `limit` matches or the whole range. Events outside a window
    /// are all older (newer) than everything in it, so the answer is the
    /// same as one pass over the whole range.
    pub(crate) fn search(
        &self,
        q: &str,
        start: i64,
        end: i64,
        limit: usize,
        ascending: bool,
    ) -> Result<Vec<TapEvent>, TapError> {
        let user = self.parse(q)?;
        let limit = limit.clamp(1, self.limits.max_results);
        let searcher = self.reader.searcher();
        let spans = segment_spans(&searcher)?;
        let Some(first) = spans.iter().flatten().map(|s| s.0).min() else {
            return Ok(Vec::new());
        };
        let last = spans.iter().flatten().map(|s| s.1).max().unwrap_or(first);
        let (lo, hi) = (first.max(start), last.min(end));
        if lo > hi {
            return Ok(Vec::new());
        }
        let order = if ascending { Order::Asc } else { Order::Desc };
        let top = TopDocs::with_limit(limit).order_by_fast_field::<i64>(TIME, order);
        // Density over the whole index: a narrow requested range must not
        // make it look denser than it is.
        let per_ms =
            searcher.num_docs().max(1) as f64 / last.saturating_sub(first).saturating_add(1) as f64;
        let mut expected = (limit * 4) as f64;
        let hits = loop {
            let width = (expected / per_ms).ceil() as i64;
            let whole = width > hi.saturating_sub(lo);
            let (from, to) = match (whole, ascending) {
                (true, _) => (lo, hi),
                (false, true) => (lo, lo + width),
                (false, false) => (hi - width, hi),
            };
            let window = query::between(user.as_ref(), &self.fields, from, to);
            let hits = search_segments(&searcher, window.as_ref(), &top, &spans, (from, to))?;
            if hits.len() >= limit || whole {
                break hits;
            }
            expected *= 8.0;
        };
        let mut out = Vec::with_capacity(hits.len());
        for (_, addr) in hits {
            let doc: TantivyDocument = searcher.doc(addr)?;
            if let Some(e) = self.fields.event(&doc) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Checks a query without running it, down to the fields it names.
    pub(crate) fn validate(&self, q: &str) -> Result<(), TapError> {
        let searcher = self.reader.searcher();
        self.parse(q)?
            .weight(EnableScoring::disabled_from_searcher(&searcher))
            .map_err(query_error)
            .map(drop)
    }

    /// Checks the query's length and nesting, then parses it.
    fn parse(&self, q: &str) -> Result<Box<dyn Query>, TapError> {
        self.limits
            .text
            .check(q, Syntax::Tap)
            .map_err(|e| TapError::BadQuery(e.to_string()))?;
        query::parse(&self.index, &self.fields, q).map_err(TapError::BadQuery)
    }

    /// Most events one search returns.
    pub(crate) fn max_results(&self) -> usize {
        self.limits.max_results
    }

    /// A place among the followers, if one is free.
    pub(crate) fn follower(&self) -> Result<Follower, TapError> {
        self.followers
            .clone()
            .try_acquire_owned()
            .map(|place| Follower { _place: place })
            .map_err(|_| TapError::TooManyFollowers(self.limits.max_followers))
    }

    pub(crate) fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Stops the indexing thread after it indexed and committed what is
    /// queued.
    pub(crate) fn stop(&self) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(h) = self
            .indexer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
    }
}

impl Drop for TapIndex {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Indexer {
    fn run(mut self, rx: Receiver<TapEvent>) {
        let mut pending = 0u64;
        let mut last_commit = Instant::now();
        let mut last_retention = Instant::now();
        loop {
            let closed = match rx.recv_timeout(COMMIT_EVERY) {
                Ok(e) => {
                    self.add(&e);
                    pending += 1;
                    while let Ok(e) = rx.try_recv() {
                        self.add(&e);
                        pending += 1;
                    }
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            if pending > 0 && (closed || last_commit.elapsed() >= COMMIT_EVERY) {
                self.commit(&mut pending);
                last_commit = Instant::now();
            }
            let retention_every =
                Duration::from_millis((self.opts.retention_ms / 4).clamp(1000, 30_000) as u64);
            if last_retention.elapsed() >= retention_every {
                self.retention();
                last_retention = Instant::now();
            }
            if closed {
                return;
            }
        }
    }

    fn add(&mut self, e: &TapEvent) {
        if let Err(err) = self.writer.add_document(self.fields.document(e)) {
            tracing::warn!(error = %err, "cannot index a tap event");
        }
    }

    fn commit(&mut self, pending: &mut u64) {
        match self.writer.commit() {
            Ok(_) => {
                self.stats.indexed.fetch_add(*pending, Ordering::Relaxed);
                *pending = 0;
                if let Err(e) = self.reader.reload() {
                    tracing::warn!(error = %e, "cannot reload the tap index");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot commit the tap index"),
        }
    }

    /// Deletes events older than the retention age, then the oldest ones
    /// while the index is larger than its size budget.
    fn retention(&mut self) {
        let now = crate::time::now_ms();
        let mut cutoff = now.saturating_sub(self.opts.retention_ms);
        let size = dir_bytes(&self.opts.dir);
        if size > self.opts.max_bytes {
            let excess = 1.0 - (self.opts.max_bytes as f64 * 0.9) / size as f64;
            cutoff = cutoff.max(self.time_at_fraction(excess));
        }
        let older = RangeQuery::new(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Excluded(Term::from_field_i64(self.fields.time, cutoff)),
        );
        let doomed = self.reader.searcher().search(&older, &Count).unwrap_or(0);
        if doomed == 0 {
            return;
        }
        if let Err(e) = self.writer.delete_query(Box::new(older)) {
            tracing::warn!(error = %e, "cannot apply tap retention");
            return;
        }
        let mut none = 0;
        self.commit(&mut none);
        self.stats
            .deleted_by_retention
            .fetch_add(doomed as u64, Ordering::Relaxed);
    }

    /// The time before which `fraction` of the events lie (binary search
    /// on counts of a fast-field range).
    fn time_at_fraction(&self, fraction: f64) -> i64 {
        let searcher = self.reader.searcher();
        let total = searcher.num_docs() as f64;
        let count_before = |t: i64| {
            let q = RangeQuery::new(
                std::ops::Bound::Unbounded,
                std::ops::Bound::Excluded(Term::from_field_i64(self.fields.time, t)),
            );
            searcher.search(&q, &Count).unwrap_or(0) as f64
        };
        let (mut lo, mut hi) = (0i64, crate::time::now_ms());
        while hi - lo > 1000 {
            let mid = lo + (hi - lo) / 2;
            if count_before(mid) < fraction * total {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Each segment's oldest and newest event time (deleted events included),
/// `None` for an empty segment.
fn segment_spans(searcher: &Searcher) -> Result<Vec<Option<(i64, i64)>>, TapError> {
    let mut out = Vec::new();
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            out.push(None);
            continue;
        }
        let time = segment.fast_fields().i64(TIME)?;
        out.push(Some((time.min_value(), time.max_value())));
    }
    Ok(out)
}

/// `searcher.search`, over only the segments holding events in
/// `from..=to`: a query's cost in a segment (a range over a field's terms,
/// say) does not shrink with the time window, so segments outside it are
/// not even opened for it.
fn search_segments<C: Collector>(
    searcher: &Searcher,
    query: &dyn Query,
    collector: &C,
    spans: &[Option<(i64, i64)>],
    (from, to): (i64, i64),
) -> Result<C::Fruit, TapError> {
    let weight = query
        .weight(EnableScoring::disabled_from_searcher(searcher))
        .map_err(query_error)?;
    let mut fruits = Vec::new();
    for (ord, (segment, span)) in searcher.segment_readers().iter().zip(spans).enumerate() {
        match span {
            Some((lo, hi)) if *hi >= from && *lo <= to => {
                fruits.push(collector.collect_segment(weight.as_ref(), ord as u32, segment)?);
            }
            _ => {}
        }
    }
    Ok(collector.merge_fruits(fruits)?)
}

/// A query that parsed can still name a field the index does not have, or
/// ask a field for what it cannot answer (tantivy finds out when it runs
/// it): the client's mistake, not the index's.
fn query_error(e: tantivy::TantivyError) -> TapError {
    match e {
        tantivy::TantivyError::FieldNotFound(field) => {
            TapError::BadQuery(format!("there is no field {field:?} to search"))
        }
        // `field:*` on a field that cannot answer it, for one.
        tantivy::TantivyError::SchemaError(why) => TapError::BadQuery(why),
        other => TapError::Index(other),
    }
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Events matching `q` as they are indexed, from `from` (Unix ms) on,
/// oldest first, for as long as `follower` is held. Polls the index every
/// half second (its commit cadence) for at most half a second's worth of
/// `--tap-follow-rate`: a burst is sent late rather than all at once.
pub(crate) fn follow(
    tap: Arc<TapIndex>,
    follower: Follower,
    q: String,
    from: i64,
) -> impl futures_util::Stream<Item = TapEvent> + Send {
    use futures_util::StreamExt;
    struct State {
        tap: Arc<TapIndex>,
        _follower: Follower,
        q: String,
        from: i64,
        /// Events already sent at time `from` (ties at the boundary).
        sent_at_from: std::collections::HashSet<Vec<u8>>,
    }
    let per_poll = (tap.limits.follow_rate / 2).max(1);
    let state = State {
        tap,
        _follower: follower,
        q,
        from,
        sent_at_from: Default::default(),
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        loop {
            tokio::time::sleep(COMMIT_EVERY).await;
            let max = st.tap.limits.max_results;
            if st.sent_at_from.len() >= max {
                // More ties at one millisecond than a search returns: the
                // rest of that millisecond is skipped, or this never ends.
                st.from += 1;
                st.sent_at_from.clear();
            }
            let limit = (per_poll + st.sent_at_from.len()).min(max);
            let (tap, q, from) = (st.tap.clone(), st.q.clone(), st.from);
            let found =
                tokio::task::spawn_blocking(move || tap.search(&q, from, i64::MAX, limit, true))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            let mut fresh = Vec::new();
            for e in found {
                if fresh.len() == per_poll {
                    break;
                }
                let t = schema::time_ms(&e);
                let key = prost::Message::encode_to_vec(&e);
                if t == st.from && st.sent_at_from.contains(&key) {
                    continue;
                }
                if t > st.from {
                    st.from = t;
                    st.sent_at_from.clear();
                }
                st.sent_at_from.insert(key);
                fresh.push(e);
            }
            if !fresh.is_empty() {
                return Some((futures_util::stream::iter(fresh), st));
            }
        }
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: usize, t_ms: i64) -> TapEvent {
        TapEvent {
            request_id: format!("e{id}"),
            request_start_unix_us: t_ms * 1000,
            http_status: if id.is_multiple_of(97) { 500 } else { 200 },
            path: format!("/p{}", id % 10),
            ..Default::default()
        }
    }

    /// An hour of sparse events, then a dense burst in the last ten
    /// seconds (so the first windows, sized by average density, are too
    /// narrow for rare matches), in three commits (three segments), every
    /// event at its own millisecond so the order is unambiguous.
    fn events(now: i64) -> Vec<Vec<(usize, i64)>> {
        let old: Vec<_> = (0..6000)
            .map(|i| (i, now - 3_600_000 + i as i64 * 598))
            .collect();
        let burst: Vec<_> = (6000..16_000)
            .map(|i| (i, now - 10_000 + (i - 6000) as i64))
            .collect();
        let (early, late) = burst.split_at(4000);
        vec![old, late.to_vec(), early.to_vec()]
    }

    fn options(dir: &Path) -> TapOptions {
        TapOptions {
            dir: dir.to_path_buf(),
            queue: 100_000,
            retention_ms: 86_400_000,
            max_bytes: u64::MAX,
            max_results: 10_000,
            max_followers: 1,
            follow_rate: 1000,
            max_future_ms: 600_000,
            text: TextLimits {
                max_bytes: 1000,
                max_depth: 10,
            },
        }
    }

    /// An index as a store without the `kept` and `error_reason` fields
    /// wrote it: the current store opens it, and finds its events by the
    /// fields it lacked (read again from the stored events).
    #[test]
    fn an_index_from_an_older_store_is_rebuilt_with_its_events() {
        use prost::Message;
        use tantivy::schema::{NumericOptions, STORED, STRING, SchemaBuilder};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tap");
        std::fs::create_dir_all(&path).unwrap();
        let mut b = SchemaBuilder::new();
        let time = b.add_i64_field(TIME, NumericOptions::default().set_indexed().set_fast());
        let path_field = b.add_text_field("path", STRING);
        let stored = b.add_bytes_field("event", STORED);
        let old = Index::create_in_dir(&path, b.build()).unwrap();
        let mut writer = old.writer_with_num_threads(1, WRITER_MEMORY).unwrap();
        let now = crate::time::now_ms();
        for id in 0..50 {
            let mut e = event(id, now - 60_000 + id as i64);
            if id % 10 == 0 {
                e.error_reason = "fail_fast".into();
            }
            let mut d = TantivyDocument::new();
            d.add_i64(time, now - 60_000 + id as i64);
            d.add_text(path_field, &e.path);
            d.add_bytes(stored, &e.encode_to_vec());
            writer.add_document(d).unwrap();
        }
        writer.commit().unwrap();
        drop(writer);
        drop(old);

        let tap = TapIndex::open(options(&path)).unwrap();
        assert_eq!(tap.num_docs(), 50);
        let found: Vec<String> = tap
            .search("error_reason:fail_fast", 0, i64::MAX, 100, true)
            .unwrap()
            .into_iter()
            .map(|e| e.request_id)
            .collect();
        assert_eq!(found, ["e0", "e10", "e20", "e30", "e40"]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["tap"],
            "the rebuild leaves nothing beside the index"
        );
        drop(tap);
        // Opened again, it is the current schema's and is left as it is.
        let tap = TapIndex::open(options(&path)).unwrap();
        assert_eq!(tap.num_docs(), 50);
    }

    /// Which event ids a query matches.
    type Matches = fn(usize) -> bool;

    #[test]
    fn windowed_search_returns_what_one_pass_would() {
        let dir = tempfile::tempdir().unwrap();
        let tap = TapIndex::open(options(dir.path())).unwrap();
        let now = crate::time::now_ms();
        let batches = events(now);
        let mut all = Vec::new();
        for batch in batches {
            all.extend(batch.iter().copied());
            tap.offer(batch.iter().map(|&(id, t)| event(id, t)).collect());
            let deadline = Instant::now() + Duration::from_secs(20);
            while tap.stats.indexed.load(Ordering::Relaxed) < all.len() as u64 {
                assert!(Instant::now() < deadline, "indexing stalled");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let cases: [(&str, Matches); 4] = [
            ("", |_| true),
            ("status:500", |id| id.is_multiple_of(97)),
            ("path:/p3 AND NOT status:500", |id| {
                id % 10 == 3 && !id.is_multiple_of(97)
            }),
            ("request_id:none", |_| false),
        ];
        for (q, matches) in cases {
            for ascending in [false, true] {
                for (start, end) in [(0, i64::MAX), (now - 1_800_000, now - 5_000)] {
                    let mut want: Vec<_> = all
                        .iter()
                        .filter(|&&(id, t)| matches(id) && (start..=end).contains(&t))
                        .collect();
                    want.sort_by_key(|&&(_, t)| if ascending { t } else { -t });
                    for limit in [1, 10, 100, 5000] {
                        let got: Vec<String> = tap
                            .search(q, start, end, limit, ascending)
                            .unwrap()
                            .into_iter()
                            .map(|e| e.request_id)
                            .collect();
                        let want: Vec<String> = want
                            .iter()
                            .take(limit)
                            .map(|(id, _)| format!("e{id}"))
                            .collect();
                        assert_eq!(
                            got, want,
                            "{q:?} ascending={ascending} {start}..{end} limit {limit}"
                        );
                    }
                }
            }
        }
    }
}
