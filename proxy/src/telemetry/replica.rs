//! One telemetry store the proxy reports to.
//!
//! Every store has a buffer of its own, so a store that is slow or down
//! never holds back another. A report leaves the buffer when the store
//! acknowledges it (once committed to its WAL), not when it is written to
//! the stream: after a reconnect, everything unacknowledged is sent again,
//! which is how a restarted store gets back what it missed while down. The
//! store recognises a report it already stored and skips it, so sending
//! again is always safe.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use conduit_api::proto::telemetry::v1::Report;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::config::GrpcAddr;
use crate::identity::Identity;
use crate::metrics::{Registry, lock};

pub(crate) struct Replica {
    addr: GrpcAddr,
    capacity: usize,
    queue: Mutex<Queue>,
    ready: Notify,
    /// Reports meant for this store that did not fit its buffer.
    dropped: AtomicU64,
}

/// Reports not yet acknowledged, oldest first; the first `in_flight` of
/// them are written to the current stream.
#[derive(Default)]
struct Queue {
    reports: VecDeque<Report>,
    in_flight: usize,
}

impl Replica {
    pub(super) fn new(addr: GrpcAddr, capacity: usize) -> Self {
        Self {
            addr,
            capacity: capacity.max(1),
            queue: Mutex::default(),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues a report; a full buffer drops its oldest, sent or not.
    pub(super) fn push(&self, report: Report, registry: &Registry) {
        let mut queue = lock(&self.queue);
        while queue.reports.len() >= self.capacity {
            queue.reports.pop_front();
            queue.in_flight = queue.in_flight.saturating_sub(1);
            self.dropped.fetch_add(1, Relaxed);
            registry
                .proxy
                .telemetry_reports_dropped
                .fetch_add(1, Relaxed);
        }
        queue.reports.push_back(report);
        drop(queue);
        self.ready.notify_one();
    }

    /// The oldest report not yet written to this stream, with this store's
    /// drop count as of now: a report that waited out drops says so.
    async fn next_unsent(&self) -> Report {
        loop {
            if let Some(report) = self.take_unsent() {
                return report;
            }
            self.ready.notified().await;
        }
    }

    fn take_unsent(&self) -> Option<Report> {
        let mut queue = lock(&self.queue);
        let mut report = queue.reports.get(queue.in_flight)?.clone();
        queue.in_flight += 1;
        report.dropped_reports = self.dropped.load(Relaxed);
        Some(report)
    }

    /// The store committed every report up to `sequence`.
    fn acknowledged(&self, sequence: u64) {
        let mut queue = lock(&self.queue);
        while queue
            .reports
            .front()
            .is_some_and(|r| r.sequence <= sequence)
        {
            queue.reports.pop_front();
            queue.in_flight = queue.in_flight.saturating_sub(1);
        }
    }

    /// A new stream starts from the oldest unacknowledged report.
    fn rewind(&self) {
        lock(&self.queue).in_flight = 0;
    }

    /// Streams reports to this store for as long as the proxy runs. The
    /// store must prove the store's identity when its address is mTLS.
    pub(super) async fn send(
        self: Arc<Self>,
        identity: Option<Arc<Identity>>,
        registry: Arc<Registry>,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failures = 0u32;
        loop {
            let connected =
                crate::identity::connect(&self.addr, |i| &i.store, identity.as_deref()).await;
            let reason = match connected {
                Ok(channel) => {
                    self.rewind();
                    self.stream(TelemetryClient::new(channel), &registry, &mut backoff)
                        .await
                }
                Err(e) => format!("cannot connect: {e:#}"),
            };
            failures += 1;
            log_failure(&self.addr, failures, &reason);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One `Stream` call: sends reports and takes acknowledgements until
    /// it fails; returns why.
    async fn stream(
        &self,
        mut client: TelemetryClient<tonic::transport::Channel>,
        registry: &Registry,
        backoff: &mut Backoff,
    ) -> String {
        let (tx, rx) = mpsc::channel::<Report>(1);
        let mut acks = match client.stream(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return format!("{}: {}", status.code(), status.message()),
        };
        loop {
            tokio::select! {
                report = self.next_unsent() => {
                    if tx.send(report).await.is_err() {
                        return "the stream closed".into();
                    }
                    registry.proxy.telemetry_reports_sent.fetch_add(1, Relaxed);
                }
                ack = acks.message() => match ack {
                    Ok(Some(ack)) => {
                        self.acknowledged(ack.sequence);
                        backoff.reset();
                    }
                    Ok(None) => return "the store ended the stream".into(),
                    Err(status) => return format!("{}: {}", status.code(), status.message()),
                },
            }
        }
    }
}

/// Logs the first failures and then every hundredth, so a store that is
/// down for hours does not flood the log.
fn log_failure(addr: &GrpcAddr, failures: u32, reason: &str) {
    if failures <= 3 || failures.is_multiple_of(100) {
        tracing::warn!(%addr, failures, reason, "telemetry stream failed; reconnecting (traffic is unaffected)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sequence: u64) -> Report {
        Report {
            sequence,
            ..Default::default()
        }
    }

    fn replica(capacity: usize) -> (Replica, Registry) {
        let addr: GrpcAddr = "http://127.0.0.1:1".parse().unwrap();
        (
            Replica::new(addr, capacity),
            Registry::new("demo", "web", "web-0", ""),
        )
    }

    fn sequences(r: &Replica) -> Vec<u64> {
        lock(&r.queue).reports.iter().map(|r| r.sequence).collect()
    }

    #[test]
    fn a_report_stays_until_acknowledged_and_is_sent_again_after_a_reconnect() {
        let (r, reg) = replica(10);
        for s in 1..=3 {
            r.push(report(s), &reg);
        }
        assert_eq!(r.take_unsent().unwrap().sequence, 1);
        assert_eq!(r.take_unsent().unwrap().sequence, 2);
        r.acknowledged(1);
        assert_eq!(sequences(&r), [2, 3]);
        // The stream broke with 2 written but not acknowledged.
        r.rewind();
        assert_eq!(r.take_unsent().unwrap().sequence, 2);
        assert_eq!(r.take_unsent().unwrap().sequence, 3);
        assert!(r.take_unsent().is_none());
        r.acknowledged(3);
        assert!(sequences(&r).is_empty());
    }

    #[test]
    fn a_full_buffer_drops_its_oldest_and_the_next_report_says_how_many() {
        let (r, reg) = replica(2);
        r.push(report(1), &reg);
        assert_eq!(r.take_unsent().unwrap().dropped_reports, 0);
        for s in 2..=4 {
            r.push(report(s), &reg);
        }
        // 1 (in flight) and 2 were dropped to make room for 3 and 4.
        assert_eq!(sequences(&r), [3, 4]);
        let next = r.take_unsent().unwrap();
        assert_eq!((next.sequence, next.dropped_reports), (3, 2));
        assert_eq!(reg.proxy.telemetry_reports_dropped.load(Relaxed), 2);
        // A late acknowledgement of the dropped report changes nothing.
        r.acknowledged(1);
        assert_eq!(sequences(&r), [3, 4]);
        assert_eq!(r.take_unsent().unwrap().sequence, 4);
    }
}
