//! The proxies' report streams (`conduit.telemetry.v1.Telemetry/Report`,
//! and `/Stream`, which acknowledges each report).
//!
//! Each report is committed (WAL first) before the next one is read, so a
//! proxy's stream applies back-pressure instead of piling up in memory;
//! proxies drop their oldest reports themselves when the store is slow.
//!
//! A proxy sends again what was not acknowledged when it reconnects, so
//! the store may get a report twice (its acknowledgement was lost with the
//! connection). The proxy table remembers each proxy's last report and
//! skips a repeat whole: its counters would be harmless, but its tap events
//! would be indexed twice.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use conduit_api::metrics::label;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::telemetry::v1::telemetry_server::Telemetry;
use conduit_api::proto::telemetry::v1::{ProxyMeta, Report, ReportAck, ReportSummary};
use conduit_api::{IdentityName, Labels};
use conduit_identity::grpc::PeerInfo;
use tonic::{Request, Response, Status, Streaming};

use super::{Ingester, SeriesError, WriteSummary, attribution, valid_metric_name};
use crate::db::Batch;
use crate::head::MemSeries;
use crate::model::{Kind, Window};
use crate::series::hash::FastBuild;
use crate::series::{METRIC_NAME, SeriesRef};

/// A proxy as last seen.
#[derive(Clone, Debug)]
pub(crate) struct ProxyStatus {
    pub(crate) meta: ProxyMeta,
    pub(crate) last_report_ms: i64,
    pub(crate) dropped_reports: u64,
}

/// The series a proxy's reports write, counted against
/// `--max-series-per-proxy`.
pub(crate) type ProxySeries = Arc<Mutex<HashSet<SeriesRef, FastBuild>>>;

struct ProxyEntry {
    status: ProxyStatus,
    series: ProxySeries,
    /// The order of its last report (many share a millisecond).
    order: u64,
    /// The `sequence` of its last report.
    sequence: u64,
}

/// What the proxy table says of a report.
enum Seen {
    /// A report this store has not stored yet; `missed`: how many reports
    /// meant for this store the proxy dropped since its last one here.
    New { series: ProxySeries, missed: u64 },
    /// One this store already stored.
    Repeat,
}

type ProxyKey = (String, String, String);

#[derive(Default)]
struct ProxyTable {
    map: HashMap<ProxyKey, ProxyEntry>,
    reports: u64,
}

/// Proxies by (namespace, deployment, pod): at most `max` of them, those
/// not seen for a while forgotten, so pods that come and go (or names a
/// peer makes up) cannot grow the table without end.
pub(crate) struct Proxies {
    table: Mutex<ProxyTable>,
    max: usize,
    pub(crate) evicted: AtomicU64,
}

impl Proxies {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            table: Mutex::default(),
            max: max.max(1),
            evicted: AtomicU64::new(0),
        }
    }

    /// Notes a report of the proxy's, unless it is one already stored.
    /// Sequence 0 means a sender that does not number its reports.
    fn seen(&self, meta: &ProxyMeta, sequence: u64, dropped_reports: u64) -> Seen {
        let d = meta.deployment.clone().unwrap_or_default();
        let key = (d.namespace, d.name, meta.pod.clone());
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let previous = table
            .map
            .get(&key)
            .filter(|p| p.status.meta.process_start_unix_ms == meta.process_start_unix_ms);
        if previous.is_some_and(|p| sequence != 0 && sequence <= p.sequence) {
            return Seen::Repeat;
        }
        let missed =
            dropped_reports.saturating_sub(previous.map_or(0, |p| p.status.dropped_reports));
        if !table.map.contains_key(&key) && table.map.len() >= self.max {
            let evicted = evict_oldest_quarter(&mut table.map);
            self.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
        table.reports += 1;
        let order = table.reports;
        let status = ProxyStatus {
            meta: meta.clone(),
            last_report_ms: crate::time::now_ms(),
            dropped_reports,
        };
        match table.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let entry = o.get_mut();
                entry.status = status;
                entry.order = order;
                entry.sequence = sequence;
                Seen::New {
                    series: entry.series.clone(),
                    missed,
                }
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let series = ProxySeries::default();
                v.insert(ProxyEntry {
                    status,
                    series: series.clone(),
                    order,
                    sequence,
                });
                Seen::New { series, missed }
            }
        }
    }

    /// Forgets proxies not seen since `before_ms`.
    pub(crate) fn forget_before(&self, before_ms: i64) {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .retain(|_, p| p.status.last_report_ms >= before_ms);
    }

    /// Proxies that reported since `since_ms`, sorted.
    pub(crate) fn since(&self, since_ms: i64) -> Vec<ProxyStatus> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(&ProxyKey, &ProxyStatus)> = table
            .map
            .iter()
            .filter(|(_, p)| p.status.last_report_ms >= since_ms)
            .map(|(k, p)| (k, &p.status))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, p)| p.clone()).collect()
    }
}

