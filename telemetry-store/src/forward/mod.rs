//! Remote write out: every ingested series (filtered and relabelled as
//! configured) forwarded to a Prometheus-compatible remote-write endpoint
//! — Prometheus, Mimir, Thanos Receive, VictoriaMetrics — so a large
//! installation keeps its long history in a scale-out store.
//!
//! The queue is the WAL itself: the forwarder tails it from a cursor
//! saved in `remote-write/cursor` after every acknowledged batch, so a
//! restart (of either side) resumes where it stopped and nothing is lost;
//! WAL truncation keeps the segments the forwarder has not sent, up to
//! `--remote-write-max-lag` bytes. Failed sends are retried with
//! exponential backoff; a request the receiver refuses for good (4xx) is
//! dropped and counted.

mod filter;
mod send;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conduit_api::Labels;
use tokio::sync::watch;

pub(crate) use filter::Filter;

use crate::db::Db;
use crate::series::SeriesRef;
use crate::wal::Record;
use crate::wal::tail::{Position, Tail};

pub(crate) struct Options {
    pub(crate) url: String,
    pub(crate) filter: Filter,
    pub(crate) batch_samples: usize,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) sent_samples: AtomicU64,
    pub(crate) failed_samples: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) skipped_segments: AtomicU64,
}

/// A batch being filled: samples per series, and where the WAL stands
/// after its last record.
#[derive(Default)]
struct Batch {
    series: HashMap<SeriesRef, Vec<(i64, f64)>>,
    samples: usize,
    end: Option<Position>,
    started: Option<Instant>,
}

struct Forwarder {
    db: Arc<Db>,
    opts: Options,
    wal_dir: PathBuf,
    cursor_file: PathBuf,
    stats: Arc<Stats>,
    /// Output labels per series ref; `None` for series filtered out.
    series: HashMap<SeriesRef, Option<Labels>>,
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
    let data_dir = data_dir.as_path();
    std::fs::create_dir_all(&dir)?;
    let mut f = Forwarder {
        db,
        opts,
        wal_dir: data_dir.join("wal"),
        cursor_file: dir.join("cursor"),
        stats,
        series: HashMap::new(),
    };
    let cursor = f.load_cursor()?;
    f.db.protect_wal_from(cursor.segment);
    let mut tail = f.catch_up(cursor)?;
    tracing::info!(url = %f.opts.url, segment = tail.pos.segment, offset = tail.pos.offset, "forwarding the WAL with remote write");
    let client = send::Client::new(&f.opts.url)?;
    let mut batch = Batch::default();
    loop {
        if *stopped.borrow() {
            return Ok(());
        }
        let read = tail.read(8 << 20)?;
        if read.skipped_segments > 0 {
            f.stats
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
            f.take(record, &mut batch);
            batch.end = Some(end);
            if batch.samples >= f.opts.batch_samples
                && !f.send(&client, &mut batch, &mut stopped).await?
            {
                return Ok(());
            }
        }
        f.stats
            .pending_bytes
            .store(f.behind(&tail), Ordering::Relaxed);
        let due = batch.samples >= f.opts.batch_samples
            || (batch.samples > 0
                && (idle
                    || batch
                        .started
                        .is_some_and(|s| s.elapsed() > Duration::from_secs(1))));
        if due {
            if !f.send(&client, &mut batch, &mut stopped).await? {
                return Ok(());
            }
        } else if batch.samples == 0
            && let Some(end) = batch.end.take()
        {
            // Only series records or filtered samples: just move on.
            f.save_cursor(end)?;
        }
        if idle {
            tokio::select! {
                _ = stopped.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

impl Forwarder {
    fn load_cursor(&self) -> anyhow::Result<Position> {
        match std::fs::read_to_string(&self.cursor_file) {
            Ok(s) => {
                let mut it = s.split_whitespace().map(str::parse::<u64>);
                match (it.next(), it.next()) {
                    (Some(Ok(segment)), Some(Ok(offset))) => Ok(Position { segment, offset }),
                    _ => {
                        tracing::warn!(file = %self.cursor_file.display(), "unreadable remote-write cursor; starting from the oldest WAL data");
                        Ok(Tail::oldest(&self.wal_dir)?)
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tail::oldest(&self.wal_dir)?),
            Err(e) => Err(e.into()),
        }
    }

    fn save_cursor(&self, pos: Position) -> anyhow::Result<()> {
        let tmp = self.cursor_file.with_extension("tmp");
        std::fs::write(&tmp, format!("{} {}\n", pos.segment, pos.offset))?;
        std::fs::rename(&tmp, &self.cursor_file)?;
        self.db.protect_wal_from(pos.segment);
        Ok(())
    }

    /// Learns the series defined before the cursor (checkpoint and the
    /// WAL up to it) and returns a reader at the cursor.
    fn catch_up(&mut self, cursor: Position) -> anyhow::Result<Tail> {
        for r in Tail::checkpoint(&self.wal_dir)? {
            self.learn(r);
        }
        let mut tail = Tail::new(&self.wal_dir, Tail::oldest(&self.wal_dir)?);
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
        Ok(Tail::new(&self.wal_dir, cursor.max(tail.pos.min(cursor))))
    }

    fn learn(&mut self, r: Record) {
        if let Record::Series(series) = r {
            for (r, kind, labels) in series {
                if kind == crate::model::Kind::Float {
                    self.series.insert(r, self.opts.filter.apply(&labels));
                }
            }
        }
    }

    fn take(&mut self, record: Record, batch: &mut Batch) {
        match record {
            Record::Samples(samples) => {
                for (r, t, v) in samples {
                    if let Some(Some(_)) = self.series.get(&r) {
                        batch.series.entry(r).or_default().push((t, v));
                        batch.samples += 1;
                        batch.started.get_or_insert_with(Instant::now);
                    }
                }
            }
            other => self.learn(other),
        }
    }

    /// WAL bytes not forwarded yet.
    fn behind(&self, tail: &Tail) -> u64 {
        let Ok((_, segments)) = crate::wal::list(&self.wal_dir) else {
            return 0;
        };
        segments
            .iter()
            .filter(|(n, _)| *n >= tail.pos.segment)
            .filter_map(|(n, p)| {
                let len = std::fs::metadata(p).ok()?.len();
                Some(if *n == tail.pos.segment {
                    len.saturating_sub(tail.pos.offset)
                } else {
                    len
                })
            })
            .sum()
    }

    /// Sends the batch until it is accepted (or refused for good);
    /// returns false when stopped first.
    async fn send(
        &self,
        client: &send::Client,
        batch: &mut Batch,
        stopped: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<bool> {
        let body = send::encode(
            batch
                .series
                .iter()
                .filter_map(|(r, s)| Some((self.series.get(r)?.as_ref()?, s.as_slice()))),
        );
        let mut backoff = Duration::from_millis(100);
        loop {
            match client.post(body.clone()).await {
                send::Outcome::Accepted => {
                    self.stats
                        .sent_samples
                        .fetch_add(batch.samples as u64, Ordering::Relaxed);
                    break;
                }
                send::Outcome::Refused(why) => {
                    tracing::warn!(
                        samples = batch.samples,
                        "remote write refused a batch for good: {why}"
                    );
                    self.stats
                        .failed_samples
                        .fetch_add(batch.samples as u64, Ordering::Relaxed);
                    break;
                }
                send::Outcome::Retry(why) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(?backoff, "remote write failed, retrying: {why}");
                    tokio::select! {
                        _ = stopped.changed() => return Ok(false),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        if let Some(end) = batch.end {
            self.save_cursor(end)?;
        }
        *batch = Batch::default();
        Ok(true)
    }
}
