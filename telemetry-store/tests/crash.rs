//! Crash safety with the real binary: kill -9 during ingest, restart on
//! the same data directory, and every acknowledged sample is there — also
//! when the WAL ends in a torn record.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

fn spawn(dir: &Path, fsync: &str) -> StoreProcess {
    StoreProcess::spawn(dir, &["--wal-fsync", fsync])
}

const SERIES: usize = 20;

/// Writes batches until `stop_after` acknowledged ones; returns the
/// acknowledged samples per series.
async fn ingest(addr: SocketAddr, t0: i64, batches: usize) -> Vec<Vec<(i64, f64)>> {
    let mut acked = vec![Vec::new(); SERIES];
    for b in 0..batches {
        let t = t0 + b as i64 * 100;
        let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
        let series: Vec<WriteSeries<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    vec![("__name__", "crash_test"), ("id", id.as_str())],
                    vec![(t, (b * SERIES + i) as f64 + 0.5)],
                )
            })
            .collect();
        let (status, body) = post(
            &format!("http://{addr}/api/v1/write"),
            "application/x-protobuf",
            write_request(&series),
        )
        .await;
        assert_eq!(status, 204, "{body}");
        for (i, s) in series.iter().enumerate() {
            acked[i].extend(&s.1);
        }
    }
    acked
}

async fn stored(addr: SocketAddr, t: i64) -> Vec<Vec<(i64, f64)>> {
    let v = query(addr, "crash_test[1h]", t).await;
    let mut out = vec![Vec::new(); SERIES];
    for s in v["data"]["result"].as_array().expect("matrix") {
        let id: usize = s["metric"]["id"].as_str().unwrap().parse().unwrap();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            out[id].push((t, p[1].as_str().unwrap().parse().unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_sample() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - 600_000;
    let server = spawn(dir.path(), "never");
    let addr = server.http;
    // Acknowledged writes, then more in flight when the kill lands.
    let acked = ingest(addr, t0, 200).await;
    let in_flight = tokio::spawn(async move {
        let mut n = 0;
        loop {
            let series = vec![(
                vec![("__name__", "crash_test"), ("id", "0")],
                vec![(t0 + 1_000_000 + n, 1.0)],
            )];
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                post(
                    &format!("http://{addr}/api/v1/write"),
                    "application/x-protobuf",
                    write_request(&series),
                ),
            )
            .await;
            if r.is_err() {
                return n;
            }
            n += 1;
            if n > 100_000 {
                return n;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut server = server;
    server.child.kill().expect("SIGKILL"); // kill -9
    server.child.wait().unwrap();
    drop(in_flight);

    let server = spawn(dir.path(), "never");
    let got = stored(server.http, t0 + 30_000).await;
    for (i, want) in acked.iter().enumerate() {
        let have: std::collections::HashSet<(i64, u64)> =
            got[i].iter().map(|(t, v)| (*t, v.to_bits())).collect();
        for (t, v) in want {
            assert!(
                have.contains(&(*t, v.to_bits())),
                "series {i}: acknowledged sample ({t}, {v}) lost"
            );
        }
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_wal_tail_is_truncated_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - 600_000;
    let mut server = spawn(dir.path(), "always");
    let acked = ingest(server.http, t0, 50).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // A half-written record at the end of the newest segment.
    let wal = dir.path().join("wal");
    let newest = std::fs::read_dir(&wal)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .chars()
                .all(|c| c.is_ascii_digit())
        })
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .max()
        .expect("a WAL segment");
    let mut data = std::fs::read(&newest).unwrap();
    data.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 2, 9, 9]);
    std::fs::write(&newest, data).unwrap();

    let server = spawn(dir.path(), "always");
    let got = stored(server.http, t0 + 10_000).await;
    assert_eq!(
        got.iter().map(Vec::len).sum::<usize>(),
        acked.iter().map(Vec::len).sum::<usize>()
    );
    let started = Instant::now();
    while !server
        .log
        .lock()
        .unwrap()
        .contains("torn or corrupt record")
    {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no warning logged:\n{}",
            server.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And it keeps ingesting.
    let (status, _) = post(
        &format!("http://{}/api/v1/write", server.http),
        "application/x-protobuf",
        write_request(&[(vec![("__name__", "after")], vec![(t0 + 20_000, 1.0)])]),
    )
    .await;
    assert_eq!(status, 204);
}
