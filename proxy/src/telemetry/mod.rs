//! Telemetry push: one report per interval to each telemetry store, over
//! a long-lived gRPC stream that acknowledges every report.
//!
//! Reports are self-contained (cumulative counters, interval histograms),
//! so losing one costs one interval's quantile detail and nothing else.
//! That is what makes it safe to never block on a store: each store has a
//! bounded buffer of its own ([`replica`]), the oldest report is dropped
//! (and counted) when it is full, and the sender reconnects with backoff
//! and jitter while traffic goes on untouched. Interval histograms roll
//! over every interval whether or not a store is configured, which also
//! keeps `/metrics` buckets current.
//!
//! Two stores make a pair that survives losing one, as Prometheus HA pairs
//! do: both get every report, and neither waits for the other.

mod replica;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use conduit_api::histogram::LATENCY_VALUE_SCALE;
use conduit_api::metrics as names;
use conduit_api::proto::telemetry::v1::{
    CounterSeries, GaugeSeries, HistogramSeries, ProxyMeta, Report,
};
use conduit_api::{DeploymentRef, Labels};

use crate::config::GrpcAddr;
use crate::identity::Identity;
use crate::metrics::{
    HttpStats, Registry, eviction_labels, handshake_labels, overflow_labels, refused_labels,
};
use crate::recorder::Recorder;
use crate::tap::Tap;

pub(crate) struct Telemetry {
    registry: Arc<Registry>,
    tap: Arc<Tap>,
    interval: Duration,
    meta: ProxyMeta,
    stores: Vec<Arc<replica::Replica>>,
    identity: Option<Arc<Identity>>,
}

/// Where reports go: the stores and how many reports each may hold.
pub(crate) struct Stores {
    pub(crate) addrs: Vec<GrpcAddr>,
    pub(crate) buffer: usize,
}

impl Telemetry {
    pub(crate) fn new(
        registry: Arc<Registry>,
        tap: Arc<Tap>,
        interval: Duration,
        stores: Stores,
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
            pod_template_hash: registry.version().to_string(),
        };
        let stores = stores
            .addrs
            .into_iter()
            .map(|addr| Arc::new(replica::Replica::new(addr, stores.buffer)))
            .collect();
        Self {
            registry,
            tap,
            interval: interval.max(Duration::from_millis(10)),
            meta,
            stores,
            identity,
        }
    }

    /// Builds a report every interval and hands it to every store's sender.
    /// The senders are tasks of this one's: stopping it stops them.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut senders = tokio::task::JoinSet::new();
        for store in &self.stores {
            let (identity, registry) = (self.identity.clone(), self.registry.clone());
            senders.spawn(store.clone().send(identity, registry));
        }
        self.collect().await;
    }

    async fn collect(&self) {
        let push = !self.stores.is_empty();
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
            s.rollover_latency(self.tap.recorder());
        }
        self.tap.recorder().refresh();
        self.tap.drain_sampled();
    }

    fn enqueue(&self, report: Report) {
        let Some((last, others)) = self.stores.split_last() else {
            return;
        };
        for store in others {
            store.push(report.clone(), &self.registry);
        }
        last.push(report, &self.registry);
    }

    fn report(&self, sequence: u64, start_ms: i64, end_ms: i64) -> Report {
        let reg = &self.registry;
        let mut out = Series::new(self.tap.recorder());
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
                names::TAP_EVENTS_RECORDED_TOTAL,
                p.tap_events_recorded.load(Relaxed),
            ),
            (
                names::TAP_RECORDER_OVERFLOW_TOTAL,
                p.tap_recorder_overflow.load(Relaxed),
            ),
            (
                names::DESTINATION_PROFILES_REJECTED_TOTAL,
                p.profiles_rejected.load(Relaxed),
            ),
        ] {
            out.counter(name, local.clone(), value);
        }
        self.tap.recorder().refresh();
        Report {
            proxy: Some(self.meta.clone()),
            sequence,
            start_unix_ms: start_ms,
            end_unix_ms: end_ms,
            counters: out.counters,
            gauges: out.gauges,
            histograms: out.histograms,
            tap_events: self.tap.drain_sampled(),
            // Each store's own count, set when the report goes to it.
            dropped_reports: 0,
            dropped_tap_events,
        }
    }
}

struct Series<'a> {
    recorder: &'a Recorder,
    counters: Vec<CounterSeries>,
    gauges: Vec<GaugeSeries>,
    histograms: Vec<HistogramSeries>,
}

impl<'a> Series<'a> {
    fn new(recorder: &'a Recorder) -> Self {
        Self {
            recorder,
            counters: Vec::new(),
            gauges: Vec::new(),
            histograms: Vec::new(),
        }
    }

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
        if let Some(interval) = s.rollover_latency(self.recorder) {
            self.histograms.push(HistogramSeries {
                metric: latency.into(),
                labels: labels.to_proto(),
                hdr: interval.hdr,
                value_scale: LATENCY_VALUE_SCALE,
                sum: interval.sum_ms,
                exemplars: interval.exemplars,
            });
        }
    }
}
