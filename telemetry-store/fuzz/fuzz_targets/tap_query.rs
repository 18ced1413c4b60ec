//! Tap history queries through the store's whole path (text limits, the
//! prefix rewrite, tantivy's parser, the search) over a few indexed
//! events: any text is a result or a bad query, never a panic, on a
//! thread of the store's 2 MiB stack. The same bytes read as the fields of
//! a tap filter: every filter the API accepts becomes a query the store
//! parses, unless the store's text limits refuse it first (its nesting
//! bound is conservative: it counts a regex's `!` and `+` too).

#![no_main]

use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::tap::v1 as tap;
use conduit_api::tap_filter::Filter;
use conduit_telemetry_store::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = search(text.to_string());
    let Ok(filter) = Filter::try_from(filter_of(text)) else {
        return;
    };
    let query = filter.search_query("", None);
    if let Err(e) = search(query.clone()) {
        let limited = e.contains("--query-max-length") || e.contains("--query-max-depth");
        assert!(limited, "{query:?}: {e}");
    }
});

fn search(query: String) -> Result<usize, String> {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || fuzzing::tap_query(&query))
        .expect("a thread")
        .join()
        .expect("the search panicked")
}

/// Lines: path prefix, method, authority, source `ns/name`, destination
/// `ns/name`; the length picks the direction.
fn filter_of(text: &str) -> tap::Filter {
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or_default().to_string();
    let workload = |s: String| {
        let (namespace, name) = s.split_once('/').unwrap_or(("", &s));
        Some(mesh::DeploymentRef {
            namespace: namespace.into(),
            name: name.into(),
        })
    };
    tap::Filter {
        path_prefix: next(),
        method: next(),
        authority: next(),
        source: workload(next()),
        destination: workload(next()),
        direction: (text.len() % 3) as i32,
    }
}
