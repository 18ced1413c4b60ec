//! Who may tap on Kubernetes, against a MOCK API server.
//!
//! No API server can run on this machine, so kube's client talks to
//! `tower_test::mock` (as in `token_review.rs`), which answers the
//! TokenReview and the SubjectAccessReview with canned statuses. What runs
//! for real is kube's client and our side: the reviews the controller
//! asks for (the caller's token; verb `tap` on `deployments.tap.conduit.io`
//! in the target namespace, for the user the TokenReview named) and what it
//! makes of the answers.

use std::time::Duration;

use conduit_controller::access::Access;
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

type Handle = mock::Handle<http::Request<Body>, http::Response<Body>>;

/// Answers the next request, which must go to `path`, with its own body
/// plus `status`; returns what was sent.
async fn answer(handle: &mut Handle, path: &str, status: Value) -> Value {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request to {path}"))
        .expect("a request");
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri().path(), path);
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    let mut reply = sent.clone();
    reply["status"] = status;
    send.send_response(
        http::Response::builder()
            .status(201)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    sent
}

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

fn alice() -> Value {
    json!({"authenticated": true, "user": {"username": "alice", "groups": ["dev", "system:authenticated"], "uid": "u1"}})
}

#[tokio::test]
async fn rbac_decides_who_taps_which_namespace_and_allowed_answers_are_reused() {
    let (service, mut handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let access = Access::kubernetes(kube::Client::new(service, "default"), "conduit");

    let api = tokio::spawn(async move {
        let review = answer(&mut handle, TOKEN_REVIEWS, alice()).await;
        let sar = answer(&mut handle, ACCESS_REVIEWS, json!({"allowed": true})).await;
        // The next call for the same token and namespace asks nothing; a
        // call for another namespace asks again and is denied.
        answer(&mut handle, TOKEN_REVIEWS, alice()).await;
        answer(
            &mut handle,
            ACCESS_REVIEWS,
            json!({"allowed": false, "reason": "no RoleBinding"}),
        )
        .await;
        (review, sar, handle)
    });
    access
        .may_tap(Some("alice-token"), Some("demo"))
        .await
        .unwrap();
    access
        .may_tap(Some("alice-token"), Some("demo"))
        .await
        .unwrap();
    let denied = access
        .may_tap(Some("alice-token"), Some("prod"))
        .await
        .unwrap_err();
    let (review, sar, mut handle) = api.await.unwrap();

    assert_eq!(review["spec"]["token"], "alice-token");
    let spec = &sar["spec"];
    assert_eq!(spec["user"], "alice");
    assert_eq!(spec["groups"], json!(["dev", "system:authenticated"]));
    assert_eq!(spec["uid"], "u1");
    let attrs = &spec["resourceAttributes"];
    assert_eq!(attrs["verb"], "tap");
    assert_eq!(attrs["group"], "tap.conduit.io");
    assert_eq!(attrs["resource"], "deployments");
    assert_eq!(attrs["namespace"], "demo");

    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let m = denied.message();
    assert!(
        m.contains("alice") && m.contains("prod") && m.contains("no RoleBinding"),
        "{m}"
    );
    // Nothing more was asked.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), handle.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_unauthenticated_or_missing_token_taps_nothing() {
    let (service, mut handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let access = Access::kubernetes(kube::Client::new(service, "default"), "conduit");
    let e = access.may_tap(None, Some("demo")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("Kubernetes bearer token"), "{e:?}");

    let api = tokio::spawn(async move {
        answer(
            &mut handle,
            TOKEN_REVIEWS,
            json!({"authenticated": false, "error": "token expired"}),
        )
        .await;
        handle
    });
    let e = access.may_tap(Some("old"), Some("demo")).await.unwrap_err();
    api.await.unwrap();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("token expired"), "{e:?}");
}

#[tokio::test]
async fn tapping_the_whole_mesh_asks_for_cluster_wide_rights() {
    let (service, mut handle) = mock::pair::<http::Request<Body>, http::Response<Body>>();
    let access = Access::kubernetes(kube::Client::new(service, "default"), "conduit");
    let api = tokio::spawn(async move {
        answer(&mut handle, TOKEN_REVIEWS, alice()).await;
        answer(&mut handle, ACCESS_REVIEWS, json!({"allowed": true})).await
    });
    access.may_tap(Some("t"), None).await.unwrap();
    let sar = api.await.unwrap();
    assert!(
        sar["spec"]["resourceAttributes"].get("namespace").is_none(),
        "{sar}"
    );
}
