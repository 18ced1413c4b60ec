//! The body of `/api/v1/stat/history`: golden metrics of Deployments at
//! evenly spaced moments, each over the trailing `window`.

use conduit_api::json::Golden;
use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct StatHistory {
    pub(crate) series: Vec<StatSeries>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct StatSeries {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) points: Vec<StatPoint>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub(crate) struct StatPoint {
    pub(crate) time_unix_ms: i64,
    pub(crate) metrics: Option<Golden>,
}
