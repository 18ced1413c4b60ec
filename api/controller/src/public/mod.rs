//! `conduit.public.v1.Api`: what `conduit` and the dashboard read.
//!
//! Metrics come from the telemetry store (golden metrics, series, status,
//! tap history), never recomputed here; pod counts and proxy addresses
//! come from discovery; live tap comes straight from the proxies. The HTTP
//! API ([`crate::rest`]) calls the same methods, so gRPC and JSON answers
//! cannot disagree.

use std::sync::Arc;
use std::time::Duration;

use conduit_api::DeploymentRef;
use conduit_api::deployment::{ParseError, validate_name, validate_namespace};
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::public::v1::{self as pb, api_server::Api};
use conduit_api::proto::tap::v1 as tap_pb;
use conduit_api::time_range::TimeRange;
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::discovery::{Discovery, Snapshot};
use crate::identity::issuer::Issuer;
use crate::links::Links;
use crate::metrics_backend::MetricsBackend;
use crate::store::Store;

mod authz;
mod certificates;
mod check;
mod diagnostics;
mod edges;
mod exposure;
mod identity_check;
mod routes;
mod stat;
pub mod tap;
mod top;

pub use stat::History;

pub type ServerStream<T> = std::pin::Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The default window of stat, routes and top.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct PublicApi {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Where golden metrics, routes, edges and authz counts come from.
    metrics: MetricsBackend,
    links: Links,
    /// The identity service's issuer, for `check`; `None` with identity off.
    issuer: Option<Arc<Issuer>>,
    discovery: Arc<dyn Discovery>,
    settings: Settings,
    /// Live tap and top streams being served.
    live: Arc<tokio::sync::Semaphore>,
}

/// How the API presents itself and whom it serves.
pub struct Settings {
    /// `local` or `kubernetes`, for Version.
    pub mode: String,
    pub dashboard_url: String,
    pub access: crate::access::Access,
    /// Live tap and top streams at once (`--max-live-taps`).
    pub max_live_taps: usize,
}

impl PublicApi {
    pub fn new(
        (store, metrics): (Store, MetricsBackend),
        links: Links,
        issuer: Option<Arc<Issuer>>,
        discovery: Arc<dyn Discovery>,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                metrics,
                links,
                issuer,
                discovery,
                live: Arc::new(tokio::sync::Semaphore::new(settings.max_live_taps.max(1))),
                settings,
            }),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn metrics(&self) -> &MetricsBackend {
        &self.inner.metrics
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.discovery.snapshots().borrow().clone()
    }

    fn snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.discovery.snapshots()
    }

    /// Whether the caller of `req` may see the requests of `deployment`'s
    /// namespace (`None`: of the whole mesh); see [`crate::access`].
    async fn may_tap<T>(
        &self,
        req: &Request<T>,
        deployment: Option<&mesh::DeploymentRef>,
    ) -> Result<(), Status> {
        let credential = crate::access::credential(&req.metadata().clone().into_headers());
        let namespace = deployment
            .map(|d| d.namespace.as_str())
            .filter(|n| !n.is_empty());
        self.inner
            .settings
            .access
            .may_tap(credential.as_deref(), namespace)
            .await
    }

    /// A slot for one more live tap or top stream, held while it runs.
    fn live_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.inner.live.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the controller is serving {} live tap and top streams (--max-live-taps); try again when one ends",
                self.inner.settings.max_live_taps
            ))
        })
    }

    /// Whether `token` opens this API to a browser (the dashboard's `/auth`).
    pub fn accepts_session(&self, token: &str) -> bool {
        self.inner.settings.access.accepts_session(token)
    }
}

/// `stream`, holding `slot` until it ends or its client goes away.
fn holding<T: Send + 'static>(
    stream: ServerStream<T>,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> ServerStream<T> {
    use futures_util::StreamExt;
    Box::pin(stream.map(move |item| {
        let _held = &slot;
        item
    }))
}

