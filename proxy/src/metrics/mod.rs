//! The proxy's measurements: one set of counters and one latency histogram
//! per label set, shared by `/metrics` (Prometheus text) and the telemetry
//! push.
//!
//! Label sets are looked up once per connection or endpoint, not per
//! request: callers keep the `Arc` they get and the hot path only touches
//! atomics and two short-held locks. Each family's label sets are bounded
//! and forgotten when idle ([`label_sets`]).

mod label_sets;
mod latency;
mod prom;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use conduit_api::metrics::family::{self, Meta};
use conduit_api::metrics::labels::{
    self, Authz, Endpoint, Handshake, Label, LabelSets as LabelSetsLabel, OwnReason, Peer, Response,
};
use conduit_api::metrics::{self as names, label};
use conduit_api::proto::telemetry::v1::Exemplar;
use conduit_api::{Classification, Direction, ErrorReason, Labels};
use conduit_identity::Credentials;

use self::label_sets::{Found, Key, LabelSets};
use crate::recorder::Recorder;
pub(crate) use latency::{IntervalLatency, LatencyHistogram, PromHistogram};

/// A series' labels: the proxy's own (`namespace`, `deployment`, `pod`,
/// `pod_template_hash`) followed by the series' pairs. Empty values are left out, as Prometheus
/// does.
pub(crate) struct SeriesLabels {
    prom: String,
    labels: Labels,
}

impl SeriesLabels {
    fn new(local: &[(&'static str, String)], pairs: &[(&'static str, &str)]) -> Self {
        let all = local
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .chain(pairs.iter().copied())
            .filter(|(_, v)| !v.is_empty());
        let mut prom = String::new();
        let mut labels = Labels::new();
        for (name, value) in all {
            if !prom.is_empty() {
                prom.push(',');
            }
            prom::push_label(&mut prom, name, value);
            labels.insert(name, value);
        }
        Self { prom, labels }
    }

    /// `name="value",...` without braces.
    pub(crate) fn prom(&self) -> &str {
        &self.prom
    }

