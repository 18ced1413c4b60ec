//! Bad input gets a clear error and the store keeps serving: malformed
//! remote-write bodies, bad snappy, bad protobuf, invalid labels, bad
//! PromQL, absurd ranges and steps, too many samples, timeouts, too many
//! series, bad gRPC queries.

mod support;

use std::time::Duration;

use conduit_api::proto::store::v1::query_client::QueryClient;
use conduit_api::proto::store::v1::{GoldenRequest, Matcher, SearchTapRequest, matcher};
use support::*;

async fn write(addr: std::net::SocketAddr, body: Vec<u8>) -> (u16, String) {
    post(
        &format!("http://{addr}/api/v1/write"),
        "application/x-protobuf",
        body,
    )
    .await
}

async fn still_serving(addr: std::net::SocketAddr) {
    assert_eq!(get(&format!("http://{addr}/-/healthy")).await.0, 200);
    let v = query(addr, "vector(1) + 1", now_ms()).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
}

#[tokio::test]
async fn malformed_remote_write_bodies() {
    let s = start_store(|_| {}).await;
    let addr = s.http();
    let t = now_ms();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", vec![], "snappy"),
        (
            "not snappy",
            b"\xff\xff\xff\xff\xff\xff hello".to_vec(),
            "snappy",
        ),
        (
            "snappy of garbage",
            snap::raw::Encoder::new()
                .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
                .unwrap(),
            "protobuf",
        ),
        // A header announcing 1 GiB of output.
        (
            "decompression bomb",
            vec![0x80, 0x80, 0x80, 0x80, 0x04, 0, 0, 0],
            "decompressed body",
        ),
        (
            "invalid label name",
            write_request(&[(vec![("__name__", "m"), ("bad-name", "v")], vec![(t, 1.0)])]),
            "invalid label name \"bad-name\"",
        ),
        (
            "label name starting with a digit",
            write_request(&[(vec![("__name__", "m"), ("1x", "v")], vec![(t, 1.0)])]),
            "invalid label name",
        ),
        (
            "no metric name",
            write_request(&[(vec![("job", "x")], vec![(t, 1.0)])]),
            "without a metric name",
        ),
        (
            "invalid metric name",
            write_request(&[(vec![("__name__", "a-b")], vec![(t, 1.0)])]),
            "invalid metric name",
        ),
        (
            "duplicate label",
            write_request(&[(
                vec![("__name__", "m"), ("a", "1"), ("a", "2")],
                vec![(t, 1.0)],
            )]),
            "more than once",
        ),
    ];
    for (what, body, expect) in cases {
        let (status, msg) = write(addr, body).await;
        assert_eq!(status, 400, "{what}: {msg}");
        assert!(
            msg.contains(expect),
            "{what}: {msg:?} should mention {expect:?}"
        );
    }
    // Invalid UTF-8 in a label value (hand-made, write_request takes &str).
    let mut raw = Vec::new();
    let label = [b"\x0a\x08__name__\x12\x01m".as_slice(), b""].concat();
    let bad = b"\x0a\x01a\x12\x02\xff\xfe";
    let sample = b"\x09\x00\x00\x00\x00\x00\x00\xf0\x3f\x10\x01";
    let mut ts = Vec::new();
    for l in [label.as_slice(), bad.as_slice()] {
        ts.push(0x0a);
        ts.push(l.len() as u8);
        ts.extend_from_slice(l);
    }
    ts.push(0x12);
    ts.push(sample.len() as u8);
    ts.extend_from_slice(sample);
    raw.push(0x0a);
    raw.push(ts.len() as u8);
    raw.extend_from_slice(&ts);
    let (status, msg) = write(addr, snap::raw::Encoder::new().compress_vec(&raw).unwrap()).await;
    assert_eq!(status, 400, "{msg}");
    assert!(msg.contains("UTF-8"), "{msg}");

    // Out-of-order and conflicting samples are refused, the rest stored.
    let ok = write_request(&[(vec![("__name__", "m")], vec![(t, 1.0), (t + 1000, 2.0)])]);
    assert_eq!(write(addr, ok).await.0, 204);
    let late = write_request(&[(
        vec![("__name__", "m")],
        vec![(t - 5000, 1.0), (t + 1000, 3.0), (t + 2000, 4.0)],
    )]);
    let (status, msg) = write(addr, late).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("stored 1 samples")
            && msg.contains("1 out of order")
            && msg.contains("1 duplicate"),
        "{msg}"
    );
    // Re-sending identical samples is fine (remote-write retries).
    let again = write_request(&[(vec![("__name__", "m")], vec![(t + 2000, 4.0)])]);
    assert_eq!(write(addr, again).await.0, 204);
    still_serving(addr).await;
}

