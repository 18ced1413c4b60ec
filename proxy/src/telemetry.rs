//! Telemetry push: one report per interval to the telemetry store, over a
//! long-lived client-streaming gRPC call.
//!
//! Reports are self-contained (cumulative counters, interval histograms),
//! so losing one costs one interval's quantile detail and nothing else.
//! That is what makes it safe to never block on the store: reports wait in
//! a bounded buffer, the oldest is dropped (and counted) when it is full,
//! and the sender reconnects with backoff and jitter while traffic goes on
//! untouched. Interval histograms roll over every interval whether or not a
//! store is configured, which also keeps `/metrics` buckets current.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conduit_api::histogram::LATENCY_VALUE_SCALE;
use conduit_api::metrics as names;
use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{
    CounterSeries, GaugeSeries, HistogramSeries, ProxyMeta, Report,
};
use conduit_api::{DeploymentRef, Labels};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::config::GrpcAddr;
use crate::identity::Identity;
use crate::metrics::{
    HttpStats, Registry, eviction_labels, handshake_labels, lock, overflow_labels, refused_labels,
};
use crate::tap::Tap;

pub(crate) struct Telemetry {
    registry: Arc<Registry>,
    tap: Arc<Tap>,
    interval: Duration,
    capacity: usize,
    meta: ProxyMeta,
    buffer: Mutex<VecDeque<Report>>,
    ready: Notify,
    identity: Option<Arc<Identity>>,
}

impl Telemetry {
    pub(crate) fn new(
        registry: Arc<Registry>,
        tap: Arc<Tap>,
        interval: Duration,
        capacity: usize,
        deployment: Option<DeploymentRef>,
        pod: String,
        identity: Option<Arc<Identity>>,
    ) -> Self {
        let meta = ProxyMeta {
            deployment: deployment.map(Into::into),
            pod,
            identity: identity
                .as_ref()
                .map(|i| i.name().to_string())
                .unwrap_or_default(),
            version: conduit_api::VERSION.to_string(),
            process_start_unix_ms: registry.process_start_unix_ms(),
        };
        Self {
            registry,
            tap,
            interval: interval.max(Duration::from_millis(10)),
            capacity: capacity.max(1),
            meta,
            buffer: Mutex::default(),
            ready: Notify::new(),
            identity,
        }
    }