    pub(crate) fn labels(&self) -> &Labels {
        &self.labels
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ResponseKey {
    pub(crate) status: u16,
    pub(crate) grpc_status: Option<i32>,
    pub(crate) class: Classification,
    /// Set when the proxy answered itself or failed the request.
    pub(crate) error_reason: Option<ErrorReason>,
}

impl ResponseKey {
    /// Its labels beyond the request's; no `grpc_status` for plain HTTP.
    pub(crate) fn labels(&self) -> Vec<(&'static str, String)> {
        let mut l = vec![(Response::StatusCode.name(), self.status.to_string())];
        if let Some(g) = self.grpc_status {
            l.push((Response::GrpcStatus.name(), g.to_string()));
        }
        l.push((Response::Classification.name(), self.class.as_str().into()));
        if let Some(r) = self.error_reason {
            l.push((Response::ErrorReason.name(), r.as_str().into()));
        }
        l
    }
}

/// Labels of the label set budget's overflow counter.
pub(crate) fn overflow_labels(
    family: &'static str,
    reason: &'static str,
) -> [(&'static str, &'static str); 2] {
    [
        (LabelSetsLabel::Family.name(), family),
        (LabelSetsLabel::Reason.name(), reason),
    ]
}

/// Labels of the eviction counter.
pub(crate) fn eviction_labels(family: &'static str) -> [(&'static str, &'static str); 1] {
    [(LabelSetsLabel::Family.name(), family)]
}

/// Labels of the failed handshakes counter.
pub(crate) fn handshake_labels(
    direction: Direction,
    reason: &'static str,
) -> [(&'static str, &'static str); 2] {
    [
        (Handshake::Direction.name(), direction.as_str()),
        (Handshake::Reason.name(), reason),
    ]
}

/// Labels of the refused inbound connections counter: its only reason.
pub(crate) fn refused_labels() -> [(&'static str, &'static str); 1] {
    [(OwnReason::Reason.name(), names::REFUSED_REASON_PROXY_PORT)]
}

/// Counters and latency of one HTTP label set (an endpoint's or a route's).
pub(crate) struct HttpStats {
    labels: SeriesLabels,
    /// The direction of an endpoint's series; routes have none.
    direction: Option<Direction>,
    requests: AtomicU64,
    responses: Mutex<Vec<(ResponseKey, u64)>>,
    latency: Mutex<LatencyHistogram>,
    retries: AtomicU64,
    retries_skipped: AtomicU64,
}

impl HttpStats {
    fn new(labels: SeriesLabels, direction: Option<Direction>) -> Self {
        Self {
            labels,
            direction,
            requests: AtomicU64::new(0),
            responses: Mutex::new(Vec::new()),
            latency: Mutex::new(LatencyHistogram::new()),
            retries: AtomicU64::new(0),
            retries_skipped: AtomicU64::new(0),
        }
    }

    pub(crate) fn labels(&self) -> &SeriesLabels {
        &self.labels
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// Time to response headers.
    pub(crate) fn latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        lock(&self.latency).record_us(micros);
    }

    pub(crate) fn response(&self, key: ResponseKey) {
        let mut responses = lock(&self.responses);
        match responses.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => responses.push((key, 1)),
        }
    }

    pub(crate) fn responses(&self) -> Vec<(ResponseKey, u64)> {
        let mut r = lock(&self.responses).clone();
        r.sort_by_key(|(k, _)| (k.status, k.grpc_status, k.class.as_str(), k.error_reason));
        r
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    /// A retry the budget did not allow.
    pub(crate) fn retry_skipped(&self) {
        self.retries_skipped.fetch_add(1, Relaxed);
    }

    pub(crate) fn retries_skipped(&self) -> u64 {
        self.retries_skipped.load(Relaxed)
    }

    pub(crate) fn prometheus_latency(&self) -> PromHistogram {
        lock(&self.latency).prometheus()
    }

    /// Ends the latency interval; an endpoint series' latencies also go
    /// to the recorder's slow threshold.
    pub(crate) fn rollover_latency(&self, recorder: &Recorder) -> Option<IntervalLatency> {
        let mut latency = lock(&self.latency);
        if let Some(d) = self.direction {
            recorder.observe(d, latency.interval());
        }
        latency.rollover()
    }

    /// A request of this series that went to the tap history.
    pub(crate) fn exemplar(&self, request_id: String, latency: Duration, unix_ms: i64) {
        lock(&self.latency).exemplar(Exemplar {
            request_id,
            value: latency.as_secs_f64() * 1000.0,
            timestamp_unix_ms: unix_ms,
        });
    }
}

/// Transport counters of one label set.
#[derive(Default)]
pub(crate) struct TcpStats {
    labels: Option<SeriesLabels>,
    pub(crate) open_total: AtomicU64,
    pub(crate) close_total: AtomicU64,
    pub(crate) read_bytes: AtomicU64,
    pub(crate) write_bytes: AtomicU64,
}

impl TcpStats {
    pub(crate) fn labels(&self) -> Option<&SeriesLabels> {
        self.labels.as_ref()
    }

    pub(crate) fn open_connections(&self) -> u64 {
        let closed = self.close_total.load(Relaxed);
        self.open_total.load(Relaxed).saturating_sub(closed)
    }
}

/// Counts of what the proxy itself had to give up to never block traffic.
#[derive(Default)]
pub(crate) struct ProxyCounters {
    pub(crate) telemetry_reports_sent: AtomicU64,
    pub(crate) telemetry_reports_dropped: AtomicU64,
    pub(crate) tap_events_sampled: AtomicU64,
    pub(crate) tap_events_dropped: AtomicU64,
    pub(crate) tap_events_recorded: AtomicU64,
    pub(crate) tap_recorder_overflow: AtomicU64,
    pub(crate) profiles_rejected: AtomicU64,
    /// Transparent inbound connections addressed to the proxy's own ports.
    pub(crate) inbound_proxy_port_refused: AtomicU64,
    /// Requests counted under a learned `_overflow` route: the authority's
    /// templates were all spent, or theirs was too long.
    pub(crate) learned_overflow_budget: AtomicU64,
    pub(crate) learned_overflow_too_long: AtomicU64,
}

impl ProxyCounters {
    /// Counts a request folded into its authority's learned overflow route.
    pub(crate) fn learned_folded(&self, reason: &'static str) {
        let counter = if reason == names::OVERFLOW_REASON_TOO_LONG {
            &self.learned_overflow_too_long
        } else {
            &self.learned_overflow_budget
        };
        counter.fetch_add(1, Relaxed);
    }

    /// `learned_routes_overflow_total` by reason, as labels and value.
    pub(crate) fn learned_overflow(&self) -> [([(&'static str, &'static str); 1], u64); 2] {
        let reason = OwnReason::Reason.name();
        [
            (
                [(reason, names::OVERFLOW_REASON_BUDGET)],
                self.learned_overflow_budget.load(Relaxed),
            ),
            (
                [(reason, names::OVERFLOW_REASON_TOO_LONG)],
                self.learned_overflow_too_long.load(Relaxed),
            ),
        ]
    }
}

/// Label sets per family at most, by default (`--metrics-max-label-sets`).
pub(crate) const DEFAULT_MAX_LABEL_SETS: u32 = 1_000;

/// How many series peers can make the proxy keep, and for how long.
#[derive(Copy, Clone, Debug)]
pub(crate) struct SeriesLimits {
    /// Label sets per family; more share the family's overflow set.
    pub(crate) max_label_sets: usize,
    /// A label set unused this long is forgotten.
    pub(crate) retain_idle: Duration,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        Self {
            max_label_sets: DEFAULT_MAX_LABEL_SETS as usize,
            retain_idle: Duration::from_secs(600),
        }
    }
}

/// Every series the proxy has, by family.
pub(crate) struct Registry {
    local: Vec<(&'static str, String)>,
    local_labels: SeriesLabels,
    http: LabelSets<HttpStats>,
    routes: LabelSets<HttpStats>,
    tcp: LabelSets<TcpStats>,
    limits: SeriesLimits,
    /// The clock of the families' idle times.
    epoch: Instant,
    /// Label sets refused a series of their own, by family and reason.
    overflow: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Label sets forgotten after idling, by family.
    evicted: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) proxy: ProxyCounters,
    process_start_unix_ms: i64,
    /// The proxy's certificate, once identity is on.
    credentials: OnceLock<Arc<Credentials>>,
    handshake_failures: Mutex<BTreeMap<(Direction, &'static str), u64>>,
    /// Bounded by the policy's names (the controller's, not the clients').
    authz: Mutex<BTreeMap<AuthzKey, u64>>,
}

/// What an authorization counter counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct AuthzKey {
    pub(crate) http: bool,
    pub(crate) allowed: bool,
    pub(crate) audited: bool,
    pub(crate) server: Arc<str>,
    pub(crate) route: Arc<str>,
    pub(crate) authorization: Arc<str>,
}

impl AuthzKey {
    pub(crate) fn family(&self) -> Meta {
        let family = match (self.http, self.allowed) {
            (true, true) => family::INBOUND_HTTP_AUTHZ_ALLOW_TOTAL,
            (true, false) => family::INBOUND_HTTP_AUTHZ_DENY_TOTAL,
            (false, true) => family::INBOUND_TCP_AUTHZ_ALLOW_TOTAL,
            (false, false) => family::INBOUND_TCP_AUTHZ_DENY_TOTAL,
        };
        family.meta
    }

