//! Where the controller reads metrics from: the value of its
//! `--metrics-backend` flag, which `conduit install --metrics-backend`
//! passes through, so both accept exactly the same spellings.

use std::fmt;
use std::str::FromStr;

/// `embedded` or `prometheus:http://HOST[:PORT][/PREFIX]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MetricsBackend {
    /// The telemetry store's own query API.
    #[default]
    Embedded,
    /// The base URL of a Prometheus-compatible query API (`/api/v1/query`
    /// is appended), without a trailing slash.
    Prometheus(String),
}

impl FromStr for MetricsBackend {
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
        let url = url.trim_end_matches('/');
        let host = url.strip_prefix("http://").unwrap_or_default();
        if host.is_empty() || host.starts_with('/') {
            return Err(format!(
                "metrics backend URL {url:?}: give http://HOST:PORT of the query API; for an https \
                 endpoint put a TLS-terminating proxy (or sidecar) in front of it"
            ));
        }
        if url.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return Err(format!(
                "metrics backend URL {url:?}: give the base URL, without spaces or a query string"
            ));
        }
        Ok(Self::Prometheus(url.to_string()))
    }
}

impl fmt::Display for MetricsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("embedded"),
            Self::Prometheus(url) => write!(f, "prometheus:{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("embedded".parse(), Ok(MetricsBackend::Embedded));
        let prom = "prometheus:http://127.0.0.1:9090/".parse::<MetricsBackend>();
        assert_eq!(
            prom,
            Ok(MetricsBackend::Prometheus("http://127.0.0.1:9090".into()))
        );
        assert_eq!(
            prom.unwrap().to_string(),
            "prometheus:http://127.0.0.1:9090"
        );
        assert_eq!(
            "prometheus:http://mimir:8080/prometheus".parse(),
            Ok(MetricsBackend::Prometheus(
                "http://mimir:8080/prometheus".into()
            ))
        );
        let unknown = "influx:http://x".parse::<MetricsBackend>().unwrap_err();
        assert!(unknown.contains("prometheus:http://HOST:PORT"), "{unknown}");
        let https = "prometheus:https://x:9090"
            .parse::<MetricsBackend>()
            .unwrap_err();
        assert!(https.contains("TLS-terminating"), "{https}");
        for bad in [
            "prometheus:",
            "prometheus:http://",
            "prometheus:http://a b",
            "prometheus:http://a/?x=1",
        ] {
            assert!(bad.parse::<MetricsBackend>().is_err(), "{bad}");
        }
    }
}
