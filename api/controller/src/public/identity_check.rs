//! What `conduit check` says about identity: the trust anchors and the
//! issuer the controller holds (valid now, and not about to expire), and
//! the certificate each proxy reports it holds.

use conduit_api::metrics::family;
use conduit_api::metrics::labels::Own;
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::store::v1 as store;
use conduit_identity::cert::{self, CertInfo};

use super::check::{ok, result};
use crate::identity::issuer::Issuer;

const IDENTITY: &str = "conduit-identity";
const DAY_S: i64 = 86_400;
/// Linkerd's warnings: an anchor expiring within 60 days, an issuer
/// within 7, leave time to rotate.
pub(super) const ANCHOR_WARN_S: i64 = 60 * DAY_S;
pub(super) const ISSUER_WARN_S: i64 = 7 * DAY_S;

/// The roots' checks; without an issuer, that identity is off.
pub(super) fn roots(issuer: Option<&Issuer>, now: i64) -> Vec<pb::CheckResult> {
    let Some(issuer) = issuer else {
        return vec![result(
            IDENTITY,
            "identity is on",
            pb::CheckStatus::Warning,
            "the controller runs without --identity-trust-anchors: the mesh is plaintext",
        )];
    };
    let mut out: Vec<pb::CheckResult> = issuer
        .anchors()
        .certificates()
        .iter()
        .map(|der| match cert::info(der) {
            Ok(anchor) => validity("trust anchor", &anchor, now, ANCHOR_WARN_S),
            Err(e) => result(
                IDENTITY,
                "a trust anchor is readable",
                pb::CheckStatus::Failed,
                e,
            ),
        })
        .collect();
    out.push(validity("issuer", issuer.certificate(), now, ISSUER_WARN_S));
    out
}

fn validity(what: &str, c: &CertInfo, now: i64, warn_s: i64) -> pb::CheckResult {
    let left = c.not_after_unix - now;
    let days = left / DAY_S;
    if c.not_before_unix > now {
        return result(
            IDENTITY,
            format!("the {what} {} is valid", c.subject),
            pb::CheckStatus::Failed,
            "it is not valid yet: check the clocks",
        );
    }
    if left <= 0 {
        return result(
            IDENTITY,
            format!("the {what} {} is valid", c.subject),
            pb::CheckStatus::Failed,
            format!("it has expired: rotate the {what} (see the README)"),
        );
    }
    if left < warn_s {
        return result(
            IDENTITY,
            format!("the {what} {} is valid for long enough", c.subject),
            pb::CheckStatus::Warning,
            format!("it expires in {days} days: rotate the {what} (see the README)"),
        );
    }
    ok(
        IDENTITY,
        format!("the {what} {} is valid ({days} more days)", c.subject),
    )
}

/// The PromQL query for each proxy's certificate expiry.
pub(super) fn expiry_query() -> String {
    family::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS
        .name()
        .to_string()
}

/// Every proxy that reports a certificate holds a valid one.
pub(super) fn proxies(series: &[store::Series], now: i64) -> pb::CheckResult {
    let expired: Vec<String> = series
        .iter()
        .filter(|s| {
            s.samples
                .last()
                .is_some_and(|sample| (sample.value as i64) <= now)
        })
        .map(|s| {
            format!(
                "{}/{}",
                family::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS.label(&s.labels, Own::Namespace),
                family::IDENTITY_CERT_EXPIRATION_TIMESTAMP_SECONDS.label(&s.labels, Own::Pod)
            )
        })
        .collect();
    if !expired.is_empty() {
        return result(
            IDENTITY,
            "every proxy holds a valid certificate",
            pb::CheckStatus::Failed,
            format!(
                "expired: {}; those proxies cannot reach the identity service (their meshed traffic fails closed)",
                expired.join(", ")
            ),
        );
    }
    ok(
        IDENTITY,
        format!(
            "every proxy holds a valid certificate ({} proxies report one)",
            series.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use conduit_api::proto::mesh::v1::Label;

    fn info(not_after: i64) -> CertInfo {
        CertInfo {
            subject: "CN=x".into(),
            issuer: String::new(),
            serial: String::new(),
            dns_names: vec![],
            uris: vec![],
            not_before_unix: 0,
            not_after_unix: not_after,
            is_ca: true,
            public_key: vec![],
        }
    }

    #[test]
    fn expiry_warnings_come_in_time_to_rotate() {
        let now = 1_000 * DAY_S;
        let status = |after, warn| validity("issuer", &info(after), now, warn).status;
        assert_eq!(
            status(now + 30 * DAY_S, ISSUER_WARN_S),
            pb::CheckStatus::Ok as i32
        );
        assert_eq!(
            status(now + 3 * DAY_S, ISSUER_WARN_S),
            pb::CheckStatus::Warning as i32
        );
        assert_eq!(
            status(now + 30 * DAY_S, ANCHOR_WARN_S),
            pb::CheckStatus::Warning as i32
        );
        assert_eq!(
            status(now - 1, ISSUER_WARN_S),
            pb::CheckStatus::Failed as i32
        );
    }

    #[test]
    fn an_expired_proxy_certificate_fails_and_is_named() {
        let series = |pod: &str, expiry: f64| store::Series {
            labels: vec![
                Label {
                    name: "namespace".into(),
                    value: "demo".into(),
                },
                Label {
                    name: "pod".into(),
                    value: pod.into(),
                },
            ],
            samples: vec![store::Sample {
                timestamp_unix_ms: 0,
                value: expiry,
            }],
        };
        let ok = proxies(&[series("web-0", 2_000.0)], 1_000);
        assert_eq!(ok.status, pb::CheckStatus::Ok as i32);
        let bad = proxies(&[series("web-0", 2_000.0), series("emoji-1", 500.0)], 1_000);
        assert_eq!(bad.status, pb::CheckStatus::Failed as i32);
        assert!(bad.hint.contains("demo/emoji-1"), "{}", bad.hint);
    }
}
