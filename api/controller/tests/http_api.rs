//! The controller's HTTP server as the dashboard and curl use it: JSON
//! answers and errors, the dashboard bundle, Server-Sent Events. The store
//! is deliberately absent here, so every store-backed route must fail
//! cleanly; with a store, see the end-to-end tests of `conduit-cli`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use conduit_testbed::{Controller, TempDir, free_addr, http_get, http_get_with};
use serde_json::Value;

const DISCOVERY: &str = "version: 1
namespaces:
  demo:
    deployments:
      web:
        pods:
          - {name: web-0, addr: 127.0.0.1:1, tap: TAP_ADDR}
";

fn start(dir: &TempDir, extra: &[&str]) -> (Controller, String) {
    let path = dir.path().join("discovery.yaml");
    let tap = free_addr();
    std::fs::write(&path, DISCOVERY.replace("TAP_ADDR", &tap.to_string())).unwrap();
    let store = format!("http://{}", free_addr());
    (Controller::start_with_args(&store, &path, extra), store)
}

/// `GET path` with the controller's API token, as `conduit dashboard`'s
/// session presents it.
fn get_json(c: &Controller, path: &str) -> (u16, Value) {
    get_json_as(c, path, &[("authorization", &c.bearer())])
}

fn get_json_as(c: &Controller, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let (status, headers, body) = http_get_with(c.http, path, headers).unwrap();
    let ct = headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(ct, Some("application/json"), "{path}: {body}");
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
    )
}

