//! Destination profiles: an authority's routes, with per-route response
//! classes, retry policy and timeout, and the authority's retry budget.
//!
//! A profile comes from the controller and is checked before it replaces
//! the one in force: a profile that cannot be applied as written (a
//! negative timeout, an absurd budget, a path regex that does not compile)
//! is rejected whole, logged, and the previous one stays, so a bad push
//! cannot silently turn retries or timeouts off.

use std::sync::Arc;
use std::time::Duration;

use conduit_api::Classification;
use conduit_api::proto::destination::v1 as pb;
use http::Method;
use regex::Regex;

/// Linkerd's defaults: retries may add 20 % load, plus 10 per second.
pub(crate) const DEFAULT_BUDGET: BudgetSpec = BudgetSpec {
    ratio: 0.2,
    min_per_second: 10,
    ttl: Duration::from_secs(10),
};
/// Attempts, including the first, when a policy does not say.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const MAX_RETRY_RATIO: f32 = 1000.0;
const MAX_MIN_RETRIES_PER_SECOND: u32 = 100_000;
const MAX_ATTEMPTS: u32 = 100;
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(60);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ProfileError {
    #[error("{0}: negative or out-of-range duration")]
    BadDuration(String),
    #[error("{0}: timeout over 24h")]
    TimeoutTooLong(String),
    #[error("retry budget: ratio {0} is not between 0 and {MAX_RETRY_RATIO}")]
    BudgetRatio(f32),
    #[error("retry budget: {0} minimum retries per second is over {MAX_MIN_RETRIES_PER_SECOND}")]
    BudgetMin(u32),
    #[error("retry budget: ttl must be between 1s and 60s")]
    BudgetTtl,
    #[error("route {route:?}: invalid path regex {regex:?}: {error}")]
    Regex {
        route: String,
        regex: String,
        error: String,
    },
    #[error("route {0:?}: a condition must be set")]
    EmptyMatch(String),
    #[error("route {0:?}: invalid method {1:?}")]
    Method(String, String),
    #[error("route {0:?}: invalid status range {1}-{2} (100-599, min <= max)")]
    StatusRange(String, u32, u32),
    #[error("route {0:?}: max_attempts {1} is over {MAX_ATTEMPTS}")]
    Attempts(String, u32),
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct BudgetSpec {
    pub(crate) ratio: f32,
    pub(crate) min_per_second: u32,
    pub(crate) ttl: Duration,
}

#[derive(Debug, Default)]
pub(crate) struct Profile {
    pub(crate) routes: Vec<Route>,
    /// `None`: the proxy's default budget.
    pub(crate) budget: Option<BudgetSpec>,
    pub(crate) default_timeout: Option<Duration>,
    /// The authority's protocol is opaque: forward bytes, never detect.
    pub(crate) opaque: bool,
}

#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: String,
    condition: RequestMatch,
    pub(crate) classes: Arc<ResponseClasses>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug)]
enum RequestMatch {
    All(Vec<RequestMatch>),
    Any(Vec<RequestMatch>),
    Not(Box<RequestMatch>),
    Path(Regex),
    Method(Method),
}

/// A route's rules for success and failure; the first matching class
/// decides, and when none matches the mesh's default rules do.
#[derive(Debug, Default)]
pub(crate) struct ResponseClasses(Vec<(ResponseMatch, bool)>);

#[derive(Debug)]
enum ResponseMatch {
    All(Vec<ResponseMatch>),
    Any(Vec<ResponseMatch>),
    Not(Box<ResponseMatch>),
    Status(u16, u16),
    Grpc(Vec<i32>),
}

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    statuses: Vec<(u16, u16)>,
    grpc_codes: Vec<i32>,
    /// Empty: idempotent methods only.
    methods: Vec<Method>,
    pub(crate) max_attempts: u32,
}

