//! `Check`: what the controller can tell about the mesh's health. The CLI
//! adds what only it can see (that it reached the controller, that the
//! versions match).

use std::collections::BTreeSet;

use conduit_api::metrics::family;
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;

use super::PublicApi;
use crate::discovery::{HealthStatus, Snapshot};

const CONTROL_PLANE: &str = "conduit-control-plane";
const STORE: &str = "conduit-telemetry-store";
const METRICS_BACKEND: &str = "conduit-metrics-backend";
const DATA_PLANE: &str = "conduit-data-plane";
/// Pods listed by name in a hint at most.
const NAMED_PODS: usize = 5;

pub(super) fn result(
    category: &str,
    description: impl Into<String>,
    status: pb::CheckStatus,
    hint: impl Into<String>,
) -> pb::CheckResult {
    pb::CheckResult {
        category: category.to_string(),
        description: description.into(),
        status: status.into(),
        hint: hint.into(),
    }
}

pub(super) fn ok(category: &str, description: impl Into<String>) -> pb::CheckResult {
    result(category, description, pb::CheckStatus::Ok, "")
}

impl PublicApi {
    pub(super) async fn run_checks(&self) -> pb::CheckResponse {
        let mut results = vec![ok(
            CONTROL_PLANE,
            format!(
                "controller {} is running ({} mode)",
                conduit_api::VERSION,
                self.inner.settings.mode
            ),
        )];
        for h in self.inner.discovery.health() {
            let status = match h.status {
                HealthStatus::Ok => pb::CheckStatus::Ok,
                HealthStatus::Warning => pb::CheckStatus::Warning,
                HealthStatus::Failed => pb::CheckStatus::Failed,
            };
            results.push(result(CONTROL_PLANE, h.description, status, h.hint));
        }
        let now = conduit_identity::credentials::unix_now();
        results.extend(super::identity_check::roots(
            self.inner.issuer.as_deref(),
            now,
        ));
        match self.store().status().await {
            Ok(status) => {
                results.extend(store_checks(&status));
                results.push(proxies_check(&self.snapshot(), &status));
                if self.inner.issuer.is_some()
                    && let Ok(series) = self
                        .metrics()
                        .instant_at(super::identity_check::expiry_query(), 0)
                        .await
                {
                    results.push(super::identity_check::proxies(&series, now));
                }
            }
            Err(e) => results.push(result(
                STORE,
                "a telemetry store answers",
                pb::CheckStatus::Failed,
                e.message(),
            )),
        }
        results.extend(self.pair_checks().await);
        if !self.metrics().is_embedded() {
            results.push(self.metrics_backend_check().await);
        }
        results.extend(self.exposure_checks().await);
        pb::CheckResponse { results }
    }

    /// An external metrics backend answers PromQL and holds the proxies'
    /// series (the store forwards them with `--remote-write-url`).
    async fn metrics_backend_check(&self) -> pb::CheckResult {
        let backend = self.metrics().describe();
        let requests = family::REQUEST_TOTAL.name();
        let description = format!("{backend} answers and holds the proxies' {requests}");
        match self
            .metrics()
            .instant_at(format!("count({requests})"), 0)
            .await
        {
            Err(e) => result(
                METRICS_BACKEND,
                description,
                pb::CheckStatus::Failed,
                e.message(),
            ),
            Ok(series) if series.is_empty() => result(
                METRICS_BACKEND,
                description,
                pb::CheckStatus::Warning,
                format!(
                    "it has no {requests} series of the last 5 minutes: start the telemetry store \
                     with --remote-write-url pointing at its remote-write receiver"
                ),
            ),
            Ok(_) => ok(METRICS_BACKEND, description),
        }
    }
}

impl PublicApi {
    /// With a pair of stores, whether each answers: the other hides a
    /// store that is down from every other check.
    async fn pair_checks(&self) -> Vec<pb::CheckResult> {
        let each = self.store().each_status().await;
        if each.len() < 2 {
            return Vec::new();
        }
        each.into_iter()
            .map(|(addr, status)| {
                let what = format!("the telemetry store at {addr} answers");
                match status {
                    Ok(_) => ok(STORE, what),
                    Err(e) => result(
                        STORE,
                        what,
                        pb::CheckStatus::Failed,
                        format!("{}; its twin answers meanwhile", e.message()),
                    ),
                }
            })
            .collect()
    }
}

fn store_checks(status: &store::StatusResponse) -> Vec<pb::CheckResult> {
    let mut out = vec![ok(STORE, "the telemetry store answers")];
    out.push(if status.version == conduit_api::VERSION {
        ok(
            STORE,
            format!(
                "the store's version matches the controller's ({})",
                status.version
            ),
        )
    } else {
        result(
            STORE,
            "the store's version matches the controller's",
            pb::CheckStatus::Warning,
            format!(
                "store {} vs controller {}: upgrade them together",
                status.version,
                conduit_api::VERSION
            ),
        )
    });
    out.push(if status.reports_received_total > 0 {
        ok(
            STORE,
            format!(
                "the store is ingesting ({} reports, {} active series)",
                status.reports_received_total, status.active_series
            ),
        )
    } else {
        result(
            STORE,
            "the store is ingesting",
            pb::CheckStatus::Warning,
            "no proxy has reported yet: meshed pods push every second once they run",
        )
    });
    out
}

fn proxies_check(snap: &Snapshot, status: &store::StatusResponse) -> pb::CheckResult {
    let reporting: BTreeSet<(String, String)> = status
        .proxies
        .iter()
        .filter_map(|p| p.proxy.as_ref())
        .filter_map(|m| Some((m.deployment.as_ref()?.namespace.clone(), m.pod.clone())))
        .collect();
    let meshed: Vec<(String, String)> = snap
        .deployments
        .iter()
        .flat_map(|(d, info)| {
            info.pods
                .iter()
                .filter(|p| p.meshed)
                .map(|p| (d.namespace.clone(), p.name.clone()))
        })
        .collect();
    let silent: Vec<_> = meshed.iter().filter(|p| !reporting.contains(*p)).collect();
    if silent.is_empty() {
        return ok(
            DATA_PLANE,
            format!(
                "every meshed pod's proxy is reporting ({} pods)",
                meshed.len()
            ),
        );
    }
    let names: Vec<String> = silent
        .iter()
        .take(NAMED_PODS)
        .map(|(ns, pod)| format!("{ns}/{pod}"))
        .collect();
    let more = silent.len().saturating_sub(NAMED_PODS);
    result(
        DATA_PLANE,
        "every meshed pod's proxy is reporting",
        pb::CheckStatus::Warning,
        format!(
            "{} of {} meshed pods have not reported recently: {}{}; check that their proxies \
             run and reach the store",
            silent.len(),
            meshed.len(),
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    )
}
