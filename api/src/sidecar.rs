//! What a meshed pod, its sidecar proxy and the proxy's iptables setup
//! (`conduit-proxy init`) agree on: the proxy's ports and the user it runs
//! as. `conduit inject` writes these into pod specs, `conduit-proxy init`
//! redirects traffic to them, and the proxy listens on them; keeping them in
//! one place keeps the three from drifting apart.

use std::fmt;
use std::str::FromStr;

/// Where iptables redirects connections coming into the pod.
pub const INBOUND_PORT: u16 = 4143;
/// Where iptables redirects connections the pod's containers open.
pub const OUTBOUND_PORT: u16 = 4140;
/// The admin server: `/metrics`, `/ready`, `/live`.
pub const ADMIN_PORT: u16 = 4191;
/// The live tap gRPC endpoint.
pub const TAP_PORT: u16 = 4190;
/// The proxy's user id. Its own connections are not redirected, which is
/// what keeps proxied traffic from looping back into the proxy.
pub const PROXY_UID: u32 = 2102;

/// A port or an inclusive range of ports, as `--skip-inbound-ports
/// 25,8000-8100` takes them: `conduit inject` checks what the user typed and
/// `conduit-proxy init` reads the same text back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortRangeError {
    #[error("{0:?} is not a port (1-65535) or a range of ports like 8000-8100")]
    Invalid(String),
    #[error("{0:?} is an empty range: the first port must not be above the last")]
    Reversed(String),
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || PortRangeError::Invalid(s.to_string());
        let port = |p: &str| match p.trim().parse::<u16>() {
            Ok(0) | Err(_) => Err(invalid()),
            Ok(port) => Ok(port),
        };
        let (first, last) = match s.split_once('-') {
            Some((first, last)) => (port(first)?, port(last)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(PortRangeError::Reversed(s.to_string()));
        }
        Ok(Self { first, last })
    }
}

/// Parses a comma-separated list of ports and ranges (`"25, 8000-8100"`);
/// an empty text is an empty list.
pub fn parse_port_list(s: &str) -> Result<Vec<PortRange>, PortRangeError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

/// The text [`parse_port_list`] reads back.
pub fn format_port_list(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(PortRange::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_round_trip() {
        let ports = parse_port_list(" 25, 8000-8100,443 ").unwrap();
        assert_eq!(
            ports,
            [
                PortRange::single(25),
                PortRange {
                    first: 8000,
                    last: 8100
                },
                PortRange::single(443)
            ]
        );
        assert_eq!(format_port_list(&ports), "25,8000-8100,443");
        assert_eq!(parse_port_list(""), Ok(vec![]));
    }

    #[test]
    fn bad_ports_are_rejected() {
        for bad in ["0", "65536", "http", "80-", "-80", "1-2-3"] {
            assert!(
                matches!(parse_port_list(bad), Err(PortRangeError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_port_list("90-80"),
            Err(PortRangeError::Reversed("90-80".into()))
        );
    }
}
