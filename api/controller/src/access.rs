//! Who may see requests: the check in front of live tap, tap search and
//! top, which reveal request paths, authorities and client addresses.
//! Aggregates (stat, edges, routes) stay readable by whoever can reach the
//! API, as Linkerd's metrics API is.
//!
//! - Local mode: the caller presents the token `conduit demo` writes to its
//!   state directory (`--api-token-file`), readable by the demo's user only.
//! - Kubernetes: the caller presents its own Kubernetes bearer token; the
//!   API server authenticates it (`TokenReview`) and authorizes the verb
//!   `tap` on `deployments` in `tap.conduit.io` ([`conduit_api::tap_rbac`])
//!   for the target namespace
//!   (`SubjectAccessReview`), the way `linkerd viz tap` is authorized, so
//!   RBAC says who may tap what. Allowed answers are remembered briefly,
//!   so a live view does not cost two API calls per refresh.
//!
//! The credential travels as `authorization: Bearer <token>` (gRPC
//! metadata or HTTP header), or, for the dashboard in a browser, as the
//! cookie [`COOKIE`] set by `/auth`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use conduit_api::tap_rbac;
use conduit_identity::bearer::{self, BearerToken};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use tonic::Status;

/// The dashboard's session cookie: the same credential, set by `/auth`.
pub const COOKIE: &str = "conduit_api_token";
/// How long an allowed (token, namespace) answer is reused.
const REMEMBER_FOR: Duration = Duration::from_secs(10);
/// Answers remembered at most; the oldest go first.
const REMEMBERED: usize = 1024;

pub enum Access {
    /// The demo's token.
    Local(BearerToken),
    /// TokenReview and SubjectAccessReview against the API server.
    Kubernetes(Kubernetes),
    /// Nothing configured: requests are closed to everyone, with a message
    /// that says how to open them.
    Closed,
}

pub struct Kubernetes {
    client: kube::Client,
    control_plane_namespace: String,
    allowed: Mutex<HashMap<(String, String), Instant>>,
}

impl Access {
    pub fn kubernetes(client: kube::Client, control_plane_namespace: &str) -> Self {
        Self::Kubernetes(Kubernetes {
            client,
            control_plane_namespace: control_plane_namespace.to_string(),
            allowed: Mutex::default(),
        })
    }

    /// Whether the bearer of `credential` may see requests in `namespace`
    /// (`None`: in every namespace).
    pub async fn may_tap(
        &self,
        credential: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(), Status> {
        let scope = namespace.map_or("every namespace".to_string(), |n| format!("namespace {n}"));
        match self {
            Self::Closed => Err(Status::unauthenticated(
                "tap, top and diagnostics are closed: the controller was started without \
                 --api-token-file (local mode) or Kubernetes discovery",
            )),
            Self::Local(token) => match credential {
                Some(c) if token.matches(c) => Ok(()),
                Some(_) => Err(Status::unauthenticated(
                    "the API token is not the one of this control plane; use the api-token file \
                     of the running `conduit demo` (--api-token-file or CONDUIT_API_TOKEN_FILE)",
                )),
                None => Err(Status::unauthenticated(format!(
                    "tap, top and diagnostics of {scope} need the control plane's API token; \
                     the CLI sends the demo's by itself, or give --api-token-file"
                ))),
            },
            Self::Kubernetes(k) => {
                let token = credential.ok_or_else(|| {
                    Status::unauthenticated(format!(
                        "tap, top and diagnostics of {scope} need a Kubernetes bearer token (the \
                         CLI sends the kubeconfig's token)"
                    ))
                })?;
                k.may_tap(token, namespace.unwrap_or("")).await
            }
        }
    }
}

impl Access {
    /// Whether `token` may become a browser session: the demo's token in
    /// local mode; on Kubernetes any token, checked when it is used.
    pub fn accepts_session(&self, token: &str) -> bool {
        match self {
            Self::Local(t) => t.matches(token),
            Self::Kubernetes(_) => !token.is_empty(),
            Self::Closed => false,
        }
    }
}

impl Kubernetes {
    async fn may_tap(&self, token: &str, namespace: &str) -> Result<(), Status> {
        let key = (fingerprint(token), namespace.to_string());
        if self.remembered(&key) {
            return Ok(());
        }
        let user = self.authenticate(token).await?;
        self.authorize(&user, namespace).await?;
        self.remember(key);
        Ok(())
    }

