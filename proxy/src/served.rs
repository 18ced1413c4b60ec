//! The names the proxy's Deployment answers to: the inbound authorities
//! that keep their own `authority` label.
//!
//! Every client writes the `Host` it likes, so a series per inbound
//! authority would let any client choose how many series (and how much
//! memory) the proxy keeps. Only names the proxy knows it serves keep their
//! value; any other authority is labelled `_overflow` and counted. Known
//! are, on any port: the Deployment's names (`NAME`, `NAME.NS`,
//! `NAME.NS.svc`, `NAME.NS.svc.CLUSTER_DOMAIN`, with or without a final
//! dot), the pod's name, `localhost`, and as an IP literal the loopback or
//! the address the client dialed; `--inbound-authority` names (on any port,
//! or only the one given); and the authorities of `--outbound-endpoint`s
//! that name this Deployment.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::config::Config;

pub(crate) struct ServedNames {
    /// Served on any port.
    hosts: HashSet<String>,
    /// `host:port`, served on that port only.
    authorities: HashSet<String>,
}

impl ServedNames {
    pub(crate) fn new(config: &Config) -> Self {
        let mut hosts = HashSet::from(["localhost".to_string()]);
        let mut authorities = HashSet::new();
        if !config.deployment.is_empty() {
            let name = &config.deployment;
            let ns = &config.namespace;
            hosts.extend([
                name.clone(),
                format!("{name}.{ns}"),
                format!("{name}.{ns}.svc"),
                format!("{name}.{ns}.svc.{}", config.cluster_domain),
            ]);
        }
        if !config.pod.is_empty() {
            hosts.insert(config.pod.clone());
        }
        for a in &config.inbound_authorities {
            match a.rsplit_once(':') {
                Some((_, port)) if port.parse::<u16>().is_ok() => authorities.insert(a.clone()),
                _ => hosts.insert(a.clone()),
            };
        }
        let own = config.deployment_ref();
        let own_endpoints = config
            .outbound_endpoints
            .iter()
            .filter(|e| own.is_some() && e.deployment == own);
        authorities.extend(own_endpoints.map(|e| e.authority.to_ascii_lowercase()));
        Self {
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
            authorities,
        }
    }

    /// Whether `authority` (`host:port` in lower case, as
    /// `authority::with_port` writes it) names this Deployment, on a
    /// connection the client made to `dialed`.
    pub(crate) fn serves(&self, authority: &str, dialed: IpAddr) -> bool {
        if self.authorities.contains(authority) {
            return true;
        }
        let Some((host, _port)) = authority.rsplit_once(':') else {
            return false;
        };
        let ip = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .parse::<IpAddr>();
        match ip {
            Ok(ip) => ip == dialed || ip.is_loopback(),
            Err(_) => {
                let host = host.strip_suffix('.').unwrap_or(host);
                self.hosts.contains(host)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        config: Config,
    }

    fn names(extra: &[&str]) -> ServedNames {
        let mut args = vec![
            "proxy",
            "--namespace",
            "shop",
            "--deployment",
            "web",
            "--pod",
            "web-7f9c",
        ];
        args.extend_from_slice(extra);
        ServedNames::new(&Args::parse_from(args).config)
    }

    #[test]
    fn the_deployments_names_are_served_on_any_port() {
        let n = names(&[]);
        let dialed: IpAddr = "10.0.0.7".parse().unwrap();
        for served in [
            "web:80",
            "web.shop:8080",
            "web.shop.svc:80",
            "web.shop.svc.cluster.local:80",
            "web.shop.svc.cluster.local.:80",
            "web-7f9c:9000",
            "localhost:80",
            "10.0.0.7:4143",
            "127.0.0.1:8080",
            "[::1]:80",
        ] {
            assert!(n.serves(served, dialed), "{served}");
        }
        for other in [
            "api:80",
            "web.other:80",
            "web.shop.svc.example.org:80",
            "x.web.shop:80",
            "10.0.0.8:80",
            "attacker-123.example:80",
            "",
        ] {
            assert!(!n.serves(other, dialed), "{other}");
        }
    }

    #[test]
    fn configured_names_and_own_endpoints_are_served() {
        let n = names(&[
            "--inbound-authority",
            "Frontend.shop.svc.cluster.local,www.example.com:443",
            "--outbound-endpoint",
            "store.shop:80=127.0.0.1:1;deployment=shop/web",
            "--outbound-endpoint",
            "db.shop:5432=127.0.0.1:2;deployment=shop/db",
        ]);
        let dialed: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(n.serves("frontend.shop.svc.cluster.local:80", dialed));
        assert!(n.serves("www.example.com:443", dialed));
        assert!(!n.serves("www.example.com:80", dialed), "only its port");
        assert!(n.serves("store.shop:80", dialed));
        assert!(!n.serves("db.shop:5432", dialed), "another Deployment's");
    }
}