    /// Builds a report every interval; `push` says whether anyone sends them.
    pub(crate) async fn collect(self: Arc<Self>, push: bool) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut sequence = 0;
        let mut start_ms = crate::clock::unix_ms();
        loop {
            ticker.tick().await;
            if !push {
                self.rollover();
                continue;
            }
            let end_ms = crate::clock::unix_ms();
            sequence += 1;
            let report = self.report(sequence, start_ms, end_ms);
            start_ms = end_ms;
            self.enqueue(report);
        }
    }

    /// Without a store, intervals still end: histograms fold into the
    /// Prometheus buckets and sampled tap events are let go.
    fn rollover(&self) {
        let reg = &self.registry;
        for s in reg.http_series().iter().chain(&reg.route_series()) {
            s.rollover_latency();
        }
        self.tap.drain_sampled();
    }

    fn enqueue(&self, report: Report) {
        let mut buffer = lock(&self.buffer);
        while buffer.len() >= self.capacity {
            buffer.pop_front();
            self.registry
                .proxy
                .telemetry_reports_dropped
                .fetch_add(1, Relaxed);
        }
        buffer.push_back(report);
        drop(buffer);
        self.ready.notify_one();
    }

    /// The oldest waiting report, its drop counts brought up to date: a
    /// report that waited out drops says so when it finally goes.
    async fn next_report(&self) -> Report {
        loop {
            if let Some(mut r) = lock(&self.buffer).pop_front() {
                let p = &self.registry.proxy;
                r.dropped_reports = p.telemetry_reports_dropped.load(Relaxed);
                r.dropped_tap_events = p.tap_events_dropped.load(Relaxed);
                return r;
            }
            self.ready.notified().await;
        }
    }

    /// Streams reports to the store for as long as the proxy runs.
    /// The store must prove the store's identity when `addr` is mTLS.
    pub(crate) async fn send(self: Arc<Self>, addr: GrpcAddr) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut failures = 0u32;
        loop {
            let identity = self.identity.as_deref();
            let reason = match crate::identity::connect(&addr, |i| &i.store, identity).await {
                Ok(channel) => {
                    self.stream(TelemetryClient::new(channel), &mut backoff)
                        .await
                }
                Err(e) => format!("cannot connect: {e:#}"),
            };
            failures += 1;
            log_failure(&addr, failures, &reason);
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One `Report` call: sends reports until it fails; returns why.
    async fn stream(
        &self,
        mut client: TelemetryClient<tonic::transport::Channel>,
        backoff: &mut Backoff,
    ) -> String {
        let (tx, rx) = mpsc::channel::<Report>(1);
        let call = client.report(ReceiverStream::new(rx));
        tokio::pin!(call);
        loop {
            let report = tokio::select! {
                r = self.next_report() => r,
                res = &mut call => return ended(res),
            };
            tokio::select! {
                sent = tx.send(report) => {
                    if sent.is_err() {
                        return "the stream closed".into();
                    }
                    self.registry.proxy.telemetry_reports_sent.fetch_add(1, Relaxed);
                    backoff.reset();
                }
                res = &mut call => {
                    return ended(res);
                }
            }
        }
    }

    fn report(&self, sequence: u64, start_ms: i64, end_ms: i64) -> Report {
        let reg = &self.registry;
        let mut out = Series::default();
        for s in reg.http_series() {
            out.http(
                &s,
                names::REQUEST_TOTAL,
                names::RESPONSE_TOTAL,
                names::RESPONSE_LATENCY_MS,
            );
        }
        for s in reg.route_series() {
            out.http(
                &s,
                names::ROUTE_REQUEST_TOTAL,
                names::ROUTE_RESPONSE_TOTAL,
                names::ROUTE_RESPONSE_LATENCY_MS,
            );
            out.counter(
                names::ROUTE_RETRY_TOTAL,
                s.labels().labels().clone(),
                s.retries(),
            );
            out.counter(
                names::ROUTE_RETRY_BUDGET_EXHAUSTED_TOTAL,
                s.labels().labels().clone(),
                s.retries_skipped(),
            );
        }
        for s in reg.tcp_series() {
            let Some(labels) = s.labels().map(|l| l.labels().clone()) else {
                continue;
            };
            out.counter(
                names::TCP_OPEN_TOTAL,
                labels.clone(),
                s.open_total.load(Relaxed),
            );
            out.counter(
                names::TCP_CLOSE_TOTAL,
                labels.clone(),
                s.close_total.load(Relaxed),
            );
            out.counter(
                names::TCP_READ_BYTES_TOTAL,
                labels.clone(),
                s.read_bytes.load(Relaxed),
            );
            out.counter(
                names::TCP_WRITE_BYTES_TOTAL,
                labels.clone(),
                s.write_bytes.load(Relaxed),
            );
            out.gauges.push(GaugeSeries {
                metric: names::TCP_OPEN_CONNECTIONS.into(),
                labels: labels.to_proto(),
                value: s.open_connections() as f64,
            });
        }
        let local = reg.local_labels().labels().clone();
        let p = &reg.proxy;
        let dropped_reports = p.telemetry_reports_dropped.load(Relaxed);
        let dropped_tap_events = p.tap_events_dropped.load(Relaxed);
        if let Some(creds) = reg.credentials() {
            if let Some(expiry) = creds.expiry_unix() {
                out.gauges.push(GaugeSeries {
                    metric: names::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS.into(),
                    labels: local.to_proto(),
                    value: expiry as f64,
                });
            }
            out.counter(
                names::IDENTITY_CERT_REFRESH_TOTAL,
                local.clone(),
                creds.refreshes.load(Relaxed),
            );
            out.counter(
                names::IDENTITY_CERT_REFRESH_FAILURES_TOTAL,
                local.clone(),
                creds.refresh_failures.load(Relaxed),
            );
        }
        for (key, n) in reg.authz_counts() {
            let mut l = local.clone();
            for (name, value) in key.labels() {
                l.insert(name, value);
            }
            out.counter(key.family().name, l, n);
        }
        let with = |pairs: &[(&'static str, &str)]| {
            let mut l = local.clone();
            for (name, value) in pairs {
                l.insert(*name, *value);
            }
            l
        };
        let refused = p.inbound_proxy_port_refused.load(Relaxed);
        out.counter(
            names::INBOUND_CONNECTIONS_REFUSED_TOTAL,
            with(&refused_labels()),
            refused,
        );
        for (labels, n) in p.learned_overflow() {
            out.counter(names::LEARNED_ROUTES_OVERFLOW_TOTAL, with(&labels), n);
        }
        for ((family, reason), n) in reg.overflow_counts() {
            let l = with(&overflow_labels(family, reason));
            out.counter(names::METRICS_LABEL_SETS_OVERFLOW_TOTAL, l, n);
        }
        for (family, n) in reg.eviction_counts() {
            let l = with(&eviction_labels(family));
            out.counter(names::METRICS_LABEL_SETS_EVICTED_TOTAL, l, n);
        }
        for ((direction, reason), n) in reg.handshake_failures() {
            let l = with(&handshake_labels(direction, reason));
            out.counter(names::TLS_HANDSHAKE_FAILURES_TOTAL, l, n);
        }
        for (name, value) in [
            (
                names::TELEMETRY_REPORTS_SENT_TOTAL,
                p.telemetry_reports_sent.load(Relaxed),
            ),
            (names::TELEMETRY_REPORTS_DROPPED_TOTAL, dropped_reports),
            (
                names::TAP_EVENTS_SAMPLED_TOTAL,
                p.tap_events_sampled.load(Relaxed),
            ),
            (names::TAP_EVENTS_DROPPED_TOTAL, dropped_tap_events),
            (
                names::DESTINATION_PROFILES_REJECTED_TOTAL,
                p.profiles_rejected.load(Relaxed),
            ),
        ] {
            out.counter(name, local.clone(), value);
        }
        Report {
            proxy: Some(self.meta.clone()),
            sequence,
            start_unix_ms: start_ms,
            end_unix_ms: end_ms,
            counters: out.counters,
            gauges: out.gauges,
            histograms: out.histograms,
            tap_events: self.tap.drain_sampled(),
            dropped_reports,
            dropped_tap_events,
        }
    }
}

fn ended(res: Result<tonic::Response<impl std::fmt::Debug>, tonic::Status>) -> String {
    match res {
        Ok(summary) => format!("the store ended the stream ({:?})", summary.into_inner()),
        Err(status) => format!("{}: {}", status.code(), status.message()),
    }
}

/// Logs the first failures and then every hundredth, so a store that is
/// down for hours does not flood the log.
fn log_failure(addr: &GrpcAddr, failures: u32, reason: &str) {
    if failures <= 3 || failures.is_multiple_of(100) {
        tracing::warn!(%addr, failures, reason, "telemetry stream failed; reconnecting (traffic is unaffected)");
    }
}

#[derive(Default)]
struct Series {
    counters: Vec<CounterSeries>,
    gauges: Vec<GaugeSeries>,
    histograms: Vec<HistogramSeries>,
}

impl Series {
    fn counter(&mut self, metric: &str, labels: Labels, value: u64) {
        self.counters.push(CounterSeries {
            metric: metric.into(),
            labels: labels.to_proto(),
            value: value as f64,
        });
    }

    fn http(&mut self, s: &HttpStats, requests: &str, responses: &str, latency: &str) {
        let labels = s.labels().labels();
        self.counter(requests, labels.clone(), s.requests());
        for (key, n) in s.responses() {
            let mut l = labels.clone();
            for (name, value) in key.labels() {
                l.insert(name, value);
            }
            self.counter(responses, l, n);
        }
        if let Some(interval) = s.rollover_latency() {
            self.histograms.push(HistogramSeries {
                metric: latency.into(),
                labels: labels.to_proto(),
                hdr: interval.hdr,
                value_scale: LATENCY_VALUE_SCALE,
                sum: interval.sum_ms,
            });
        }
    }
}