    /// Its labels beyond the proxy's own.
    pub(crate) fn labels(&self) -> Vec<(&'static str, &str)> {
        let mut l = vec![
            (Authz::SrvName.name(), &*self.server),
            (Authz::RouteName.name(), &*self.route),
        ];
        if self.allowed {
            l.push((Authz::AuthzName.name(), &*self.authorization));
            let audit = if self.audited { "true" } else { "false" };
            l.push((Authz::Audit.name(), audit));
        }
        l
    }
}

impl Registry {
    /// `namespace`, `deployment`, `pod` and version (`pod_template_hash`)
    /// of the proxy's workload go on every series.
    pub(crate) fn new(namespace: &str, deployment: &str, pod: &str, version: &str) -> Self {
        let local = vec![
            (label::NAMESPACE, namespace.to_string()),
            (label::DEPLOYMENT, deployment.to_string()),
            (label::POD, pod.to_string()),
            (label::POD_TEMPLATE_HASH, version.to_string()),
        ];
        let local_labels = SeriesLabels::new(&local, &[]);
        let limits = SeriesLimits::default();
        let max = limits.max_label_sets;
        Self {
            local,
            local_labels,
            http: LabelSets::new(names::REQUEST_TOTAL, max),
            routes: LabelSets::new(names::ROUTE_REQUEST_TOTAL, max),
            tcp: LabelSets::new(names::TCP_OPEN_TOTAL, max),
            limits,
            epoch: Instant::now(),
            overflow: Mutex::default(),
            evicted: Mutex::default(),
            proxy: ProxyCounters::default(),
            process_start_unix_ms: crate::clock::unix_ms(),
            credentials: OnceLock::new(),
            handshake_failures: Mutex::default(),
            authz: Mutex::default(),
        }
    }