/// Makes room in a full table at once for many newcomers: dropping only
/// the oldest entry per newcomer would scan the table each time.
fn evict_oldest_quarter(map: &mut HashMap<ProxyKey, ProxyEntry>) -> u64 {
    let mut order: Vec<u64> = map.values().map(|p| p.order).collect();
    let k = order.len() / 4;
    let (_, cutoff, _) = order.select_nth_unstable(k);
    let cutoff = *cutoff;
    let before = map.len();
    map.retain(|_, p| p.order > cutoff);
    (before - map.len()) as u64
}

impl Ingester {
    /// Stores one report: counters and gauges at the report's end time,
    /// histograms as windows plus cumulative bucket series.
    /// `sender`: the identity the report's stream proved, when the store
    /// runs with mTLS (the report is already attributed to it).
    pub(crate) fn report(
        &self,
        mut report: Report,
        proxies: &Proxies,
        sender: Option<&IdentityName>,
    ) -> std::io::Result<WriteSummary> {
        self.stats.reports.fetch_add(1, Ordering::Relaxed);
        let meta = report.proxy.clone().unwrap_or_default();
        let Seen::New {
            series: owned,
            missed,
        } = proxies.seen(&meta, report.sequence, report.dropped_reports)
        else {
            self.stats.reports_repeated.fetch_add(1, Ordering::Relaxed);
            return Ok(WriteSummary::default());
        };
        if missed > 0 {
            self.stats
                .reports_missed
                .fetch_add(missed, Ordering::Relaxed);
            let d = meta.deployment.clone().unwrap_or_default();
            tracing::info!(
                namespace = d.namespace,
                deployment = d.name,
                pod = meta.pod,
                missed,
                "reports meant for this store were dropped by the proxy (its buffer filled while this store was unreachable)"
            );
        }
        if let Some(tap) = &self.tap
            && !report.tap_events.is_empty()
        {
            let mut events = std::mem::take(&mut report.tap_events);
            if let Some(sender) = sender {
                events = self.attribution.own_tap_events(events, &meta, sender);
            }
            tap.offer(events);
        }
        let t = if report.end_unix_ms > 0 {
            report.end_unix_ms
        } else {
            crate::time::now_ms()
        };
        let start = if report.start_unix_ms > 0 {
            report.start_unix_ms
        } else {
            t
        };
        if let Some(refused) = self.refuse_bad_times(&report, start, t) {
            return Ok(refused);
        }
        let mut summary = WriteSummary::default();
        self.cut_to_size(&mut report, &mut summary);
        let mut owned = owned.lock().unwrap_or_else(|e| e.into_inner());
        if owned.len() >= self.limits.max_series_per_proxy {
            // Series the head dropped as idle no longer count; once per
            // report, as each scan is the whole budget.
            owned.retain(|r| self.db.head.get(*r).is_some());
        }
        let mut batch = Batch::default();
        let float_series = report
            .counters
            .into_iter()
            .map(|c| (c.metric, c.labels, c.value))
            .chain(
                report
                    .gauges
                    .into_iter()
                    .map(|g| (g.metric, g.labels, g.value)),
            );
        let max_labels = self.limits.max_labels_per_series;
        for (metric, labels, value) in float_series {
            match series_labels(&metric, labels, &meta, max_labels, sender)
                .and_then(|l| self.series_of_proxy(&mut owned, l, Kind::Float))
            {
                Ok(s) => batch.floats.push((s, (t, value))),
                Err(e) => summary.reject(&e),
            }
        }
        for h in report.histograms {
            let result =
                series_labels(&h.metric, h.labels, &meta, max_labels, sender).and_then(|labels| {
                    let hist = conduit_api::histogram::decode(&h.hdr)
                        .map_err(|e| SeriesError::Histogram(e.to_string()))?;
                    super::check_scale(h.value_scale)?;
                    let window = Window::from_histogram(start, t, &hist, h.sum, h.value_scale);
                    let series =
                        self.series_of_proxy(&mut owned, labels.clone(), Kind::Histogram)?;
                    self.exemplars.add(&labels, &h.exemplars);
                    self.histogram(series, labels, window, &hist, &mut batch)
                });
            if let Err(e) = result {
                summary.reject(&e);
            }
        }
        summary.outcome = self.db.commit(&batch)?;
        self.stats
            .report_series_rejected
            .fetch_add(summary.rejected_series, Ordering::Relaxed);
        Ok(summary)
    }
}

