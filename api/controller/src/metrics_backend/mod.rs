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

use std::time::Duration;

use conduit_api::metrics_backend::MetricsBackend as Choice;
use conduit_api::proto::store::v1 as store;
use tonic::Status;

use crate::store::Store;

pub use prometheus::Limits;

#[derive(Clone)]
pub enum MetricsBackend {
    Embedded(Store),
    /// Boxed: the HTTP client with its connection pool is many times the
    /// store client's size.
    Prometheus(Box<prometheus::Client>),
}

impl MetricsBackend {
    pub fn new(choice: &Choice, store: &Store, limits: Limits) -> anyhow::Result<Self> {
        Ok(match choice {
            Choice::Embedded => Self::Embedded(store.clone()),
            Choice::Prometheus(url) => {
                Self::Prometheus(Box::new(prometheus::Client::new(url, limits)?))
            }
        })
    }

    /// What `check` and the logs call it.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded(store) => {
                let addrs: Vec<&str> = store.addrs().collect();
                format!("the telemetry store at {}", addrs.join(","))
            }
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