    /// The same registry with other limits (before any series exists).
    pub(crate) fn with_limits(self, limits: SeriesLimits) -> Self {
        let max = limits.max_label_sets;
        Self {
            http: LabelSets::new(self.http.metric, max),
            routes: LabelSets::new(self.routes.metric, max),
            tcp: LabelSets::new(self.tcp.metric, max),
            limits,
            ..self
        }
    }

    pub(crate) fn set_credentials(&self, creds: Arc<Credentials>) {
        let _ = self.credentials.set(creds);
    }

    pub(crate) fn credentials(&self) -> Option<&Arc<Credentials>> {
        self.credentials.get()
    }

    pub(crate) fn handshake_failed(&self, direction: Direction, reason: &'static str) {
        *lock(&self.handshake_failures)
            .entry((direction, reason))
            .or_default() += 1;
    }

    /// mTLS handshakes that failed, by direction and reason.
    pub(crate) fn handshake_failures(&self) -> Vec<((Direction, &'static str), u64)> {
        lock(&self.handshake_failures)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    pub(crate) fn authorized(&self, http: bool, d: &crate::policy::Decision) {
        let key = AuthzKey {
            http,
            allowed: d.allowed,
            audited: d.audited,
            server: d.server.clone(),
            route: d.route.clone(),
            authorization: d.authorization.clone(),
        };
        *lock(&self.authz).entry(key).or_default() += 1;
    }

    /// Policy decisions so far.
    pub(crate) fn authz_counts(&self) -> Vec<(AuthzKey, u64)> {
        lock(&self.authz)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The `request_total`/`response_total`/`response_latency_ms` series of
    /// a label set.
    pub(crate) fn http(&self, direction: Direction, endpoint: &Endpoint<'_>) -> Arc<HttpStats> {
        let pairs = labels::http(direction, endpoint);
        self.get_or_insert(&self.http, &pairs, |l| {
            Arc::new(HttpStats::new(l, Some(direction)))
        })
    }

    /// The `route_*` series of an outbound authority's profile route.
    pub(crate) fn route(&self, authority: &str, route: &str) -> Arc<HttpStats> {
        let pairs = labels::route(authority, route);
        self.get_or_insert(&self.routes, &pairs, |l| Arc::new(HttpStats::new(l, None)))
    }

    /// The `route_*` series of an outbound authority's learned template.
    pub(crate) fn learned_route(&self, authority: &str, template: &str) -> Arc<HttpStats> {
        let pairs = labels::learned_route(authority, template);
        self.get_or_insert(&self.routes, &pairs, |l| Arc::new(HttpStats::new(l, None)))
    }

    /// The `tcp_*` series of one side's connections.
    pub(crate) fn tcp(
        &self,
        direction: Direction,
        peer: Peer,
        endpoint: &Endpoint<'_>,
    ) -> Arc<TcpStats> {
        let pairs = labels::tcp(direction, peer, endpoint);
        self.get_or_insert(&self.tcp, &pairs, |l| {
            Arc::new(TcpStats {
                labels: Some(l),
                ..TcpStats::default()
            })
        })
    }

    fn get_or_insert<T>(
        &self,
        family: &LabelSets<T>,
        pairs: &[(&'static str, &str)],
        make: impl FnOnce(SeriesLabels) -> Arc<T>,
    ) -> Arc<T> {
        let key: Key = pairs.iter().map(|(n, v)| (*n, v.to_string())).collect();
        let found = family.get_or_insert(key, self.now_ms(), |key| {
            let pairs: Vec<(&'static str, &str)> =
                key.iter().map(|(n, v)| (*n, v.as_str())).collect();
            make(SeriesLabels::new(&self.local, &pairs))
        });
        match found {
            Found::Own(s) => s,
            Found::Overflow(s) => {
                self.folded(family.metric, names::OVERFLOW_REASON_BUDGET);
                s
            }
        }
    }

    /// Counts a label set that was given the overflow set instead of its
    /// own.
    pub(crate) fn folded(&self, family: &'static str, reason: &'static str) {
        *lock(&self.overflow).entry((family, reason)).or_default() += 1;
    }

    /// Label sets folded so far, by family and reason.
    pub(crate) fn overflow_counts(&self) -> Vec<((&'static str, &'static str), u64)> {
        lock(&self.overflow).iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Label sets evicted so far, by family.
    pub(crate) fn eviction_counts(&self) -> Vec<(&'static str, u64)> {
        lock(&self.evicted).iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Forgets idle label sets for as long as the proxy runs.
    pub(crate) async fn evict_idle(self: Arc<Self>) {
        let idle = self.limits.retain_idle;
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(60));
        loop {
            tokio::time::sleep(period).await;
            self.evict_idle_once(idle_ms);
        }
    }

    fn evict_idle_once(&self, idle_ms: u64) {
        let now = self.now_ms();
        let counts = [
            (self.http.metric, self.http.evict_idle(now, idle_ms)),
            (self.routes.metric, self.routes.evict_idle(now, idle_ms)),
            (self.tcp.metric, self.tcp.evict_idle(now, idle_ms)),
        ];
        let mut evicted = lock(&self.evicted);
        for (family, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
            tracing::debug!(family, evicted = n, "forgot idle label sets");
            *evicted.entry(family).or_default() += n;
        }
    }

    pub(crate) fn http_series(&self) -> Vec<Arc<HttpStats>> {
        sorted(&self.http, |s| s.labels.prom.clone())
    }

    pub(crate) fn route_series(&self) -> Vec<Arc<HttpStats>> {
        sorted(&self.routes, |s| s.labels.prom.clone())
    }

    pub(crate) fn tcp_series(&self) -> Vec<Arc<TcpStats>> {
        sorted(&self.tcp, |s| {
            s.labels
                .as_ref()
                .map(|l| l.prom.clone())
                .unwrap_or_default()
        })
    }

    /// Labels of the proxy-level series: the proxy's own only.
    /// The workload's version, empty when unknown.
    pub(crate) fn version(&self) -> &str {
        self.local_labels
            .labels()
            .get(label::POD_TEMPLATE_HASH)
            .unwrap_or_default()
    }

    pub(crate) fn local_labels(&self) -> &SeriesLabels {
        &self.local_labels
    }

    pub(crate) fn process_start_unix_ms(&self) -> i64 {
        self.process_start_unix_ms
    }

    /// `/metrics`.
    pub(crate) fn render_prometheus(&self) -> String {
        prom::render(self)
    }
}

fn sorted<T, K: Ord>(family: &LabelSets<T>, key: impl Fn(&T) -> K) -> Vec<Arc<T>> {
    let mut v = family.series();
    v.sort_by_cached_key(|s| key(s));
    v
}

/// A poisoned metrics lock only means a panic elsewhere mid-update; the
/// counters are still the best data there is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