/// A profile as the destination service may send it, taken as the proxy
/// takes it: accepted or refused whole, then asked for a request's route,
/// and that route for the response's class and whether to retry it. The
/// profile fuzz target's way in.
#[doc(hidden)]
pub fn check<B>(
    p: pb::DestinationProfile,
    req: &http::Request<B>,
    status: u16,
    grpc_status: Option<i32>,
) -> Result<Option<(Classification, bool)>, String> {
    let profile = Profile::from_proto(p).map_err(|e| e.to_string())?;
    let Some(route) = profile.route_for(req) else {
        return Ok(None);
    };
    let class = route.classes.classify(status, grpc_status);
    let retry = route
        .retry
        .as_ref()
        .is_some_and(|r| r.allows_method(req.method()) && r.is_retryable(status, grpc_status));
    Ok(Some((class, retry)))
}

impl Profile {
    pub(crate) fn from_proto(p: pb::DestinationProfile) -> Result<Self, ProfileError> {
        let budget = p.retry_budget.map(budget).transpose()?;
        let default_timeout = p
            .default_timeout
            .map(|d| timeout("default_timeout", d))
            .transpose()?;
        let routes = p.routes.into_iter().map(route).collect::<Result<_, _>>()?;
        Ok(Self {
            routes,
            budget,
            default_timeout,
            opaque: p.opaque_protocol,
        })
    }

    /// The first route whose condition matches.
    pub(crate) fn route_for<B>(&self, req: &http::Request<B>) -> Option<&Route> {
        self.routes.iter().find(|r| r.condition.matches(req))
    }
}

impl RequestMatch {
    fn matches<B>(&self, req: &http::Request<B>) -> bool {
        match self {
            Self::All(ms) => ms.iter().all(|m| m.matches(req)),
            Self::Any(ms) => ms.iter().any(|m| m.matches(req)),
            Self::Not(m) => !m.matches(req),
            Self::Path(re) => re.is_match(req.uri().path()),
            Self::Method(m) => req.method() == m,
        }
    }
}

impl ResponseClasses {
    pub(crate) fn classify(&self, status: u16, grpc_status: Option<i32>) -> Classification {
        let failure = self
            .0
            .iter()
            .find(|(m, _)| m.matches(status, grpc_status))
            .map(|(_, is_failure)| *is_failure);
        match failure {
            Some(true) => Classification::Failure,
            Some(false) => Classification::Success,
            None => Classification::of_response(status, grpc_status),
        }
    }
}

impl ResponseMatch {
    fn matches(&self, status: u16, grpc: Option<i32>) -> bool {
        match self {
            Self::All(ms) => ms.iter().all(|m| m.matches(status, grpc)),
            Self::Any(ms) => ms.iter().any(|m| m.matches(status, grpc)),
            Self::Not(m) => !m.matches(status, grpc),
            Self::Status(min, max) => (*min..=*max).contains(&status),
            Self::Grpc(codes) => grpc.is_some_and(|g| codes.contains(&g)),
        }
    }
}

impl RetryPolicy {
    /// Whether a request may be replayed at all under this policy.
    pub(crate) fn allows_method(&self, method: &Method) -> bool {
        if self.methods.is_empty() {
            method.is_idempotent()
        } else {
            self.methods.contains(method)
        }
    }

    /// Whether a response (headers, or trailers-only gRPC) asks for a retry.
    pub(crate) fn is_retryable(&self, status: u16, grpc_status: Option<i32>) -> bool {
        self.statuses
            .iter()
            .any(|(min, max)| (*min..=*max).contains(&status))
            || grpc_status.is_some_and(|g| self.grpc_codes.contains(&g))
    }
}

fn budget(b: pb::RetryBudget) -> Result<BudgetSpec, ProfileError> {
    if !b.retry_ratio.is_finite() || !(0.0..=MAX_RETRY_RATIO).contains(&b.retry_ratio) {
        return Err(ProfileError::BudgetRatio(b.retry_ratio));
    }
    if b.min_retries_per_second > MAX_MIN_RETRIES_PER_SECOND {
        return Err(ProfileError::BudgetMin(b.min_retries_per_second));
    }
    let ttl = match b.ttl {
        None => DEFAULT_BUDGET.ttl,
        Some(d) => duration("retry_budget.ttl", d)?,
    };
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(ProfileError::BudgetTtl);
    }
    Ok(BudgetSpec {
        ratio: b.retry_ratio,
        min_per_second: b.min_retries_per_second,
        ttl,
    })
}

