//! What each outbound authority costs a proxy once resolved: its
//! destination subscription, balancer, connection pool and metric series.
//! A sidecar next to a client of many services holds one per service it
//! calls, up to `--outbound-max-authorities` (1 000 by default), so this
//! is the figure that says whether that default fits in a pod's memory.
//!
//! A real controller serves 1 000 services from a discovery file, each
//! with its own endpoint (the controller refuses two pods on one address,
//! so the upstream listens on a port per service); the proxy resolves
//! each through it (a 200 proves it did: nothing else
//! knows these names), and its anonymous memory before and after gives
//! the cost of one, in use and once idle (its reports to a real store
//! sent, as in production). With the controller's defaults this also proves a
//! proxy can resolve as many authorities as its own default allows (the
//! controller once refused the 51st: two streams each, 100 a connection).

use std::time::Duration;

use conduit_testbed::discovery::{Discovery, pod};
use conduit_testbed::{Controller, Store};

use super::load::{self, Target};
use super::peers::{self, Memory};
use crate::scratch::ScratchDir;

const NAMESPACE: &str = "bench";
/// Authorities used before the baseline reading, so that what is
/// allocated once (the controller connection, the first pool) is not
/// charged to the authorities.
const WARM: usize = 10;
/// Telemetry reports after the last request, by when every authority's
/// interval has been reported and it is idle, as most of a sidecar's are.
const IDLE_REPORTS: u32 = 3;
/// The proxy's default `--telemetry-interval`.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct AuthorityCost {
    pub(crate) authorities: usize,
    /// Authorities in use at the `before` reading.
    pub(crate) warm: usize,
    pub(crate) before: Memory,
    /// Right after the last authority's request.
    pub(crate) after: Memory,
    /// [`IDLE_REPORTS`] report intervals later.
    pub(crate) idle: Memory,
}

impl AuthorityCost {
    /// Anonymous KiB per authority past the first `warm`, in use and idle.
    pub(crate) fn per_authority_kib(&self) -> (f64, f64) {
        let per = |m: &Memory| {
            m.anonymous_kib.saturating_sub(self.before.anonymous_kib) as f64
                / (self.authorities - self.warm) as f64
        };
        (per(&self.after), per(&self.idle))
    }
}

fn host(i: usize) -> String {
    format!("svc-{i}.{NAMESPACE}.svc.cluster.local")
}

pub(crate) async fn measure(
    gen_core: Option<usize>,
    proxy_core: Option<usize>,
    authorities: usize,
) -> Result<AuthorityCost, String> {
    let scratch = ScratchDir::new("bench-authorities")?;
    let (_upstream, apps) = peers::upstream(gen_core, authorities)?;
    let file = scratch.path().join("discovery.yaml");
    let mut discovery = Discovery::new(NAMESPACE);
    for (i, app) in apps.iter().enumerate() {
        let name = format!("svc-{i}");
        discovery = discovery
            .deployment(&name, vec![pod(&format!("{name}-0"), *app)])
            .service(&name, 80);
    }
    discovery.write(&file);
    peers::binary("conduit-controller")?;
    // The production configuration: reports pushed to a real store.
    let store = Store::start();
    let controller = Controller::start_with_args(&store.grpc_url(), &file, &[]);
    let (proxy, addrs) = peers::proxy(
        proxy_core,
        apps[0],
        &[
            "--destination-addr".into(),
            controller.destination_url(),
            "--outbound-max-authorities".into(),
            authorities.to_string(),
            "--telemetry-addr".into(),
            store.grpc_url(),
        ],
    )?;
    peers::wait_listening(addrs.outbound, "conduit-proxy").await?;
    let target = |i| Target {
        name: format!("outbound {}", host(i)),
        addr: addrs.outbound,
        host: host(i),
    };
    let mut sender = load::connect(&target(0)).await?;
    for i in 0..WARM {
        load::request(&mut sender, &target(i)).await?;
    }
    let before = proxy.memory()?;
    for i in WARM..authorities {
        load::request(&mut sender, &target(i)).await?;
    }
    let after = proxy.memory()?;
    tokio::time::sleep(REPORT_INTERVAL * IDLE_REPORTS).await;
    let idle = proxy.memory()?;
    Ok(AuthorityCost {
        authorities,
        warm: WARM,
        before,
        after,
        idle,
    })
}
