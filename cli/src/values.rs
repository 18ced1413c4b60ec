//! Parsers of command-line values that clap checks before anything runs,
//! so a bad value is a usage error (exit code 2) with a clear message.

use std::str::FromStr;
use std::time::Duration;

use conduit_api::deployment::validate_namespace;
use conduit_api::time_range::TimePoint;

/// A Deployment named as `deploy/NAME` (also `deployment/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeployName(pub(crate) String);

impl FromStr for DeployName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let target: conduit_api::ResourceTarget = s.parse().map_err(|e| format!("{e}"))?;
        target
            .name
            .map(DeployName)
            .ok_or_else(|| format!("{s:?} names no Deployment: use deploy/NAME"))
    }
}

/// A metrics window: `30s`, `1m`, `1h`; 1 s to 24 h.
pub(crate) fn window(s: &str) -> Result<Duration, String> {
    conduit_api::duration::parse_window(s).map_err(|e| e.to_string())
}

/// One end of a window: how long ago (`2h`) or an RFC 3339 time.
pub(crate) fn time_point(s: &str) -> Result<TimePoint, String> {
    s.parse()
        .map_err(|e: conduit_api::time_range::TimePointError| e.to_string())
}

/// A look-back span such as `10m`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    match conduit_api::duration::parse(s) {
        Ok(d) if d.is_zero() => Err("must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn namespace(s: &str) -> Result<String, String> {
    validate_namespace(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// A path prefix: absolute, like the paths it is compared with.
pub(crate) fn path_prefix(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} must start with '/'"))
    }
}

/// An HTTP method, in upper case as it appears on the wire.
pub(crate) fn method(s: &str) -> Result<String, String> {
    let valid = !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not an HTTP method (GET, POST, ...)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert_eq!("deploy/web".parse(), Ok(DeployName("web".into())));
        assert!(
            "deploy"
                .parse::<DeployName>()
                .unwrap_err()
                .contains("names no Deployment")
        );
        assert!("pod/web".parse::<DeployName>().is_err());
        assert!(window("0s").is_err());
        assert!(window("1x").is_err());
        assert!(time_point("2h").is_ok());
        assert!(time_point("2026-12-07T13:00:00Z").is_ok());
        assert!(time_point("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(path_prefix("api").is_err());
        assert!(method("get").is_err());
        assert_eq!(method("DELETE"), Ok("DELETE".into()));
    }
}