fn duration(what: &str, d: prost_types::Duration) -> Result<Duration, ProfileError> {
    let bad = || ProfileError::BadDuration(what.to_string());
    let secs = u64::try_from(d.seconds).map_err(|_| bad())?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(bad)?;
    Ok(Duration::new(secs, nanos))
}

/// A zero timeout means none.
fn timeout(what: &str, d: prost_types::Duration) -> Result<Duration, ProfileError> {
    let t = duration(what, d)?;
    if t > MAX_TIMEOUT {
        return Err(ProfileError::TimeoutTooLong(what.to_string()));
    }
    Ok(t)
}

fn route(r: pb::Route) -> Result<Route, ProfileError> {
    let name = r.name;
    let condition = r
        .condition
        .ok_or_else(|| ProfileError::EmptyMatch(name.clone()))
        .and_then(|c| request_match(&name, c))?;
    let classes = r
        .response_classes
        .into_iter()
        .map(|c| {
            let m = c
                .condition
                .ok_or_else(|| ProfileError::EmptyMatch(name.clone()))
                .and_then(|m| response_match(&name, m))?;
            Ok((m, c.is_failure))
        })
        .collect::<Result<_, ProfileError>>()?;
    let retry = r.retry.map(|p| retry_policy(&name, p)).transpose()?;
    let timeout = r
        .timeout
        .map(|d| timeout(&format!("route {name:?} timeout"), d))
        .transpose()?
        .filter(|t| !t.is_zero());
    Ok(Route {
        name,
        condition,
        classes: Arc::new(ResponseClasses(classes)),
        retry,
        timeout,
    })
}

fn request_match(route: &str, m: pb::RequestMatch) -> Result<RequestMatch, ProfileError> {
    use pb::request_match::Match;
    let seq = |ms: Vec<pb::RequestMatch>| {
        ms.into_iter()
            .map(|m| request_match(route, m))
            .collect::<Result<Vec<_>, _>>()
    };
    match m.r#match {
        None => Err(ProfileError::EmptyMatch(route.to_string())),
        Some(Match::All(s)) => Ok(RequestMatch::All(seq(s.matches)?)),
        Some(Match::Any(s)) => Ok(RequestMatch::Any(seq(s.matches)?)),
        Some(Match::Not(m)) => Ok(RequestMatch::Not(Box::new(request_match(route, *m)?))),
        Some(Match::Path(p)) => Regex::new(&format!("^(?:{})$", p.regex))
            .map(RequestMatch::Path)
            .map_err(|e| ProfileError::Regex {
                route: route.to_string(),
                regex: p.regex,
                error: e.to_string(),
            }),
        Some(Match::Method(m)) => Method::from_bytes(m.method.as_bytes())
            .map(RequestMatch::Method)
            .map_err(|_| ProfileError::Method(route.to_string(), m.method)),
    }
}

fn response_match(route: &str, m: pb::ResponseMatch) -> Result<ResponseMatch, ProfileError> {
    use pb::response_match::Match;
    let seq = |ms: Vec<pb::ResponseMatch>| {
        ms.into_iter()
            .map(|m| response_match(route, m))
            .collect::<Result<Vec<_>, _>>()
    };
    match m.r#match {
        None => Err(ProfileError::EmptyMatch(route.to_string())),
        Some(Match::All(s)) => Ok(ResponseMatch::All(seq(s.matches)?)),
        Some(Match::Any(s)) => Ok(ResponseMatch::Any(seq(s.matches)?)),
        Some(Match::Not(m)) => Ok(ResponseMatch::Not(Box::new(response_match(route, *m)?))),
        Some(Match::Status(r)) => {
            let (min, max) = status_range(route, &r)?;
            Ok(ResponseMatch::Status(min, max))
        }
        Some(Match::Grpc(g)) => Ok(ResponseMatch::Grpc(
            g.codes
                .into_iter()
                .filter_map(|c| i32::try_from(c).ok())
                .collect(),
        )),
    }
}

