//! Remote write out: every ingested series (filtered and relabelled as
//! configured) forwarded to a Prometheus-compatible remote-write endpoint
//! — Prometheus, Mimir, Thanos Receive, VictoriaMetrics — so a large
//! installation keeps its long history in a scale-out store.
//!
//! The queue is the WAL itself: the forwarder tails it and hands each
//! sample to one of `--remote-write-shards` shards by its series, each
//! shard sending one request at a time (several requests in flight keep
//! up with a receiver's round trip; one series' samples never overtake
//! each other). Each shard's cursor is saved in `remote-write/cursor`
//! after every acknowledged batch, so a restart (of either side) resumes
//! where it stopped, loses nothing and resends at most what was in
//! flight; WAL truncation keeps the segments a shard has not sent, up to
//! `--remote-write-max-lag` bytes. Failed sends are retried with
//! exponential backoff; a request the receiver refuses for good (4xx) is
//! dropped and counted.

mod cursor;
mod filter;
mod send;
mod shard;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub(crate) use filter::Filter;

use crate::db::Db;
use crate::series::SeriesRef;
use crate::wal::Record;
use crate::wal::tail::{Position, Tail};
use cursor::Cursor;
use shard::{Batch, Shard};

pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) filter: Filter,
    pub(crate) batch_samples: usize,
    pub(crate) shards: usize,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) sent_samples: AtomicU64,
    pub(crate) failed_samples: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) skipped_segments: AtomicU64,
}

/// A partial batch waits at most this long for more samples.
const BATCH_WAIT: Duration = Duration::from_secs(1);

/// The reader's side of a shard: the batch being filled, and what was
/// handed to the shard last.
struct Outbox {
    to_shard: mpsc::Sender<Batch>,
    series: HashMap<SeriesRef, usize>,
    batch: Batch,
    /// Samples of records ending here or before are the shard's already
    /// (or were acknowledged before a restart).
    handed: Position,
    since: Instant,
}

impl Outbox {
    fn push(&mut self, r: SeriesRef, series: &Arc<send::Series>, t: i64, v: f64) {
        let i = *self.series.entry(r).or_insert_with(|| {
            self.batch.series.push((series.clone(), Vec::new()));
            self.batch.series.len() - 1
        });
        self.batch.series[i].1.push((t, v));
        self.batch.samples += 1;
    }

    /// Hands the batch, up to `end` in the WAL, to the shard; waits while
    /// the shard still has one queued. False when the shard has ended.
    async fn hand(&mut self, end: Position) -> bool {
        let batch = std::mem::replace(
            &mut self.batch,
            Batch {
                series: Vec::new(),
                samples: 0,
                end,
            },
        );
        self.series.clear();
        self.handed = end;
        self.since = Instant::now();
        self.to_shard.send(Batch { end, ..batch }).await.is_ok()
    }
}

/// The forwarder's reader: which series are forwarded, with which labels.
struct Reader {
    filter: Filter,
    /// Output labels per series ref; `None` for series filtered out.
    series: HashMap<SeriesRef, Option<Arc<send::Series>>>,
}