impl Ingester {
    /// Cuts a report with more series than `--max-series-per-report` to
    /// that many (counters first, then gauges, then histograms): the rest
    /// of a proxy's report is still worth storing.
    fn cut_to_size(&self, report: &mut Report, summary: &mut WriteSummary) {
        let max = self.limits.max_series_per_report;
        let total = report.counters.len() + report.gauges.len() + report.histograms.len();
        if total <= max {
            return;
        }
        report.counters.truncate(max);
        report.gauges.truncate(max - report.counters.len());
        report
            .histograms
            .truncate(max - report.counters.len() - report.gauges.len());
        let cut = (total - max) as u64;
        self.stats
            .report_series_cut
            .fetch_add(cut, Ordering::Relaxed);
        summary.rejected_series += cut;
        summary.first_error.get_or_insert_with(|| {
            format!(
                "report of {total} series, more than --max-series-per-report {max}: the last {cut} were dropped"
            )
        });
    }

    /// The series of `labels`, counted against its proxy's budget: a
    /// series the proxy has not written yet is refused, and not created,
    /// once it writes `--max-series-per-proxy` others.
    fn series_of_proxy(
        &self,
        owned: &mut HashSet<SeriesRef, FastBuild>,
        labels: Labels,
        kind: Kind,
    ) -> Result<Arc<MemSeries>, SeriesError> {
        if let Some(s) = self.db.head.find_labels(&labels, kind)
            && owned.contains(&s.r)
        {
            return Ok(s);
        }
        let max = self.limits.max_series_per_proxy;
        if owned.len() >= max {
            self.stats
                .proxy_series_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(SeriesError::ProxyLimit(max));
        }
        let s = self.db.series(labels, kind)?;
        owned.insert(s.r);
        Ok(s)
    }

    /// A report dated beyond the future window (or before 1970, or ending
    /// before it starts) is refused whole, before any of its series is
    /// created: the store trusts a proxy's clock that far and no further.
    fn refuse_bad_times(&self, report: &Report, start: i64, end: i64) -> Option<WriteSummary> {
        let valid = crate::db::valid_times(self.db.max_future_ms());
        if valid.contains(&end) && (0..=end).contains(&start) {
            return None;
        }
        self.stats
            .reports_refused_time
            .fetch_add(1, Ordering::Relaxed);
        let series = report.counters.len() + report.gauges.len() + report.histograms.len();
        Some(WriteSummary {
            rejected_series: series as u64,
            first_error: Some(format!(
                "report from {start} to {end} (Unix ms) is dated beyond --future-window of the store's clock, before 1970, or ends before it starts: check the proxy's clock"
            )),
            ..WriteSummary::default()
        })
    }
}

/// The series' labels: its own, plus the reporting proxy's namespace,
/// deployment, pod and version where it does not set them; a series that names
/// another workload, or another identity on the proxy's own side, is
/// refused.
fn series_labels(
    metric: &str,
    labels: Vec<mesh::Label>,
    meta: &ProxyMeta,
    max_labels: usize,
    sender: Option<&IdentityName>,
) -> Result<Labels, SeriesError> {
    if !valid_metric_name(metric) {
        return Err(SeriesError::MetricName(metric.to_string()));
    }
    if labels.len() > max_labels {
        return Err(SeriesError::TooManyLabels(max_labels));
    }
    let mut l = Labels::from_proto(labels).map_err(|e| match e {
        conduit_api::labels::LabelError::InvalidName(n) => SeriesError::LabelName(n),
        conduit_api::labels::LabelError::Duplicate(n) => SeriesError::Duplicate(n),
    })?;
    if l.get(METRIC_NAME).is_some() {
        return Err(SeriesError::LabelName(METRIC_NAME.to_string()));
    }
    if let Some(name) = sender.and_then(|s| attribution::foreign_label(&l, meta, s)) {
        return Err(SeriesError::Foreign(name));
    }
    l.insert(METRIC_NAME, metric);
    let d = meta.deployment.clone().unwrap_or_default();
    for (name, value) in [
        (label::NAMESPACE, d.namespace),
        (label::DEPLOYMENT, d.name),
        (label::POD, meta.pod.clone()),
        (label::POD_TEMPLATE_HASH, meta.pod_template_hash.clone()),
    ] {
        if l.get(name).is_none() && !value.is_empty() {
            l.insert(name, value);
        }
    }
    Ok(l)
}