fn status_range(route: &str, r: &pb::HttpStatusRange) -> Result<(u16, u16), ProfileError> {
    let valid = (100..=599).contains(&r.min) && (100..=599).contains(&r.max) && r.min <= r.max;
    if !valid {
        return Err(ProfileError::StatusRange(route.to_string(), r.min, r.max));
    }
    Ok((r.min as u16, r.max as u16))
}

fn retry_policy(route: &str, p: pb::RetryPolicy) -> Result<RetryPolicy, ProfileError> {
    if p.max_attempts > MAX_ATTEMPTS {
        return Err(ProfileError::Attempts(route.to_string(), p.max_attempts));
    }
    let statuses = p
        .retryable_statuses
        .iter()
        .map(|r| status_range(route, r))
        .collect::<Result<_, _>>()?;
    let methods = p
        .methods
        .into_iter()
        .map(|m| {
            Method::from_bytes(m.as_bytes()).map_err(|_| ProfileError::Method(route.to_string(), m))
        })
        .collect::<Result<_, _>>()?;
    Ok(RetryPolicy {
        statuses,
        grpc_codes: p
            .retryable_grpc_codes
            .into_iter()
            .filter_map(|c| i32::try_from(c).ok())
            .collect(),
        methods,
        max_attempts: match p.max_attempts {
            0 => DEFAULT_MAX_ATTEMPTS,
            n => n,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_match::Match;

    fn path_route(name: &str, regex: &str) -> pb::Route {
        pb::Route {
            name: name.into(),
            condition: Some(pb::RequestMatch {
                r#match: Some(Match::Path(pb::PathMatch {
                    regex: regex.into(),
                })),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn routes_match_in_order_and_anchored() {
        let p = Profile::from_proto(pb::DestinationProfile {
            routes: vec![
                path_route("books", "/books/[0-9]+"),
                path_route("all", ".*"),
            ],
            ..Default::default()
        })
        .unwrap();
        let req = |path: &str| http::Request::get(path).body(()).unwrap();
        assert_eq!(p.route_for(&req("/books/12")).unwrap().name, "books");
        assert_eq!(p.route_for(&req("/books/12/x")).unwrap().name, "all");
    }

    #[test]
    fn bad_profiles_are_rejected() {
        let neg = pb::DestinationProfile {
            default_timeout: Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            }),
            ..Default::default()
        };
        assert!(matches!(
            Profile::from_proto(neg),
            Err(ProfileError::BadDuration(_))
        ));
        let absurd = pb::DestinationProfile {
            retry_budget: Some(pb::RetryBudget {
                retry_ratio: f32::NAN,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            Profile::from_proto(absurd),
            Err(ProfileError::BudgetRatio(_))
        ));
        let regex = pb::DestinationProfile {
            routes: vec![path_route("bad", "/books/(")],
            ..Default::default()
        };
        assert!(matches!(
            Profile::from_proto(regex),
            Err(ProfileError::Regex { .. })
        ));
    }

    #[test]
    fn retry_policy_defaults_to_idempotent_methods() {
        let p = retry_policy(
            "r",
            pb::RetryPolicy {
                retryable_statuses: vec![pb::HttpStatusRange { min: 500, max: 599 }],
                ..Default::default()
            },
        )
        .unwrap();
        assert!(p.allows_method(&Method::GET) && p.allows_method(&Method::PUT));
        assert!(!p.allows_method(&Method::POST));
        assert!(p.is_retryable(503, None) && !p.is_retryable(404, None));
        assert_eq!(p.max_attempts, DEFAULT_MAX_ATTEMPTS);
    }
}
