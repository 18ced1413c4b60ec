//! The identity service's Kubernetes token check against a MOCK API server.
//!
//! No API server can run on this machine, so kube's client talks to
//! `tower_test::mock` (as in `kubernetes_mock.rs`), which answers the
//! TokenReview with canned statuses. What runs for real is kube's client
//! and our reading of the review: the audience it must ask for, and what a
//! status must say for a token to prove a ServiceAccount.

use conduit_controller::identity::tokens::{Proven, Tokens};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// Reviews `token` with a mock API server that answers `status`; returns
/// the verdict and the review the controller sent.
async fn review(token: &str, status: Value) -> (Result<Proven, String>, Value) {
    let (service, mut handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a TokenReview");
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(
            req.uri().path(),
            "/apis/authentication.k8s.io/v1/tokenreviews"
        );
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let sent: Value = serde_json::from_slice(&body).unwrap();
        let mut answer = sent.clone();
        answer["status"] = status;
        let rsp = http::Response::builder()
            .status(201)
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap();
        send.send_response(rsp);
        sent
    });
    let tokens = Tokens::Kubernetes(kube::Client::new(service, "default"));
    let verdict = tokens.review(token).await;
    (verdict, server.await.unwrap())
}

#[tokio::test]
async fn a_reviewed_token_proves_its_service_account() {
    let (verdict, sent) = review(
        "the-token",
        json!({
            "authenticated": true,
            "audiences": ["identity.conduit.io"],
            "user": {"username": "system:serviceaccount:demo:web"}
        }),
    )
    .await;
    assert_eq!(
        verdict,
        Ok(Proven {
            namespace: "demo".into(),
            service_account: "web".into()
        })
    );
    assert_eq!(sent["spec"]["token"], "the-token");
    assert_eq!(sent["spec"]["audiences"], json!(["identity.conduit.io"]));
}

#[tokio::test]
async fn unauthenticated_foreign_audience_and_non_service_account_tokens_prove_nothing() {
    for (status, expected) in [
        (
            json!({"authenticated": false, "error": "token has expired"}),
            "token has expired",
        ),
        (
            json!({"authenticated": true, "audiences": ["https://kubernetes.default.svc"],
                   "user": {"username": "system:serviceaccount:demo:web"}}),
            "audience",
        ),
        (
            json!({"authenticated": true, "audiences": ["identity.conduit.io"],
                   "user": {"username": "alice@example.org"}}),
            "is not a ServiceAccount",
        ),
    ] {
        let (verdict, _) = review("t", status.clone()).await;
        let err = verdict.expect_err(&status.to_string());
        assert!(err.contains(expected), "{status}: {err}");
    }
}
