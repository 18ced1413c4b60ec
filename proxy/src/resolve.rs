//! Resolution: from an outbound authority to its live endpoint set and
//! routing profile.
//!
//! [`Resolve`] is what the outbound side asks. Static endpoints from flags
//! answer it without a control plane; the destination client answers it
//! from the controller; the outbound side falls back to DNS or the original
//! destination when neither knows the authority.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use conduit_api::DeploymentRef;
use tokio::sync::watch;

use crate::config::EndpointSpec;
use crate::profile::Profile;

/// What the control plane says about one endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EndpointMeta {
    pub(crate) deployment: Option<DeploymentRef>,
    pub(crate) identity: Option<String>,
    /// A meshed endpoint: HTTP/1 is carried over HTTP/2.
    pub(crate) h2: bool,
    pub(crate) opaque: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) meta: EndpointMeta,
}

pub(crate) type Targets = Arc<Vec<Target>>;

/// The live answer for one authority.
pub(crate) struct Resolution {
    pub(crate) targets: watch::Receiver<Targets>,
    pub(crate) profile: watch::Receiver<Arc<Profile>>,
}

impl Resolution {
    /// An answer that never changes.
    pub(crate) fn fixed(targets: Vec<Target>) -> Self {
        Self {
            targets: watch::channel(Arc::new(targets)).1,
            profile: watch::channel(Arc::new(Profile::default())).1,
        }
    }
}

pub(crate) enum Resolved {
    Known(Resolution),
    /// Nobody knows this authority: the caller falls back.
    Unknown,
}

pub(crate) type ResolveFuture = Pin<Box<dyn Future<Output = Resolved> + Send>>;

pub(crate) trait Resolve: Send + Sync + 'static {
    /// Resolves when the first answer is known (or known not to come).
    fn resolve(&self, authority: &str) -> ResolveFuture;
}

/// Endpoints given on the command line (`--outbound-endpoint`).
pub(crate) struct StaticResolver {
    by_authority: HashMap<String, Vec<Target>>,
}

impl StaticResolver {
    pub(crate) fn new(specs: &[EndpointSpec]) -> Self {
        let mut by_authority: HashMap<String, Vec<Target>> = HashMap::new();
        for s in specs {
            by_authority
                .entry(s.authority.to_ascii_lowercase())
                .or_default()
                .push(Target {
                    addr: s.addr,
                    meta: EndpointMeta {
                        deployment: s.deployment.clone(),
                        identity: s.identity.clone(),
                        h2: s.h2,
                        opaque: s.opaque,
                    },
                });
        }
        Self { by_authority }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_authority.is_empty()
    }
}

impl Resolve for StaticResolver {
    fn resolve(&self, authority: &str) -> ResolveFuture {
        let answer = match self.by_authority.get(authority) {
            Some(targets) => Resolved::Known(Resolution::fixed(targets.clone())),
            None => Resolved::Unknown,
        };
        Box::pin(std::future::ready(answer))
    }
}

/// Asks each resolver in turn until one knows the authority.
pub(crate) struct Chain(pub(crate) Vec<Arc<dyn Resolve>>);

impl Resolve for Chain {
    fn resolve(&self, authority: &str) -> ResolveFuture {
        let resolvers = self.0.clone();
        let authority = authority.to_string();
        Box::pin(async move {
            for r in resolvers {
                if let Resolved::Known(res) = r.resolve(&authority).await {
                    return Resolved::Known(res);
                }
            }
            Resolved::Unknown
        })
    }
}