#[test]
fn json_routes_answer_and_fail_cleanly_without_a_store() {
    let dir = TempDir::new("http");
    let (c, store) = start(&dir, &[]);

    let (status, v) = get_json(&c, "/api/v1/version");
    assert_eq!(status, 200);
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["mode"], "local");
    assert_eq!(v["dashboard_url"], format!("http://{}", c.http));

    let (status, v) = get_json(&c, "/api/v1/stat?namespace=demo");
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["code"], "unavailable");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains(&store) && error.contains("conduit-telemetry-store"),
        "{error}"
    );

    for bad in [
        "/api/v1/stat?window=0s",
        "/api/v1/stat?window=soon",
        "/api/v1/stat?name=Web",
        "/api/v1/stat?colour=blue",
        "/api/v1/stat?namespace=demo&to=deploy/Web",
        "/api/v1/stat?namespace=demo&from=Bad_NS/web",
        "/api/v1/tap/stream?namespace=demo&name=web&to=deploy/web/x",
        "/api/v1/routes?namespace=demo&name=web..x",
        "/api/v1/top?namespace=demo",
        "/api/v1/tap/stream?namespace=demo&name=web&path=nope",
        "/api/v1/tap/stream?namespace=demo&name=web&method=get",
        "/api/v1/tap/search?since=1m&start_ms=5",
        "/api/v1/stat/history?step=500ms",
        "/api/v1/stat/history?range=1h&step=1s",
        "/api/v1/stat/history?range=never",
    ] {
        let (status, v) = get_json(&c, bad);
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["code"], "invalid_argument", "{bad}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }

    let (status, v) = get_json(&c, "/api/v1/tap/stream?namespace=demo&name=nope");
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("demo/nope not found"));

    let (status, v) = get_json(&c, "/api/v1/tap/stream?namespace=demo&name=web");
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the tap server"),
        "{v}"
    );

    let (status, v) = get_json(&c, "/api/v1/no-such-thing");
    assert_eq!(status, 404);
    assert_eq!(v["code"], "not_found");

    let (status, v) = get_json(&c, "/api/v1/check");
    assert_eq!(status, 200);
    let results = v["results"].as_array().unwrap();
    let find = |needle: &str| {
        results
            .iter()
            .find(|r| r["description"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no check about {needle}: {v}"))
    };
    assert_eq!(find("static discovery file")["status"], "ok");
    assert_eq!(find("telemetry store")["status"], "failed");
}

#[test]
fn stat_stream_reports_store_errors_as_events() {
    let dir = TempDir::new("http");
    let (c, _) = start(&dir, &[]);
    let mut s = TcpStream::connect(c.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/v1/stat/stream?namespace=demo&interval=500ms HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut lines = BufReader::new(s).lines();
    let mut saw_type = false;
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while errors < 2 && Instant::now() < deadline {
        let line = lines.next().unwrap().unwrap().to_ascii_lowercase();
        saw_type |= line == "content-type: text/event-stream";
        if line == "event: error" {
            errors += 1;
        }
    }
    assert!(saw_type, "an SSE response");
    assert_eq!(
        errors, 2,
        "the stream keeps reporting while the store is down"
    );
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

#[test]
fn dashboard_bundle_is_served_with_content_types_and_deep_links() {
    let dir = TempDir::new("http");
    let (missing, _) = start(&dir, &["--ui-dir", "/nonexistent/conduit-ui"]);
    let (status, _, body) = http_get(missing.http, "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("cargo xtask ui"), "{body}");

    let ui = TempDir::new("ui");
    write(ui.path(), "index.html", "<html>conduit app</html>");
    write(ui.path(), "app-1234.wasm", "\0asm");
    write(ui.path(), "app-1234.js", "export {}");
    let ui_dir = ui.path().display().to_string();
    let (c, _) = start(&dir, &["--ui-dir", &ui_dir]);
    for (path, content_type, body) in [
        ("/", "text/html; charset=utf-8", "conduit app"),
        (
            "/deployments/demo/web",
            "text/html; charset=utf-8",
            "conduit app",
        ),
        ("/app-1234.wasm", "application/wasm", "\0asm"),
        (
            "/app-1234.js",
            "text/javascript; charset=utf-8",
            "export {}",
        ),
    ] {
        let (status, headers, got) = http_get(c.http, path).unwrap();
        assert_eq!(status, 200, "{path}");
        assert!(
            headers.contains(&("content-type".into(), content_type.into())),
            "{path}: {headers:?}"
        );
        assert!(got.contains(body), "{path}: {got}");
    }
    assert_eq!(http_get(c.http, "/missing.js").unwrap().0, 404);
    assert_eq!(http_get(c.http, "/../etc/passwd").unwrap().0, 400);
}

#[test]
fn tap_top_and_search_answer_the_api_token_or_its_session_cookie_only() {
    let dir = TempDir::new("http");
    let (c, _) = start(&dir, &[]);
    let routes = [
        "/api/v1/tap/stream?namespace=demo&name=web",
        "/api/v1/tap/search?namespace=demo&name=web&since=1h",
        "/api/v1/top?namespace=demo&name=web",
        "/api/v1/top/stream?namespace=demo&name=web",
    ];
    for path in routes {
        let (status, v) = get_json_as(&c, path, &[]);
        assert_eq!(status, 401, "{path}: {v}");
        assert_eq!(v["code"], "unauthenticated", "{path}");
        let (status, _) = get_json_as(&c, path, &[("authorization", "Bearer wrong")]);
        assert_eq!(status, 401, "{path}");
    }

    // `/auth` turns the token into an HTTP-only session cookie and goes on
    // to the dashboard; a wrong token gets no cookie.
    let (status, _, _) = http_get(c.http, "/auth?token=wrong").unwrap();
    assert_eq!(status, 401);
    let (status, headers, _) = http_get(c.http, &format!("/auth?token={}", c.api_token)).unwrap();
    assert_eq!(status, 303);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name}: {headers:?}"))
    };
    assert_eq!(header("location"), "/");
    let cookie = header("set-cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    // Past authorization, the request goes on to find nothing to tap.
    let (status, v) = get_json_as(&c, routes[0], &[("cookie", &session)]);
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the tap server"),
        "{v}"
    );

    // Aggregates stay open.
    let (status, _) = get_json_as(&c, "/api/v1/edges?namespace=demo", &[]);
    assert_ne!(status, 401);
}