    fn remembered(&self, key: &(String, String)) -> bool {
        let allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        allowed
            .get(key)
            .is_some_and(|at| at.elapsed() < REMEMBER_FOR)
    }

    fn remember(&self, key: (String, String)) {
        let mut allowed = self.allowed.lock().unwrap_or_else(|e| e.into_inner());
        allowed.retain(|_, at| at.elapsed() < REMEMBER_FOR);
        if allowed.len() >= REMEMBERED {
            return;
        }
        allowed.insert(key, Instant::now());
    }

    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<k8s_openapi::api::authentication::v1::UserInfo, Status> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let reviewed = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "cannot review the token with the Kubernetes API: {e}"
                ))
            })?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(Status::unauthenticated(format!(
                "the Kubernetes API did not authenticate the token: {}",
                status.error.unwrap_or_else(|| "no reason given".into())
            )));
        }
        status.user.ok_or_else(|| {
            Status::unauthenticated("the Kubernetes API named no user for the token")
        })
    }

    async fn authorize(
        &self,
        user: &k8s_openapi::api::authentication::v1::UserInfo,
        namespace: &str,
    ) -> Result<(), Status> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(tap_rbac::GROUP.to_string()),
                    resource: Some(tap_rbac::RESOURCE.to_string()),
                    verb: Some(tap_rbac::VERB.to_string()),
                    namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.client.clone());
        let reviewed = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                Status::unavailable(format!("cannot check RBAC with the Kubernetes API: {e}"))
            })?;
        let status = reviewed.status.unwrap_or_default();
        if status.allowed {
            return Ok(());
        }
        let who = user.username.as_deref().unwrap_or("the caller");
        let scope = if namespace.is_empty() {
            "cluster-wide".to_string()
        } else {
            format!("in namespace {namespace}")
        };
        Err(Status::permission_denied(format!(
            "{who} may not tap deployments {scope}: RBAC needs verb `{}` on `{}.{}` (bind the \
             ClusterRole {} that `conduit install` emits){}",
            tap_rbac::VERB,
            tap_rbac::RESOURCE,
            tap_rbac::GROUP,
            tap_rbac::cluster_role(&self.control_plane_namespace),
            status.reason.map(|r| format!(" ({r})")).unwrap_or_default()
        )))
    }
}

/// A short digest of a token, so the cache holds no secrets.
fn fingerprint(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    conduit_identity::token::hex(&digest.as_ref()[..16])
}

/// The credential of a gRPC request or an HTTP request: the bearer token
/// of `authorization`, else the dashboard's cookie.
pub fn credential(headers: &http::HeaderMap) -> Option<String> {
    if let Some(token) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer::from_header)
    {
        return Some(token.to_string());
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_the_bearer_token_or_the_dashboards_cookie() {
        let mut h = http::HeaderMap::new();
        assert_eq!(credential(&h), None);
        h.insert(
            "cookie",
            "theme=dark; conduit_api_token=abc; x=y".parse().unwrap(),
        );
        assert_eq!(credential(&h).as_deref(), Some("abc"));
        h.insert("authorization", "Bearer def".parse().unwrap());
        assert_eq!(credential(&h).as_deref(), Some("def"));
    }

    #[tokio::test]
    async fn local_mode_admits_its_token_only() {
        let token = BearerToken::generate();
        let access = Access::Local(token.clone());
        assert!(
            access
                .may_tap(Some(token.secret()), Some("demo"))
                .await
                .is_ok()
        );
        for wrong in [None, Some("nope")] {
            let e = access.may_tap(wrong, Some("demo")).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated);
        }
        let e = Access::Closed
            .may_tap(Some(token.secret()), None)
            .await
            .unwrap_err();
        assert!(e.message().contains("--api-token-file"), "{e:?}");
    }
}