#[derive(Clone)]
pub(crate) struct TelemetryService {
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) proxies: Arc<Proxies>,
    /// A stream with no report for this long is ended: proxies report
    /// every interval, and a silent stream only holds a slot.
    pub(crate) idle_timeout: std::time::Duration,
}

impl TelemetryService {
    async fn next_report(&self, stream: &mut Streaming<Report>) -> Result<Option<Report>, Status> {
        let idle = self.idle_timeout;
        tokio::time::timeout(idle, stream.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no report for {idle:?} (--grpc-report-idle-timeout): reconnect to go on reporting"
                ))
            })?
    }
}

/// Holds a report to the identity its stream proved: refused when it
/// names a workload the sender does not run as; its claimed identity is
/// replaced by the proven one.
fn attribute(
    ingester: &Ingester,
    report: &mut Report,
    sender: Option<&IdentityName>,
) -> Result<(), Status> {
    let Some(sender) = sender else {
        return Ok(());
    };
    let meta = report.proxy.get_or_insert_default();
    if let Err(refusal) = ingester.attribution.check(sender, meta) {
        tracing::warn!(%sender, reason = refusal.reason(), "telemetry report refused");
        return Err(refusal.status(sender, meta));
    }
    meta.identity = sender.to_string();
    Ok(())
}

impl TelemetryService {
    /// Attributes and commits one report of a stream whose peer proved
    /// `sender`.
    async fn commit(
        &self,
        mut report: Report,
        sender: Option<&IdentityName>,
    ) -> Result<WriteSummary, Status> {
        attribute(&self.ingester, &mut report, sender)?;
        let (ingester, proxies, sender) =
            (self.ingester.clone(), self.proxies.clone(), sender.cloned());
        let summary =
            tokio::task::spawn_blocking(move || ingester.report(report, &proxies, sender.as_ref()))
                .await
                .map_err(|e| Status::internal(format!("ingest task failed: {e}")))?
                .map_err(|e| Status::unavailable(format!("cannot write the WAL: {e}")))?;
        if let Some(err) = &summary.first_error {
            tracing::debug!(
                rejected = summary.rejected_series,
                "report with rejected series: {err}"
            );
        }
        Ok(summary)
    }
}

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    async fn report(
        &self,
        request: Request<Streaming<Report>>,
    ) -> Result<Response<ReportSummary>, Status> {
        let sender = PeerInfo::of(&request).and_then(|p| p.identity.clone());
        let mut stream = request.into_inner();
        let mut out = ReportSummary::default();
        while let Some(report) = self.next_report(&mut stream).await? {
            let summary = self.commit(report, sender.as_ref()).await?;
            out.accepted_reports += 1;
            out.rejected_series += summary.rejected_series;
        }
        Ok(Response::new(out))
    }

    type StreamStream = tokio_stream::wrappers::ReceiverStream<Result<ReportAck, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<Report>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let sender = PeerInfo::of(&request).and_then(|p| p.identity.clone());
        let mut stream = request.into_inner();
        // One acknowledgement in flight: the next report is read only once
        // the proxy's side takes it, as `report` reads one at a time.
        let (acks, rx) = tokio::sync::mpsc::channel(1);
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let report = match service.next_report(&mut stream).await {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(e) => return drop(acks.send(Err(e)).await),
                };
                let sequence = report.sequence;
                let ack = service
                    .commit(report, sender.as_ref())
                    .await
                    .map(|s| ReportAck {
                        sequence,
                        rejected_series: s.rejected_series,
                    });
                let failed = ack.is_err();
                if acks.send(ack).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}
