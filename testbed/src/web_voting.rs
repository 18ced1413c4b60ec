//! The smallest mesh an end-to-end test of the control plane needs: web's
//! proxy calls voting's, found through discovery, and both report to the
//! telemetry store(s) given; voting's application answers as its
//! [`UpstreamSpec`] says (e.g. failing every tenth request). Namespace
//! `demo`, one pod each, voting's profile has a `vote` route.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::discovery::Discovery;
use crate::{Proxy, ProxySpec, Upstream, UpstreamSpec, drive_load};

/// Voting's authority as web's application calls it.
pub const VOTING: &str = "voting.demo.svc.cluster.local:8080";

pub struct WebVoting {
    pub web: Proxy,
    pub voting: Proxy,
    _apps: (Upstream, Upstream),
}

pub struct WebVotingSpec<'a> {
    /// The proxies' `--telemetry-addr` (one store or a comma-separated pair).
    pub telemetry: String,
    /// The controller's destination URL.
    pub destination: String,
    /// The controller's discovery file, which this mesh writes.
    pub discovery: &'a Path,
    pub voting: UpstreamSpec,
}

impl WebVoting {
    pub fn start(spec: WebVotingSpec<'_>) -> Self {
        let proxy = |deployment: &str, app| {
            Proxy::start(ProxySpec {
                namespace: "demo",
                deployment,
                pod: &format!("{deployment}-0"),
                app,
                telemetry: Some(spec.telemetry.clone()),
                destination: Some(spec.destination.clone()),
                extra: vec![],
            })
        };
        let voting_app = Upstream::start(spec.voting);
        let web_app = Upstream::start(UpstreamSpec::default());
        let voting = proxy("voting", voting_app.addr);
        let web = proxy("web", web_app.addr);
        Discovery::new("demo")
            .deployment("web", vec![web.discovery_pod("web-0")])
            .deployment("voting", vec![voting.discovery_pod("voting-0")])
            .service("web", 8080)
            .service("voting", 8080)
            .path_routes("voting", &[("vote", "^/api/vote.*$")])
            .write(spec.discovery);
        Self {
            web,
            voting,
            _apps: (voting_app, web_app),
        }
    }

    /// Sends requests until web's proxy routes them to voting (discovery
    /// is picked up live).
    pub fn warm_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (codes, _) = drive_load(
                self.web.outbound,
                VOTING,
                &["/warmup"],
                20,
                Duration::from_millis(500),
            );
            if codes.keys().all(|s| *s == 200 || *s == 500) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the mesh never routed: {codes:?}"
            );
        }
    }
}
