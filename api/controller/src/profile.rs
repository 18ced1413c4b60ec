//! Service profiles: turns the static file's profile declarations into
//! the `DestinationProfile` the proxies receive, rejecting what a proxy
//! could not apply (a regex that does not compile, an inverted status
//! range) at load time instead of at request time in every proxy.

use std::collections::BTreeSet;
use std::time::Duration;

use conduit_api::discovery_file as schema;
use conduit_api::proto::destination::v1 as pb;

pub fn build(fqdn: &str, p: &schema::Profile) -> Result<pb::DestinationProfile, String> {
    let mut names = BTreeSet::new();
    let mut routes = Vec::with_capacity(p.routes.len());
    for route in &p.routes {
        if route.name.is_empty() {
            return Err("a route has an empty name".into());
        }
        if !names.insert(route.name.as_str()) {
            return Err(format!("route {:?} appears more than once", route.name));
        }
        routes.push(build_route(route).map_err(|e| format!("route {:?}: {e}", route.name))?);
    }
    let retry_budget = p.retry_budget.as_ref().map(build_budget).transpose()?;
    Ok(pb::DestinationProfile {
        fully_qualified_name: fqdn.to_string(),
        opaque_protocol: p.opaque,
        routes,
        retry_budget,
        default_timeout: p.timeout.map(|t| duration(t.0)),
    })
}

/// The profile a proxy gets for an authority nobody described.
pub fn default_profile(fqdn: &str, opaque: bool) -> pb::DestinationProfile {
    pb::DestinationProfile {
        fully_qualified_name: fqdn.to_string(),
        opaque_protocol: opaque,
        ..Default::default()
    }
}

fn build_route(r: &schema::Route) -> Result<pb::Route, String> {
    Ok(pb::Route {
        name: r.name.clone(),
        condition: Some(request_match(&r.condition)?),
        response_classes: r
            .response_classes
            .iter()
            .map(|c| {
                Ok(pb::ResponseClass {
                    condition: Some(response_match(&c.condition)?),
                    is_failure: c.is_failure,
                })
            })
            .collect::<Result<_, String>>()?,
        metric_labels: r.metric_labels.clone().into_iter().collect(),
        retry: r.retry.as_ref().map(build_retry).transpose()?,
        timeout: r.timeout.map(|t| duration(t.0)),
    })
}

fn request_match(m: &schema::RequestMatch) -> Result<pb::RequestMatch, String> {
    use pb::request_match::{Match, Seq};
    use schema::RequestMatch as M;
    let seq = |ms: &[M]| -> Result<Seq, String> {
        Ok(Seq {
            matches: ms.iter().map(request_match).collect::<Result<_, _>>()?,
        })
    };
    let m = match m {
        M::All(ms) => Match::All(seq(ms)?),
        M::Any(ms) => Match::Any(seq(ms)?),
        M::Not(inner) => Match::Not(Box::new(request_match(inner)?)),
        M::Path(re) => {
            regex::Regex::new(re).map_err(|e| format!("path regex {re:?}: {e}"))?;
            Match::Path(pb::PathMatch { regex: re.clone() })
        }
        M::Method(method) => {
            http::Method::from_bytes(method.as_bytes())
                .map_err(|_| format!("{method:?} is not an HTTP method"))?;
            Match::Method(pb::MethodMatch {
                method: method.clone(),
            })
        }
    };
    Ok(pb::RequestMatch { r#match: Some(m) })
}

fn response_match(m: &schema::ResponseMatch) -> Result<pb::ResponseMatch, String> {
    use pb::response_match::{Match, Seq};
    use schema::ResponseMatch as M;
    let seq = |ms: &[M]| -> Result<Seq, String> {
        Ok(Seq {
            matches: ms.iter().map(response_match).collect::<Result<_, _>>()?,
        })
    };
    let m = match m {
        M::All(ms) => Match::All(seq(ms)?),
        M::Any(ms) => Match::Any(seq(ms)?),
        M::Not(inner) => Match::Not(Box::new(response_match(inner)?)),
        M::Status(range) => Match::Status(status_range(range)?),
        M::Grpc(codes) => Match::Grpc(pb::GrpcStatusMatch {
            codes: grpc_codes(codes)?,
        }),
    };
    Ok(pb::ResponseMatch { r#match: Some(m) })
}

fn status_range(r: &schema::StatusRange) -> Result<pb::HttpStatusRange, String> {
    if !(100..=599).contains(&r.min) || !(100..=599).contains(&r.max) || r.min > r.max {
        return Err(format!(
            "status range {}..={} must lie within 100..=599 with min <= max",
            r.min, r.max
        ));
    }
    Ok(pb::HttpStatusRange {
        min: r.min.into(),
        max: r.max.into(),
    })
}

/// gRPC defines codes 0 (OK) to 16 (UNAUTHENTICATED).
fn grpc_codes(codes: &[u32]) -> Result<Vec<u32>, String> {
    match codes.iter().find(|c| **c > 16) {
        Some(bad) => Err(format!("{bad} is not a gRPC status code (0 to 16)")),
        None => Ok(codes.to_vec()),
    }
}

fn build_retry(r: &schema::RetryPolicy) -> Result<pb::RetryPolicy, String> {
    for method in &r.methods {
        http::Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("retry: {method:?} is not an HTTP method"))?;
    }
    Ok(pb::RetryPolicy {
        retryable_statuses: r
            .statuses
            .iter()
            .map(status_range)
            .collect::<Result<_, _>>()?,
        retryable_grpc_codes: grpc_codes(&r.grpc_codes)?,
        methods: r.methods.clone(),
        max_attempts: r.max_attempts,
    })
}

fn build_budget(b: &schema::RetryBudget) -> Result<pb::RetryBudget, String> {
    if !(0.0..=1000.0).contains(&b.retry_ratio) {
        return Err(format!(
            "retry_budget.retry_ratio {} must be between 0 and 1000",
            b.retry_ratio
        ));
    }
    if b.ttl.0 < Duration::from_secs(1) || b.ttl.0 > Duration::from_secs(60) {
        return Err("retry_budget.ttl must be between 1s and 60s".into());
    }
    Ok(pb::RetryBudget {
        retry_ratio: b.retry_ratio,
        min_retries_per_second: b.min_retries_per_second,
        ttl: Some(duration(b.ttl.0)),
    })
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_proxies_could_not_apply() {
        let route = |condition| schema::Route {
            name: "r".into(),
            condition,
            response_classes: vec![],
            retry: None,
            timeout: None,
            metric_labels: Default::default(),
        };
        let profile = |routes| schema::Profile {
            routes,
            ..Default::default()
        };
        let method = |m: &str| schema::RequestMatch::Method(m.into());
        assert!(build("x", &profile(vec![route(method("GET"))])).is_ok());
        assert!(
            build("x", &profile(vec![route(method("G ET"))]))
                .unwrap_err()
                .contains("not an HTTP method")
        );
        assert!(
            build(
                "x",
                &profile(vec![route(method("GET")), route(method("GET"))])
            )
            .unwrap_err()
            .contains("more than once")
        );
        let mut bad_class = route(method("GET"));
        bad_class.response_classes = vec![schema::ResponseClass {
            condition: schema::ResponseMatch::Status(schema::StatusRange { min: 599, max: 500 }),
            is_failure: true,
        }];
        assert!(
            build("x", &profile(vec![bad_class]))
                .unwrap_err()
                .contains("min <= max")
        );
    }
}