/// Runs the forwarder until `stopped`.
pub(crate) async fn run(
    db: Arc<Db>,
    data_dir: PathBuf,
    opts: Options,
    stats: Arc<Stats>,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let dir = data_dir.join("remote-write");
    let wal_dir = data_dir.join("wal");
    std::fs::create_dir_all(&dir)?;
    let cursor = Arc::new(Cursor::load(dir.join("cursor"), &wal_dir, db, opts.shards)?);
    let client = Arc::new(send::Client::new(&opts.url)?);
    let mut reader = Reader {
        filter: opts.filter,
        series: HashMap::new(),
    };
    let mut tail = reader.catch_up(&wal_dir, cursor.oldest())?;
    tracing::info!(url = %opts.url, shards = opts.shards, segment = tail.pos.segment, offset = tail.pos.offset, "forwarding the WAL with remote write");
    let mut tasks = JoinSet::new();
    let mut outboxes: Vec<Outbox> = cursor
        .positions()
        .into_iter()
        .enumerate()
        .map(|(index, handed)| {
            // One batch queued per shard beside the one in flight: the
            // reader fills the next meanwhile, and waits beyond that.
            let (to_shard, batches) = mpsc::channel(1);
            let shard = Shard {
                index,
                client: client.clone(),
                cursor: cursor.clone(),
                stats: stats.clone(),
            };
            tasks.spawn(shard.run(batches, stopped.clone()));
            Outbox {
                to_shard,
                series: HashMap::new(),
                batch: Batch {
                    series: Vec::new(),
                    samples: 0,
                    end: handed,
                },
                handed,
                since: Instant::now(),
            }
        })
        .collect();
    loop {
        if *stopped.borrow() {
            return Ok(());
        }
        let read = tail.read(8 << 20)?;
        if read.skipped_segments > 0 {
            stats
                .skipped_segments
                .fetch_add(read.skipped_segments, Ordering::Relaxed);
            tracing::warn!(
                segments = read.skipped_segments,
                "remote write fell behind the WAL retention; those samples are lost"
            );
        }
        let idle = read.records.is_empty();
        // One read can hold a whole outage's samples: a batch goes out as
        // soon as it is full, so no request exceeds `--remote-write-batch`
        // by more than one WAL record (which receivers' size limits allow).
        for (record, end) in read.records {
            reader.take(record, end, &mut outboxes);
            for o in &mut outboxes {
                if o.batch.samples >= opts.batch_samples && !o.hand(end).await {
                    return ended(&mut tasks).await;
                }
            }
        }
        stats
            .pending_bytes
            .store(behind(&wal_dir, cursor.oldest()), Ordering::Relaxed);
        for o in &mut outboxes {
            // A shard with no samples of late still moves its cursor on,
            // so the WAL behind it can go.
            let due = o.handed < tail.pos && (idle || o.since.elapsed() > BATCH_WAIT);
            if due && !o.hand(tail.pos).await {
                return ended(&mut tasks).await;
            }
        }
        if idle {
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

/// A shard stopped taking batches: stopped, or its cursor could not be
/// saved.
async fn ended(tasks: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    // The shard that ended is the first to join; the others are aborted
    // with the set.
    match tasks.join_next().await {
        Some(done) => done?,
        None => Ok(()),
    }
}

impl Reader {
    /// Learns the series defined before `cursor` (checkpoint and the WAL
    /// up to it) and returns a reader at the cursor.
    fn catch_up(&mut self, wal_dir: &Path, cursor: Position) -> anyhow::Result<Tail> {
        for r in Tail::checkpoint(wal_dir)? {
            self.learn(r);
        }
        let mut tail = Tail::new(wal_dir, Tail::oldest(wal_dir)?);
        while tail.pos < cursor {
            let read = tail.read(8 << 20)?;
            if read.records.is_empty() {
                break;
            }
            for (r, end) in read.records {
                if end <= cursor {
                    self.learn(r);
                }
            }
        }
        Ok(Tail::new(wal_dir, cursor.max(tail.pos.min(cursor))))
    }

    fn learn(&mut self, r: Record) {
        if let Record::Series(series) = r {
            for (r, kind, labels) in series {
                if kind == crate::model::Kind::Float {
                    let out = self.filter.apply(&labels);
                    self.series
                        .insert(r, out.map(|l| Arc::new(send::Series::new(&l))));
                }
            }
        }
    }

    /// Puts a record's forwarded samples in their shards' batches, but
    /// not in a shard that has them already.
    fn take(&mut self, record: Record, end: Position, outboxes: &mut [Outbox]) {
        let Record::Samples(samples) = record else {
            self.learn(record);
            return;
        };
        for (r, t, v) in samples {
            let Some(Some(series)) = self.series.get(&r) else {
                continue;
            };
            let o = &mut outboxes[shard::of(r, outboxes.len())];
            if end > o.handed {
                o.push(r, series, t, v);
            }
        }
    }
}

/// WAL bytes not forwarded yet, from `pos`.
fn behind(wal_dir: &Path, pos: Position) -> u64 {
    let Ok((_, segments)) = crate::wal::list(wal_dir) else {
        return 0;
    };
    segments
        .iter()
        .filter(|(n, _)| *n >= pos.segment)
        .filter_map(|(n, p)| {
            let len = std::fs::metadata(p).ok()?.len();
            Some(if *n == pos.segment {
                len.saturating_sub(pos.offset)
            } else {
                len
            })
        })
        .sum()
}