/// Which Deployments a request is about: `namespace: None` means all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Scope {
    pub fn from_selector(sel: Option<pb::Selector>) -> Result<Self, Status> {
        let sel = sel.unwrap_or_default();
        let namespace = if sel.all_namespaces {
            None
        } else if sel.namespace.is_empty() {
            Some("default".to_string())
        } else {
            Some(valid("namespace", sel.namespace, validate_namespace)?)
        };
        let name = (!sel.name.is_empty())
            .then(|| valid("deployment name", sel.name, validate_name))
            .transpose()?;
        Ok(Self { namespace, name })
    }

    pub fn contains(&self, d: &DeploymentRef) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == d.namespace)
            && self.name.as_ref().is_none_or(|n| *n == d.name)
    }
}

fn valid(
    what: &str,
    name: String,
    rule: fn(&str) -> Result<(), ParseError>,
) -> Result<String, Status> {
    rule(&name).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))?;
    Ok(name)
}

/// A Deployment named by a request, which must be present and valid.
pub fn deployment_arg(what: &str, d: Option<mesh::DeploymentRef>) -> Result<DeploymentRef, Status> {
    let d = d.ok_or_else(|| Status::invalid_argument(format!("{what} is required")))?;
    let namespace = if d.namespace.is_empty() {
        "default".to_string()
    } else {
        valid(
            &format!("{what} namespace"),
            d.namespace,
            validate_namespace,
        )?
    };
    if d.name.is_empty() {
        return Err(Status::invalid_argument(format!("{what} needs a name")));
    }
    Ok(DeploymentRef::new(
        namespace,
        valid(&format!("{what} name"), d.name, validate_name)?,
    ))
}

/// An optional Deployment (`from`, `to`): absent or empty means none.
pub fn optional_deployment(
    what: &str,
    d: Option<mesh::DeploymentRef>,
) -> Result<Option<DeploymentRef>, Status> {
    match d {
        Some(d) if !d.name.is_empty() => deployment_arg(what, Some(d)).map(Some),
        _ => Ok(None),
    }
}

pub fn window(d: Option<prost_types::Duration>, default: Duration) -> Result<Duration, Status> {
    let Some(d) = d else {
        return Ok(default);
    };
    let out_of_range = || {
        Status::invalid_argument(format!(
            "window must be between {} and {}",
            conduit_api::duration::format(conduit_api::duration::MIN_WINDOW),
            conduit_api::duration::format(conduit_api::duration::MAX_WINDOW)
        ))
    };
    let secs = u64::try_from(d.seconds).map_err(|_| out_of_range())?;
    let nanos = u32::try_from(d.nanos).map_err(|_| out_of_range())?;
    let w = Duration::new(secs, nanos);
    if w < conduit_api::duration::MIN_WINDOW || w > conduit_api::duration::MAX_WINDOW {
        return Err(out_of_range());
    }
    Ok(w)
}

/// The window `(start, end]` of a request: from `start_unix_ms` (0: the
/// `window`, default `default`, before the end) to `end_unix_ms` (0: now).
pub fn time_range(
    window_field: Option<prost_types::Duration>,
    start_unix_ms: i64,
    end_unix_ms: i64,
    default: Duration,
) -> Result<TimeRange, Status> {
    if start_unix_ms < 0 || end_unix_ms < 0 {
        return Err(Status::invalid_argument(
            "start_unix_ms and end_unix_ms must not be negative (0 means the default)",
        ));
    }
    let now = crate::store::now_unix_ms();
    let end_ms = if end_unix_ms > 0 { end_unix_ms } else { now };
    let start_ms = if start_unix_ms > 0 {
        start_unix_ms
    } else {
        let w = window(window_field, default)?;
        end_ms.saturating_sub(i64::try_from(w.as_millis()).unwrap_or(i64::MAX))
    };
    let range = TimeRange { start_ms, end_ms };
    range
        .check(now)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(range)
}

impl PublicApi {
    /// Refuses a window older than the metrics backend keeps (when it
    /// says how long), so an empty answer never passes for "no traffic".
    async fn within_retention(&self, range: &TimeRange) -> Result<(), Status> {
        let Some(retention) = self.metrics().retention().await? else {
            return Ok(());
        };
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        range
            .check_retention(retention_ms, crate::store::now_unix_ms())
            .map_err(|e| Status::out_of_range(e.to_string()))
    }
}

pub fn not_found(d: &DeploymentRef) -> Status {
    Status::not_found(format!(
        "deployment {d} not found: discovery does not know it and no proxy of it reported \
         metrics; `conduit stat deploy -n {}` lists the Deployments",
        d.namespace
    ))
}

