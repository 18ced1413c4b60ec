//! The Grafana dashboards `conduit install` ships (`deploy/grafana/`)
//! work against Conduit's own telemetry store: every panel query and
//! template variable of every dashboard is sent, as Grafana sends it, to
//! the real store fed by real proxies carrying real traffic, and must
//! succeed and return series.
//!
//! ```text
//! load ──> web proxy (outbound) ──> api proxy (inbound) ──> upstream (every 4th request 500)
//!              └──── telemetry ──> store <── PromQL HTTP API ── this test
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conduit_deploy::grafana;
use conduit_testbed::{Proxy, ProxySpec, Store, Upstream, UpstreamSpec, drive_load, http_get};
use serde_json::Value;

const NAMESPACE: &str = "shop";
const API: &str = "api.shop.svc.cluster.local:8080";

/// `GET /api/v1/<endpoint>?<param>=<value>` on the store, as JSON.
fn store_api(store: SocketAddr, endpoint: &str, param: &str, value: &str) -> Value {
    let path = format!(
        "/api/v1/{endpoint}?{param}={}",
        conduit_testbed::query_escape(value)
    );
    let (status, _, body) = http_get(store, &path).expect("query the store");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    assert_eq!(status, 200, "{value}: {body}");
    assert_eq!(json["status"], "success", "{value}: {body}");
    json
}

/// The query Grafana sends for one choice of the dashboard's variables.
fn expand(expr: &str, deployment: &str) -> String {
    expr.replace("$namespace", NAMESPACE)
        .replace("$deployment", deployment)
}

#[test]
fn every_dashboard_query_returns_data_from_the_store() {
    let store = Store::start();
    let app = Upstream::start(UpstreamSpec {
        delay: Duration::ZERO,
        fail_every: 4,
    });
    let proxy = |deployment: &str, extra: Vec<String>| {
        Proxy::start(ProxySpec {
            namespace: NAMESPACE,
            deployment,
            pod: &format!("{deployment}-0"),
            app: app.addr,
            telemetry: Some(store.grpc_url()),
            destination: None,
            extra,
        })
    };
    let api = proxy("api", vec![]);
    let web = proxy(
        "web",
        vec![
            "--outbound-endpoint".into(),
            format!("{API}={};h2;deployment={NAMESPACE}/api", api.inbound),
        ],
    );
    let (statuses, _) = drive_load(web.outbound, API, &["/a", "/b"], 40, Duration::from_secs(3));
    assert_eq!(statuses.values().sum::<u64>(), 120, "{statuses:?}");
    assert!(statuses.contains_key(&500), "{statuses:?}");

    // Reports arrive every second; wait until both sides are in the store.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (direction, deployment) in [("inbound", "api"), ("outbound", "web")] {
        let probe = format!(
            "request_total{{direction=\"{direction}\", namespace=\"{NAMESPACE}\", deployment=\"{deployment}\"}}"
        );
        while store_api(store.http, "query", "query", &probe)["data"]["result"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            assert!(Instant::now() < deadline, "no {probe} in the store");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // Two reports at least, so that rate() has two samples.
    std::thread::sleep(Duration::from_secs(2));

    let queries = grafana::queries();
    assert!(queries.len() > 10);
    for query in queries {
        if query.panel.starts_with("variable ") {
            // Grafana resolves label_values(SELECTOR, label) with /series.
            let series = store_api(store.http, "series", "match[]", &expand(&query.expr, "api"));
            let found = series["data"].as_array().unwrap();
            assert!(
                !found.is_empty(),
                "{} {}: no series",
                query.dashboard,
                query.panel
            );
            continue;
        }
        // A Deployment's panels get data for the side it has: `api` has
        // inbound traffic, `web` outbound.
        let results: Vec<usize> = ["api", "web"]
            .iter()
            .map(|deployment| {
                let json = store_api(
                    store.http,
                    "query",
                    "query",
                    &expand(&query.expr, deployment),
                );
                json["data"]["result"].as_array().map_or(0, Vec::len)
            })
            .collect();
        assert!(
            results.iter().any(|&n| n > 0),
            "{} / {}: no data for {}",
            query.dashboard,
            query.panel,
            query.expr
        );
    }

    // The numbers are the traffic's: one request in four failed.
    let success = store_api(
        store.http,
        "query",
        "query",
        &expand(
            r#"sum(increase(response_total{direction="inbound", namespace="$namespace", deployment="$deployment", classification="success"}[1m])) / sum(increase(response_total{direction="inbound", namespace="$namespace", deployment="$deployment"}[1m]))"#,
            "api",
        ),
    );
    let ratio: f64 = success["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((ratio - 0.75).abs() < 0.02, "success ratio {ratio}");
}
