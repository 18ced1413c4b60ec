//! One shard of remote write out: the batches of its series, sent one
//! request at a time, so each series' samples reach the receiver in the
//! order they were written (receivers refuse out-of-order samples) while
//! the other shards' requests are in flight beside it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::cursor::Cursor;
use super::{Stats, send};
use crate::series::SeriesRef;
use crate::wal::tail::Position;

/// The shard of a series: stable across restarts (the cursor's lines
/// depend on it), spread evenly over consecutive refs.
pub(crate) fn of(series: SeriesRef, shards: usize) -> usize {
    (series.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % shards
}

/// A series' samples in a batch, in the order written.
pub(crate) type SeriesSamples = (Arc<send::Series>, Vec<(i64, f64)>);

/// A shard's samples up to `end` in the WAL; none when it only moves the
/// shard's cursor on.
pub(crate) struct Batch {
    pub(crate) series: Vec<SeriesSamples>,
    pub(crate) samples: usize,
    pub(crate) end: Position,
}

pub(crate) struct Shard {
    pub(crate) index: usize,
    pub(crate) client: Arc<send::Client>,
    pub(crate) cursor: Arc<Cursor>,
    pub(crate) stats: Arc<Stats>,
}

impl Shard {
    /// Sends each batch until it is accepted (or refused for good), then
    /// saves the shard's cursor; ends when the batches do or when stopped.
    pub(crate) async fn run(
        self,
        mut batches: mpsc::Receiver<Batch>,
        mut stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        while let Some(batch) = batches.recv().await {
            if batch.samples > 0 && !self.deliver(&batch, &mut stopped).await {
                return Ok(());
            }
            self.cursor.ack(self.index, batch.end)?;
        }
        Ok(())
    }

    /// False when stopped before the receiver answered for good.
    async fn deliver(&self, batch: &Batch, stopped: &mut watch::Receiver<bool>) -> bool {
        let body = send::encode(batch.series.iter().map(|(s, v)| (&**s, v.as_slice())));
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.client.post(body.clone()).await {
                send::Outcome::Accepted => {
                    self.stats
                        .sent_samples
                        .fetch_add(batch.samples as u64, Ordering::Relaxed);
                    return true;
                }
                send::Outcome::Refused(why) => {
                    tracing::warn!(
                        shard = self.index,
                        samples = batch.samples,
                        "remote write refused a batch for good: {why}"
                    );
                    self.stats
                        .failed_samples
                        .fetch_add(batch.samples as u64, Ordering::Relaxed);
                    return true;
                }
                send::Outcome::Retry(why) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        shard = self.index,
                        ?backoff,
                        "remote write failed, retrying: {why}"
                    );
                    tokio::select! {
                        _ = stopped.changed() => return false,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_series_spread_over_every_shard() {
        for shards in [2, 4, 7, 64] {
            let mut counts = vec![0; shards];
            for r in 1..=(shards as u64 * 100) {
                counts[of(r, shards)] += 1;
            }
            assert!(
                counts.iter().all(|&c| c > 50 && c < 150),
                "{shards} shards: {counts:?}"
            );
        }
        assert!((1..1000).all(|r| of(r, 1) == 0));
    }
}
