//! The proxies' report stream (`conduit.telemetry.v1.Telemetry/Report`).
//!
//! Each report is committed (WAL first) before the next one is read, so a
//! proxy's stream applies back-pressure instead of piling up in memory;
//! proxies drop their oldest reports themselves when the store is slow.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use conduit_api::metrics::label;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::telemetry::v1::telemetry_server::Telemetry;
use conduit_api::proto::telemetry::v1::{ProxyMeta, Report, ReportSummary};
use conduit_api::{IdentityName, Labels};
use conduit_identity::grpc::PeerInfo;
use tonic::{Request, Response, Status, Streaming};

use super::{Ingester, SeriesError, WriteSummary, attribution, valid_metric_name};
use crate::db::Batch;
use crate::head::{Kind, Window};
use crate::series::METRIC_NAME;

/// A proxy as last seen.
#[derive(Clone, Debug)]
pub(crate) struct ProxyStatus {
    pub(crate) meta: ProxyMeta,
    pub(crate) last_report_ms: i64,
    pub(crate) dropped_reports: u64,
}

/// Proxies by (namespace, deployment, pod).
#[derive(Default)]
pub(crate) struct Proxies(Mutex<HashMap<(String, String, String), ProxyStatus>>);

impl Proxies {
    fn seen(&self, meta: &ProxyMeta, dropped_reports: u64) {
        let d = meta.deployment.clone().unwrap_or_default();
        let key = (d.namespace, d.name, meta.pod.clone());
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(
            key,
            ProxyStatus {
                meta: meta.clone(),
                last_report_ms: crate::time::now_ms(),
                dropped_reports,
            },
        );
    }

    /// Proxies that reported since `since_ms`, sorted.
    pub(crate) fn since(&self, since_ms: i64) -> Vec<ProxyStatus> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(&(String, String, String), &ProxyStatus)> = map
            .iter()
            .filter(|(_, p)| p.last_report_ms >= since_ms)
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out.into_iter().map(|(_, p)| p.clone()).collect()
    }
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
        if let Some(tap) = &self.tap
            && !report.tap_events.is_empty()
        {
            let mut events = std::mem::take(&mut report.tap_events);
            if let Some(sender) = sender {
                events = self.attribution.own_tap_events(events, &meta, sender);
            }
            tap.offer(events);
        }
        proxies.seen(&meta, report.dropped_reports);
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
        let mut summary = WriteSummary::default();
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
        for (metric, labels, value) in float_series {
            match series_labels(&metric, labels, &meta, sender)
                .and_then(|l| Ok(self.db.series(l, Kind::Float)?))
            {
                Ok(s) => batch.floats.push((s, (t, value))),
                Err(e) => summary.reject(&e),
            }
        }
        for h in report.histograms {
            let result = series_labels(&h.metric, h.labels, &meta, sender).and_then(|labels| {
                let hist = conduit_api::histogram::decode(&h.hdr)
                    .map_err(|e| SeriesError::Histogram(e.to_string()))?;
                let window = Window::from_histogram(start, t, &hist, h.sum, h.value_scale);
                self.histogram(labels, window, &hist, &mut batch)
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

/// The series' labels: its own, plus the reporting proxy's namespace,
/// deployment and pod where it does not set them; a series that names
/// another workload, or another identity on the proxy's own side, is
/// refused.
fn series_labels(
    metric: &str,
    labels: Vec<mesh::Label>,
    meta: &ProxyMeta,
    sender: Option<&IdentityName>,
) -> Result<Labels, SeriesError> {
    if !valid_metric_name(metric) {
        return Err(SeriesError::MetricName(metric.to_string()));
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
    ] {
        if l.get(name).is_none() && !value.is_empty() {
            l.insert(name, value);
        }
    }
    Ok(l)
}

pub(crate) struct TelemetryService {
    pub(crate) ingester: Arc<Ingester>,
    pub(crate) proxies: Arc<Proxies>,
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

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    async fn report(
        &self,
        request: Request<Streaming<Report>>,
    ) -> Result<Response<ReportSummary>, Status> {
        let sender = PeerInfo::of(&request).and_then(|p| p.identity.clone());
        let mut stream = request.into_inner();
        let mut out = ReportSummary::default();
        while let Some(mut report) = stream.message().await? {
            attribute(&self.ingester, &mut report, sender.as_ref())?;
            let (ingester, proxies, sender) =
                (self.ingester.clone(), self.proxies.clone(), sender.clone());
            let summary = tokio::task::spawn_blocking(move || {
                ingester.report(report, &proxies, sender.as_ref())
            })
            .await
            .map_err(|e| Status::internal(format!("ingest task failed: {e}")))?
            .map_err(|e| Status::unavailable(format!("cannot write the WAL: {e}")))?;
            if let Some(err) = &summary.first_error {
                tracing::debug!(
                    rejected = summary.rejected_series,
                    "report with rejected series: {err}"
                );
            }
            out.accepted_reports += 1;
            out.rejected_series += summary.rejected_series;
        }
        Ok(Response::new(out))
    }
}
