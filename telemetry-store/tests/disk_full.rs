//! A full disk, for real: the store's data directory is an 8 MiB tmpfs the
//! test fills. Writes get 503 (nothing of them stored), queries still
//! answer, and once space is freed the store takes writes again by itself;
//! after `kill -9` and a restart, exactly the acknowledged writes are
//! there. (A write that failed half-way used to leave a torn frame in the
//! WAL, and replay dropped every acknowledged frame written after it.)

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const SERIES: usize = 20;

/// A tmpfs mounted on a directory of its own, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` to the last byte; returns the
/// filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 16, 1 << 12, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    path
}

/// One sample for each series at `t`; the values tell batches apart.
fn batch(t: i64, b: usize) -> (Vec<u8>, Vec<(usize, i64, f64)>) {
    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();
    let mut samples = Vec::new();
    let series: Vec<WriteSeries<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let v = (b * SERIES + i) as f64;
            samples.push((i, t, v));
            (
                vec![("__name__", "full_test"), ("id", id.as_str())],
                vec![(t, v)],
            )
        })
        .collect();
    (write_request(&series), samples)
}

async fn write(addr: SocketAddr, body: Vec<u8>) -> (u16, String) {
    post(
        &format!("http://{addr}/api/v1/write"),
        "application/x-protobuf",
        body,
    )
    .await
}

/// Every stored sample of `full_test`, sorted.
async fn stored(addr: SocketAddr, t: i64) -> Vec<(usize, i64, u64)> {
    let v = query(addr, "full_test[1h]", t).await;
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().expect("a matrix") {
        let id: usize = s["metric"]["id"].as_str().unwrap().parse().unwrap();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            out.push((id, t, v.to_bits()));
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_answering_and_loses_nothing_acknowledged() {
    let tmpfs = match Tmpfs::mount("8m") {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs for the disk-full test ({e}); run the tests as root"
            );
            return;
        }
    };
    let data = tmpfs.path().join("data");
    let args = ["--tap-retention-time", "0s"];
    let store = StoreProcess::spawn(&data, &args);
    let t0 = now_ms() - 120_000;
    let mut acked: Vec<(usize, i64, u64)> = Vec::new();
    let mut next = 0usize;
    let mut send = |addr| {
        let b = next;
        next += 1;
        let (body, samples) = batch(t0 + b as i64 * 100, b);
        async move { (write(addr, body).await, samples) }
    };
    for _ in 0..20 {
        let ((status, body), samples) = send(store.http).await;
        assert_eq!(status, 204, "{body}");
        acked.extend(samples.iter().map(|&(i, t, v)| (i, t, v.to_bits())));
    }

    let filler = fill(tmpfs.path());
    let mut refused = 0;
    for _ in 0..500 {
        let ((status, body), samples) = send(store.http).await;
        match status {
            204 => acked.extend(samples.iter().map(|&(i, t, v)| (i, t, v.to_bits()))),
            503 => {
                assert!(body.contains("full"), "{body}");
                refused += 1;
                if refused == 5 {
                    break;
                }
            }
            other => panic!("a write on a full disk got {other}: {body}"),
        }
    }
    assert_eq!(refused, 5, "writes kept succeeding on a full disk");
    // Queries still answer, with everything acknowledged.
    assert_eq!(stored(store.http, now_ms()).await, {
        let mut a = acked.clone();
        a.sort_unstable();
        a
    });

    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let mut resumed = 0;
    while resumed < 20 {
        let ((status, body), samples) = send(store.http).await;
        if status == 204 {
            acked.extend(samples.iter().map(|&(i, t, v)| (i, t, v.to_bits())));
            resumed += 1;
        } else {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no write taken 10 s after space was freed: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let log = store.log.lock().unwrap().clone();
    assert!(log.contains("the disk is full"), "{log}");
    assert!(log.contains("takes writes again"), "{log}");

    store.kill_9();
    let store = StoreProcess::spawn(&data, &args);
    acked.sort_unstable();
    assert_eq!(
        stored(store.http, now_ms()).await,
        acked,
        "after kill -9, exactly the acknowledged samples"
    );
    drop(store);
}