/// Checks a tap filter for values no request could match.
/// A server stream fed by a task; the task ends when the client leaves.
pub fn async_stream<T, F, Fut>(body: F) -> ServerStream<T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl Api for PublicApi {
    async fn version(
        &self,
        _: Request<pb::VersionRequest>,
    ) -> Result<Response<pb::VersionResponse>, Status> {
        Ok(Response::new(pb::VersionResponse {
            version: conduit_api::VERSION.to_string(),
            mode: self.inner.settings.mode.clone(),
            dashboard_url: self.inner.settings.dashboard_url.clone(),
        }))
    }

    async fn list_deployments(
        &self,
        req: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        self.list(req.into_inner()).await.map(Response::new)
    }

    async fn stat(
        &self,
        req: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        self.stat_rows(req.into_inner()).await.map(Response::new)
    }

    type TopStream = ServerStream<pb::TopUpdate>;

    async fn top(&self, req: Request<pb::TopRequest>) -> Result<Response<Self::TopStream>, Status> {
        self.may_tap(&req, req.get_ref().deployment.as_ref())
            .await?;
        let slot = self.live_slot()?;
        let stream = self.top_stream(req.into_inner()).await?;
        Ok(Response::new(holding(stream, slot)))
    }

    type TapStream = ServerStream<tap_pb::TapEvent>;

    async fn tap(&self, req: Request<pb::TapRequest>) -> Result<Response<Self::TapStream>, Status> {
        self.may_tap(&req, req.get_ref().deployment.as_ref())
            .await?;
        let slot = self.live_slot()?;
        let stream = self.tap_stream(req.into_inner()).await?;
        Ok(Response::new(holding(stream, slot)))
    }

    async fn search_tap(
        &self,
        req: Request<pb::SearchTapRequest>,
    ) -> Result<Response<pb::SearchTapResponse>, Status> {
        self.may_tap(&req, req.get_ref().deployment.as_ref())
            .await?;
        self.search(req.into_inner()).await.map(Response::new)
    }

    async fn certificates(
        &self,
        req: Request<pb::CertificatesRequest>,
    ) -> Result<Response<pb::CertificatesResponse>, Status> {
        self.pod_certificates(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn proxy_diagnostics(
        &self,
        req: Request<pb::ProxyDiagnosticsRequest>,
    ) -> Result<Response<pb::ProxyDiagnosticsResponse>, Status> {
        // What a proxy sees describes the mesh as tap does: tap's check.
        self.may_tap(&req, req.get_ref().deployment.as_ref())
            .await?;
        self.pod_diagnostics(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn edges(
        &self,
        req: Request<pb::EdgesRequest>,
    ) -> Result<Response<pb::EdgesResponse>, Status> {
        self.edge_list(req.into_inner()).await.map(Response::new)
    }

    async fn routes(
        &self,
        req: Request<pb::RoutesRequest>,
    ) -> Result<Response<pb::RoutesResponse>, Status> {
        self.route_rows(req.into_inner()).await.map(Response::new)
    }

    async fn authz(
        &self,
        req: Request<pb::AuthzRequest>,
    ) -> Result<Response<pb::AuthzResponse>, Status> {
        self.authz_rows(req.into_inner()).await.map(Response::new)
    }

    async fn check(
        &self,
        _: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        Ok(Response::new(self.run_checks().await))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_default_to_the_default_namespace() {
        let s = Scope::from_selector(None).unwrap();
        assert_eq!(s.namespace.as_deref(), Some("default"));
        let all = Scope::from_selector(Some(pb::Selector {
            namespace: "demo".into(),
            all_namespaces: true,
            name: String::new(),
        }))
        .unwrap();
        assert_eq!(all.namespace, None);
        assert!(
            Scope::from_selector(Some(pb::Selector {
                name: "Bad_Name".into(),
                ..Default::default()
            }))
            .is_err()
        );
    }

    #[test]
    fn windows_outside_the_bounds_are_rejected() {
        let d = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
        assert_eq!(window(None, DEFAULT_WINDOW).unwrap(), DEFAULT_WINDOW);
        assert_eq!(window(d(30), DEFAULT_WINDOW).unwrap().as_secs(), 30);
        for bad in [0, -5, 90_000] {
            assert_eq!(
                window(d(bad), DEFAULT_WINDOW).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
