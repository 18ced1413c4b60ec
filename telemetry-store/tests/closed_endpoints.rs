//! What writes data or reveals requests answers only a bearer token:
//! remote write in (`--remote-write-token-file`) and the tap history with
//! the exemplars that name its requests (`--tap-token-file`). Without the header, with another token, or with
//! no token configured at all, the answer is 401 and nothing is stored.
//! PromQL stays open, as Prometheus' does.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use support::*;

async fn call(
    url: &str,
    method: hyper::Method,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    send(req.body(Full::new(Bytes::from(body))).unwrap()).await
}

fn one_series(name: &str) -> Vec<u8> {
    write_request(&[(vec![("__name__", name)], vec![(now_ms(), 1.0)])])
}

async fn stored(s: &TestStore, name: &str) -> usize {
    let v = query(s.http(), name, now_ms()).await;
    v["data"]["result"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn remote_write_needs_the_configured_bearer_token() {
    let s = start_store(|_| {}).await;
    let url = format!("http://{}/api/v1/write", s.http());
    let refused = [
        (None, "needs `Authorization: Bearer"),
        (Some("Bearer not-the-token"), "is not the one"),
        (Some("Basic dXNlcjpwYXNz"), "needs `Authorization: Bearer"),
    ];
    for (auth, says) in refused {
        let (status, body) = call(&url, hyper::Method::POST, auth, one_series("intruder")).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(body.contains(says), "{auth:?}: {body}");
    }
    assert_eq!(
        stored(&s, "intruder").await,
        0,
        "nothing refused was stored"
    );

    let bearer = format!("Bearer {TOKEN}");
    let (status, body) = call(
        &url,
        hyper::Method::POST,
        Some(&bearer),
        one_series("writer"),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(stored(&s, "writer").await, 1);
}

#[tokio::test]
async fn without_a_token_file_remote_write_and_tap_are_closed_to_everyone() {
    let s = start_store(|c| {
        c.remote_write_token_file = None;
        c.tap_token_file = None;
    })
    .await;
    let bearer = format!("Bearer {TOKEN}");
    let write = format!("http://{}/api/v1/write", s.http());
    let (status, body) = call(&write, hyper::Method::POST, Some(&bearer), one_series("w")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("--remote-write-token-file"),
        "says what to do: {body}"
    );
    for path in [
        "/api/v1/tap/search?q=*",
        "/api/v1/tap/follow?q=*",
        "/api/v1/query_exemplars?query=up",
    ] {
        let url = format!("http://{}{path}", s.http());
        let (status, body) = call(&url, hyper::Method::GET, Some(&bearer), vec![]).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("--tap-token-file"), "{path}: {body}");
    }
    // Queries stay open.
    assert_eq!(
        get(&format!("http://{}/api/v1/query?query=1", s.http()))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn the_tap_history_and_exemplars_answer_their_token_only() {
    let s = start_store(|_| {}).await;
    for path in ["/api/v1/tap/search?q=*", "/api/v1/query_exemplars?query=up"] {
        let url = format!("http://{}{path}", s.http());
        let (status, body) = call(&url, hyper::Method::GET, None, vec![]).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = call(&url, hyper::Method::GET, Some("Bearer nope"), vec![]).await;
        assert_eq!(status, 401, "{path}: {body}");
        let (status, body) = get(&url).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
