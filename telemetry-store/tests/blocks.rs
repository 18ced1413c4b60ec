//! The head is cut into Arrow blocks, blocks are compacted, everything
//! survives a restart, and retention deletes by age and by size — with
//! every query answering exactly what was written.

mod support;

use std::time::Duration;

use conduit_telemetry_store::{Config, Store};
use support::*;

const STEP: i64 = 10_000;

fn data(t0: i64, points: i64) -> Vec<u8> {
    let ids: Vec<String> = (0..6).map(|i| i.to_string()).collect();
    let series: Vec<WriteSeries<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let samples = (0..points)
                .map(|k| {
                    (
                        t0 + k * STEP,
                        (k * (i as i64 + 1)) as f64 + if i == 5 { 0.25 } else { 0.0 },
                    )
                })
                .collect();
            (
                vec![
                    ("__name__", "block_test"),
                    ("namespace", "demo"),
                    ("deployment", if i % 2 == 0 { "a" } else { "b" }),
                    ("id", id.as_str()),
                ],
                samples,
            )
        })
        .collect();
    write_request(&series)
}

/// (count, sum) of all samples of `block_test` between `from` and `to`.
async fn totals(addr: std::net::SocketAddr, from: i64, to: i64) -> (f64, f64) {
    let range = format!("{}s", (to - from) / 1000);
    let q = |f: &str| format!("sum({f}(block_test[{range}]))");
    let count = query(addr, &q("count_over_time"), to).await;
    let sum = query(addr, &q("sum_over_time"), to).await;
    let num = |v: &serde_json::Value| {
        v["data"]["result"][0]["value"][1]
            .as_str()
            .map_or(0.0, |s| s.parse().unwrap())
    };
    (num(&count), num(&sum))
}

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config::for_data_dir(dir);
    with_tokens(&mut c);
    c.block_duration = Duration::from_secs(60);
    c.maintenance_interval = Duration::from_secs(3600);
    // Blocks span at most a tenth of the retention: 1, 3 and 9 minutes.
    c.retention_time = Duration::from_secs(150 * 60);
    // Raw blocks only (rollups are the downsampling test's subject).
    c.raw_retention = Duration::ZERO;
    c
}

fn expected(points: i64) -> (f64, f64) {
    let per_series: Vec<f64> = (0..6)
        .map(|i| {
            (0..points)
                .map(|k| (k * (i + 1)) as f64 + if i == 5 { 0.25 } else { 0.0 })
                .sum()
        })
        .collect();
    ((6 * points) as f64, per_series.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_compact_restart_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    // 20 minutes of data at 10 s, ending 90 minutes ago.
    let points = 120;
    let t0 = now_ms() - 110 * 60_000;
    let t_end = t0 + (points - 1) * STEP;
    let want = expected(points);
    {
        let store = Store::open(config(dir.path())).unwrap();
        let running = store.start().await.unwrap();
        let (status, body) = post(
            &format!("http://{}/api/v1/write", running.http_addr()),
            "application/x-protobuf",
            data(t0, points),
        )
        .await;
        assert_eq!(status, 204, "{body}");
        assert_eq!(totals(running.http_addr(), t0, t_end).await, want);
        store.maintain().await.unwrap();
        let (_, m) = get(&format!("http://{}/metrics", running.http_addr())).await;
        let value = |name: &str| -> u64 {
            m.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in {m}"))
                .parse()
                .unwrap()
        };
        assert!(value("conduit_store_blocks_cut_total") >= 10, "{m}");
        assert!(value("conduit_store_compactions_total") >= 1, "{m}");
        let blocks = value("conduit_store_blocks");
        assert!((2..10).contains(&blocks), "compaction left {blocks} blocks");
        // Integer counters cost well under a byte per sample in blocks.
        let per_sample = value("conduit_store_block_bytes") as f64 / (6 * points) as f64;
        eprintln!(
            "{blocks} blocks, {per_sample:.2} bytes per sample (small blocks: index and headers dominate)"
        );
        // Same answers from blocks + head as from the head alone.
        assert_eq!(totals(running.http_addr(), t0, t_end).await, want);
        let v = query(
            running.http_addr(),
            "sum by (deployment) (block_test)",
            t0 + 600_000,
        )
        .await;
        assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2, "{v}");
        // Label APIs see block series too.
        let (_, body) = get(&format!(
            "http://{}/api/v1/label/id/values",
            running.http_addr()
        ))
        .await;
        assert_eq!(json(&body)["data"].as_array().unwrap().len(), 6);
        running.shutdown().await.unwrap();
    }
    // A restart reads the blocks and replays what is left of the WAL.
    {
        let store = Store::open(config(dir.path())).unwrap();
        let running = store.start().await.unwrap();
        assert_eq!(totals(running.http_addr(), t0, t_end).await, want);
        running.shutdown().await.unwrap();
    }
    // Retention by age: data older than 100 minutes goes, whole blocks at
    // a time; what stays is still exact.
    {
        let mut c = config(dir.path());
        c.retention_time = Duration::from_secs(100 * 60);
        let store = Store::open(c).unwrap();
        let running = store.start().await.unwrap();
        store.maintain().await.unwrap();
        let (count, _) = totals(running.http_addr(), t0, t_end).await;
        assert!(
            count < want.0 && count > 0.0,
            "age retention kept {count} of {}",
            want.0
        );
        let cutoff = now_ms() - 100 * 60_000;
        let v = query(
            running.http_addr(),
            "count_over_time(block_test[1m])",
            cutoff - 10 * 60_000,
        )
        .await;
        assert!(
            v["data"]["result"].as_array().unwrap().is_empty(),
            "old data still there: {v}"
        );
        running.shutdown().await.unwrap();
    }
    // Retention by size: a tiny budget leaves (almost) nothing on disk.
    {
        let mut c = config(dir.path());
        c.retention_size = 1;
        let store = Store::open(c).unwrap();
        let running = store.start().await.unwrap();
        store.maintain().await.unwrap();
        let (_, m) = get(&format!("http://{}/metrics", running.http_addr())).await;
        assert!(m.contains("conduit_store_blocks 0\n"), "{m}");
        running.shutdown().await.unwrap();
    }
}
