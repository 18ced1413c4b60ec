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

/// Anyone may call Certify, and each call may cost a TokenReview: past
/// `--max-concurrent-certify` requests in flight, more are refused at once
/// (RESOURCE_EXHAUSTED, counted as `busy`) instead of queueing reviews on
/// the API server.
#[tokio::test]
async fn certify_requests_past_the_concurrency_cap_are_refused_at_once() {
    use conduit_api::proto::identity::v1::CertifyRequest;
    use conduit_api::proto::identity::v1::identity_server::Identity;
    use conduit_controller::identity::issuer::Issuer;
    use conduit_controller::identity::{IdentityService, IdentityStats};
    use std::sync::Arc;

    let roots = conduit_deploy::IdentityRoots::generate(time::OffsetDateTime::now_utc()).unwrap();
    let issuer = Issuer::from_pem(
        &roots.issuer_certificate_pem,
        &roots.issuer_key_pem,
        conduit_identity::TrustAnchors::from_pem(&roots.trust_anchors_pem).unwrap(),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let (api, mut handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let stats = Arc::new(IdentityStats::default());
    let service = Arc::new(IdentityService::new(
        Arc::new(issuer),
        Tokens::Kubernetes(kube::Client::new(api, "default")),
        "cluster.local".into(),
        stats.clone(),
        1,
    ));
    let request = || {
        tonic::Request::new(CertifyRequest {
            identity: "web.demo.serviceaccount.identity.conduit.cluster.local".into(),
            token: b"t".to_vec(),
            certificate_signing_request: vec![],
        })
    };
    // The first waits on its TokenReview, which the mock API server holds.
    let first = tokio::spawn({
        let service = service.clone();
        async move { service.certify(request()).await }
    });
    let (_review, answer) = handle.next_request().await.expect("a TokenReview");
    let busy = service.certify(request()).await.unwrap_err();
    assert_eq!(busy.code(), tonic::Code::ResourceExhausted, "{busy:?}");
    assert!(
        busy.message().contains("--max-concurrent-certify"),
        "{busy:?}"
    );
    assert_eq!(stats.refused("busy"), 1);
    let refused = serde_json::to_vec(&json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "status": {"authenticated": false, "error": "expired"}
    }))
    .unwrap();
    answer.send_response(
        http::Response::builder()
            .status(201)
            .body(Body::from(refused))
            .unwrap(),
    );
    assert_eq!(
        first.await.unwrap().unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
}