#[tokio::test]
async fn bad_queries_get_prometheus_errors() {
    let s = start_store(|_| {}).await;
    let addr = s.http();
    let base = format!("http://{addr}/api/v1");
    let cases = [
        (
            format!("{base}/query?query={}", enc("foo bar")),
            400,
            "bad_data",
            "1:5: parse error",
        ),
        (
            format!("{base}/query?query={}", enc("sum(rate(x[5m])")),
            400,
            "bad_data",
            "unclosed left parenthesis",
        ),
        (
            format!("{base}/query?query={}", enc("rate(x)")),
            400,
            "bad_data",
            "expected type matrix",
        ),
        (
            format!("{base}/query?query={}", enc("{a=~\"(\"}")),
            400,
            "bad_data",
            "illegal regex",
        ),
        (
            format!("{base}/query?query=up&time=yesterday"),
            400,
            "bad_data",
            "invalid parameter \\\"time\\\"",
        ),
        (
            format!("{base}/query_range?query=up&start=10&end=5&step=1"),
            400,
            "bad_data",
            "end timestamp must not be before start time",
        ),
        (
            format!("{base}/query_range?query=up&start=0&end=5&step=0"),
            400,
            "bad_data",
            "zero or negative query resolution step",
        ),
        (
            format!("{base}/query_range?query=up&start=0&end=5&step=-3"),
            400,
            "bad_data",
            "zero or negative query resolution step",
        ),
        (
            format!("{base}/query_range?query=up&start=0&end=100000&step=1"),
            400,
            "bad_data",
            "11,000 points",
        ),
        (
            format!("{base}/query_range?query=up&start=0&end=10&step=lots"),
            400,
            "bad_data",
            "invalid parameter \\\"step\\\"",
        ),
        (
            format!(
                "{base}/query_range?query={}&start=0&end=10&step=1",
                enc("up[5m]")
            ),
            400,
            "bad_data",
            "range vector",
        ),
        (
            format!("{base}/series"),
            400,
            "bad_data",
            "no match[] parameter provided",
        ),
        (
            format!("{base}/series?match[]={}", enc("rate(x[5m])")),
            400,
            "bad_data",
            "not a series selector",
        ),
        (
            format!("{base}/label/bad-name/values"),
            400,
            "bad_data",
            "invalid label name",
        ),
        (
            format!(
                "{base}/query?query={}",
                enc("label_replace(vector(1), \"x\", \"y\", \"z\", \"(\")")
            ),
            422,
            "execution",
            "invalid regular expression",
        ),
        (
            format!("{base}/query?query={}", enc("holt_winters(up[5m], 2, 0.5)")),
            200,
            "",
            "",
        ),
    ];
    for (url, status, kind, msg) in cases {
        let (got, body) = get(&url).await;
        assert_eq!(got, status, "{url}: {body}");
        if status != 200 {
            assert!(
                body.contains(&format!("\"errorType\":\"{kind}\"")),
                "{url}: {body}"
            );
            assert!(body.contains(msg), "{url}: {body} should contain {msg}");
        }
    }
    // Absurd ranges evaluate (to nothing) instead of overflowing.
    for q in [
        "rate(up[100y])",
        "up offset 100y",
        "up @ 99999999999",
        "max_over_time(up[1y:1s])",
    ] {
        let (status, body) = get(&format!("{base}/query?query={}", enc(q))).await;
        assert!(status == 200 || status == 422, "{q}: {status} {body}");
    }
    still_serving(addr).await;
}

