//! Where the public API reads metrics from, chosen at start-up with
//! `--metrics-backend`:
//!
//! - `embedded` (the default): the telemetry store's gRPC query API;
//!   golden metrics come from the proxies' HdrHistograms, exact to their
//!   precision.
//! - `prometheus:URL`: any Prometheus-compatible query API (Prometheus,
//!   VictoriaMetrics, Thanos Query, Mimir) holding the series the store
//!   forwards with `--remote-write-url`; golden metrics are PromQL over
//!   `response_total` and `response_latency_ms_bucket`, so latency
//!   quantiles are interpolated within a histogram bucket.
//!
//! `stat`, `routes`, `edges`, `authz`, the dashboard's charts and the
//! deployment list read through it; pod counts, `top`, `tap` and tap
//! history stay with the store and the proxies.

mod golden;
mod prometheus;

use std::str::FromStr;
use std::time::Duration;

use conduit_api::proto::store::v1 as store;
use tonic::Status;

use crate::store::Store;

pub use prometheus::Limits;

/// The value of `--metrics-backend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    Embedded,
    /// The base URL of the query API (`/api/v1/query` is appended).
    Prometheus(String),
}

impl FromStr for Choice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "embedded" {
            return Ok(Self::Embedded);
        }
        let Some(url) = s.strip_prefix("prometheus:") else {
            return Err(format!(
                "unknown metrics backend {s:?}: use `embedded` or `prometheus:http://HOST:PORT` \
                 (Prometheus, VictoriaMetrics, Thanos Query, Mimir's /prometheus)"
            ));
        };
        prometheus::base_url(url).map(|_| Self::Prometheus(url.trim_end_matches('/').to_string()))
    }
}

#[derive(Clone)]
pub enum MetricsBackend {
    Embedded(Store),
    Prometheus(prometheus::Client),
}

impl MetricsBackend {
    pub fn new(choice: &Choice, store: &Store, limits: Limits) -> anyhow::Result<Self> {
        Ok(match choice {
            Choice::Embedded => Self::Embedded(store.clone()),
            Choice::Prometheus(url) => Self::Prometheus(prometheus::Client::new(url, limits)?),
        })
    }

    /// What `check` and the logs call it.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(store) => format!("the telemetry store at {}", store.addr()),
            Self::Prometheus(client) => client.describe(),
        }
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Embedded(_))
    }

    /// Golden metrics per group, as the store's `Golden` answers them.
    pub async fn golden(&self, req: store::GoldenRequest) -> Result<store::GoldenResponse, Status> {
        match self {
            Self::Embedded(store) => store.golden_answer(req).await,
            Self::Prometheus(client) => golden::answer(client, req).await,
        }
    }

    /// A PromQL instant query at `time_unix_ms` (0: now).
    pub async fn instant_at(
        &self,
        query: String,
        time_unix_ms: i64,
    ) -> Result<Vec<store::Series>, Status> {
        match self {
            Self::Embedded(store) => store.instant_at(query, time_unix_ms).await,
            Self::Prometheus(client) => client.instant(&query, time_unix_ms).await,
        }
    }

    /// The label sets of the series matching a request.
    pub async fn series(&self, req: store::SeriesRequest) -> Result<Vec<store::LabelSet>, Status> {
        match self {
            Self::Embedded(store) => store.series(req).await,
            Self::Prometheus(client) => client.series(&req).await,
        }
    }

    /// How long the backend keeps data, when it says; windows before that
    /// are refused rather than answered as "no traffic". Prometheus-style
    /// backends do not expose it uniformly, so only the store is asked.
    pub async fn retention(&self) -> Result<Option<Duration>, Status> {
        let Self::Embedded(store) = self else {
            return Ok(None);
        };
        let ms = store.status().await?.retention_ms;
        Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("embedded".parse::<Choice>(), Ok(Choice::Embedded));
        assert_eq!(
            "prometheus:http://127.0.0.1:9090/".parse::<Choice>(),
            Ok(Choice::Prometheus("http://127.0.0.1:9090".into()))
        );
        assert_eq!(
            "prometheus:http://mimir:8080/prometheus".parse::<Choice>(),
            Ok(Choice::Prometheus("http://mimir:8080/prometheus".into()))
        );
        let unknown = "influx:http://x".parse::<Choice>().unwrap_err();
        assert!(unknown.contains("prometheus:http://HOST:PORT"), "{unknown}");
        let https = "prometheus:https://x:9090".parse::<Choice>().unwrap_err();
        assert!(https.contains("http://"), "{https}");
        assert!("prometheus:".parse::<Choice>().is_err());
        assert!("prometheus:http://a b".parse::<Choice>().is_err());
    }
}
