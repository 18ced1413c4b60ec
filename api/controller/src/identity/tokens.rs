//! Who a token's bearer is: the check behind every `Certify`.
//!
//! On Kubernetes, a projected ServiceAccount token for the audience
//! `identity.conduit.io`, reviewed by the API server (`TokenReview`); in
//! local mode, a token signed with the demo's key
//! ([`conduit_identity::token`]). Either way the answer is a namespace and a
//! ServiceAccount, which must be the ones the CSR's identity names.

use conduit_api::identity::TOKEN_AUDIENCE;
use conduit_identity::credentials::unix_now;
use conduit_identity::token::TokenKey;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};

/// The workload a token proves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    pub namespace: String,
    pub service_account: String,
}

pub enum Tokens {
    Local(TokenKey),
    Kubernetes(kube::Client),
}

impl Tokens {
    pub async fn review(&self, token: &str) -> Result<Proven, String> {
        match self {
            Self::Local(key) => key
                .verify(token, unix_now())
                .map(|id| Proven {
                    namespace: id.namespace,
                    service_account: id.service_account,
                })
                .map_err(|e| e.to_string()),
            Self::Kubernetes(client) => review_with_api_server(client, token).await,
        }
    }
}

async fn review_with_api_server(client: &kube::Client, token: &str) -> Result<Proven, String> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            audiences: Some(vec![TOKEN_AUDIENCE.to_string()]),
        },
        ..TokenReview::default()
    };
    let api: kube::Api<TokenReview> = kube::Api::all(client.clone());
    let reviewed = api
        .create(&kube::api::PostParams::default(), &review)
        .await
        .map_err(|e| format!("the TokenReview failed: {e}"))?;
    let status = reviewed
        .status
        .ok_or("the API server returned no TokenReview status")?;
    if status.authenticated != Some(true) {
        return Err(format!(
            "the API server did not authenticate the token: {}",
            status.error.unwrap_or_else(|| "no reason given".into())
        ));
    }
    if !status
        .audiences
        .unwrap_or_default()
        .iter()
        .any(|a| a == TOKEN_AUDIENCE)
    {
        return Err(format!(
            "the token is not for the audience {TOKEN_AUDIENCE}"
        ));
    }
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    service_account_of(&username).ok_or_else(|| {
        format!("{username:?} is not a ServiceAccount (system:serviceaccount:NS:NAME)")
    })
}

/// `system:serviceaccount:<namespace>:<name>`.
fn service_account_of(username: &str) -> Option<Proven> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, service_account) = rest.split_once(':')?;
    (!namespace.is_empty() && !service_account.is_empty() && !service_account.contains(':')).then(
        || Proven {
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames() {
        assert_eq!(
            service_account_of("system:serviceaccount:demo:web"),
            Some(Proven {
                namespace: "demo".into(),
                service_account: "web".into()
            })
        );
        for bad in [
            "alice",
            "system:serviceaccount:demo",
            "system:serviceaccount::web",
            "system:serviceaccount:a:b:c",
        ] {
            assert_eq!(service_account_of(bad), None, "{bad}");
        }
    }
}