#[tokio::test]
async fn limits_give_422_and_503() {
    let s = start_store(|c| c.query_max_samples = 50).await;
    let t = now_ms();
    let samples: Vec<(i64, f64)> = (0..100)
        .map(|i| (t - 100_000 + i * 1000, i as f64))
        .collect();
    assert_eq!(
        write(
            s.http(),
            write_request(&[(vec![("__name__", "many")], samples)])
        )
        .await
        .0,
        204
    );
    let (status, body) = get(&format!(
        "http://{}/api/v1/query?query={}&time={}",
        s.http(),
        enc("sum_over_time(many[5m])"),
        t / 1000
    ))
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("\"errorType\":\"execution\"") && body.contains("too many samples"),
        "{body}"
    );
    let (status, _) = get(&format!(
        "http://{}/api/v1/query?query={}&time={}",
        s.http(),
        enc("many"),
        t / 1000
    ))
    .await;
    assert_eq!(status, 200);

    let slow = start_store(|c| c.query_timeout = Duration::ZERO).await;
    let (status, body) = get(&format!(
        "http://{}/api/v1/query?query=vector(1)",
        slow.http()
    ))
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"errorType\":\"timeout\""), "{body}");
}

#[tokio::test]
async fn too_many_series_are_refused_and_existing_ones_keep_working() {
    let s = start_store(|c| c.max_active_series = 5).await;
    let t = now_ms();
    let ids: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    let series: Vec<WriteSeries<'_>> = ids
        .iter()
        .map(|id| {
            (
                vec![("__name__", "limited"), ("id", id.as_str())],
                vec![(t, 1.0)],
            )
        })
        .collect();
    let (status, msg) = write(s.http(), write_request(&series)).await;
    assert_eq!(status, 400);
    assert!(
        msg.contains("rejected 3 series") && msg.contains("limit of 5 active series"),
        "{msg}"
    );
    // Existing series still take samples.
    let (status, msg) = write(
        s.http(),
        write_request(
            &series[..5]
                .iter()
                .map(|(l, _)| (l.clone(), vec![(t + 1000, 2.0)]))
                .collect::<Vec<_>>(),
        ),
    )
    .await;
    assert_eq!(status, 204, "{msg}");
    let v = query(s.http(), "count(limited)", t + 1000).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "5");
    let (_, metrics) = get(&format!("http://{}/metrics", s.http())).await;
    assert!(
        metrics.contains("conduit_store_series_refused_total 3\n"),
        "{metrics}"
    );
    still_serving(s.http()).await;
}

#[tokio::test]
async fn bad_grpc_queries_are_invalid_argument() {
    let s = start_store(|_| {}).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.grpc()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut q = QueryClient::new(channel);
    let bad_regex = GoldenRequest {
        matchers: vec![Matcher {
            name: "deployment".into(),
            op: matcher::Op::Regex as i32,
            value: "(".into(),
        }],
        ..Default::default()
    };
    assert_eq!(
        q.golden(bad_regex).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let bad_name = GoldenRequest {
        group_by: vec!["not-a-label".into()],
        ..Default::default()
    };
    assert_eq!(
        q.golden(bad_name).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let err = q
        .instant(conduit_api::proto::store::v1::InstantQuery {
            query: "foo bar".into(),
            time_unix_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("parse error"), "{}", err.message());
    let bad_tap = SearchTapRequest {
        query: "status:[1 TO".into(),
        ..Default::default()
    };
    let err = q.search_tap(bad_tap).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("invalid tap query"),
        "{}",
        err.message()
    );
    // An empty Golden answer is not an error.
    assert!(
        q.golden(GoldenRequest::default())
            .await
            .unwrap()
            .into_inner()
            .rows
            .is_empty()
    );
}
