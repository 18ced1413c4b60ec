//! `Top`: the busiest paths of a Deployment, live.
//!
//! Paths are unbounded, so they are not metric labels and the store has no
//! per-path series to ask; like `linkerd viz top`, the figures come from
//! the live tap stream of the Deployment's inbound traffic, aggregated
//! here over a sliding window and sent once a second.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use conduit_api::Classification;
use conduit_api::proto::mesh::v1 as mesh;
use conduit_api::proto::public::v1 as pb;
use conduit_api::proto::tap::v1 as tap;
use conduit_api::tap_filter::Request;
use tokio::sync::mpsc;
use tonic::Status;

use super::tap::limits::MAX_MAX_RPS;
use super::tap::open;
use super::{PublicApi, ServerStream, async_stream, deployment_arg, window};

pub(super) const DEFAULT_TOP_WINDOW: Duration = Duration::from_secs(10);
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 1000;
const TICK: Duration = Duration::from_secs(1);
/// Bounds on memory whatever the traffic: distinct paths, and requests
/// remembered per path within the window.
const MAX_PATHS: usize = 10_000;
const MAX_SAMPLES_PER_PATH: usize = 100_000;

type Key = (String, String, String);

struct Sample {
    at: Instant,
    success: bool,
    latency_ms: f64,
}

/// Requests per path within a sliding window.
pub(super) struct TopWindow {
    window: Duration,
    started: Instant,
    paths: BTreeMap<Key, VecDeque<Sample>>,
}

impl TopWindow {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            started: Instant::now(),
            paths: BTreeMap::new(),
        }
    }

    pub(super) fn record(&mut self, e: &tap::TapEvent, at: Instant) {
        let key = (e.method.clone(), e.authority.clone(), e.path.clone());
        if !self.paths.contains_key(&key) && self.paths.len() >= MAX_PATHS {
            return;
        }
        let samples = self.paths.entry(key).or_default();
        if samples.len() >= MAX_SAMPLES_PER_PATH {
            samples.pop_front();
        }
        let http_status = u16::try_from(e.http_status).unwrap_or(0);
        let success = e.error.is_empty()
            && e.http_status != 0
            && Classification::of_response(http_status, e.grpc_status) == Classification::Success;
        samples.push_back(Sample {
            at,
            success,
            latency_ms: e.response_latency_us as f64 / 1000.0,
        });
    }

    /// The rows at `now`, busiest first, at most `limit`.
    pub(super) fn rows(&mut self, now: Instant, limit: usize) -> Vec<pb::TopRow> {
        let horizon = now.checked_sub(self.window);
        for samples in self.paths.values_mut() {
            while samples
                .front()
                .is_some_and(|s| horizon.is_some_and(|h| s.at < h))
            {
                samples.pop_front();
            }
        }
        self.paths.retain(|_, s| !s.is_empty());
        let covered = now
            .duration_since(self.started)
            .min(self.window)
            .as_secs_f64()
            .max(1.0);
        let mut rows: Vec<pb::TopRow> = self
            .paths
            .iter()
            .map(|((method, authority, path), samples)| pb::TopRow {
                method: method.clone(),
                authority: authority.clone(),
                path: path.clone(),
                metrics: Some(metrics(samples, covered)),
            })
            .collect();
        let count = |r: &pb::TopRow| {
            r.metrics
                .as_ref()
                .map_or(0, |m| m.success_count + m.failure_count)
        };
        rows.sort_by(|a, b| count(b).cmp(&count(a)).then_with(|| a.path.cmp(&b.path)));
        rows.truncate(limit);
        rows
    }
}

fn metrics(samples: &VecDeque<Sample>, seconds: f64) -> pb::GoldenMetrics {
    let success = samples.iter().filter(|s| s.success).count() as u64;
    let total = samples.len() as u64;
    let mut latencies: Vec<f64> = samples.iter().map(|s| s.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        latencies[rank - 1]
    };
    pb::GoldenMetrics {
        success_count: success,
        failure_count: total - success,
        requests_per_second: total as f64 / seconds,
        latency_p50_ms: quantile(0.5),
        latency_p95_ms: quantile(0.95),
        latency_p99_ms: quantile(0.99),
    }
}

impl PublicApi {
    pub(super) async fn top_stream(
        &self,
        req: pb::TopRequest,
    ) -> Result<ServerStream<pb::TopUpdate>, Status> {
        let deployment = deployment_arg("deployment", req.deployment)?;
        let window = window(req.window, DEFAULT_TOP_WINDOW)?;
        let limit = match req.limit {
            0 => DEFAULT_LIMIT,
            n if n > MAX_LIMIT => {
                return Err(Status::invalid_argument(format!(
                    "limit {n} is above the maximum of {MAX_LIMIT}"
                )));
            }
            n => n,
        } as usize;
        let wire = tap::Filter {
            direction: mesh::Direction::Inbound.into(),
            ..Default::default()
        };
        let filter = super::tap::filter(wire.clone())?;
        let mut events = open(
            self.snapshots(),
            &self.inner.links,
            &deployment,
            wire,
            MAX_MAX_RPS,
        )
        .await?;
        Ok(async_stream(
            move |tx: mpsc::Sender<Result<pb::TopUpdate, Status>>| async move {
                let mut top = TopWindow::new(window);
                let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Some(e) if filter.matches(&Request::of_event(&e)) => top.record(&e, Instant::now()),
                            Some(_) => {}
                            None => return,
                        },
                        _ = ticker.tick() => {
                            let rows = top.rows(Instant::now(), limit);
                            if tx.send(Ok(pb::TopUpdate { rows })).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, status: u32, latency_us: u64) -> tap::TapEvent {
        tap::TapEvent {
            method: "GET".into(),
            authority: "web:8080".into(),
            path: path.into(),
            http_status: status,
            response_latency_us: latency_us,
            ..Default::default()
        }
    }

    #[test]
    fn busiest_paths_first_with_their_success_and_latency() {
        let mut top = TopWindow::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..10 {
            top.record(
                &event("/a", if i < 9 { 200 } else { 500 }, (i + 1) * 1000),
                t0,
            );
        }
        for _ in 0..3 {
            top.record(&event("/b", 200, 1000), t0);
        }
        let rows = top.rows(t0 + Duration::from_secs(10), 10);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].path, "/a");
        let m = rows[0].metrics.unwrap();
        assert_eq!((m.success_count, m.failure_count), (9, 1));
        assert_eq!(m.latency_p50_ms, 5.0);
        assert_eq!(m.latency_p99_ms, 10.0);
        assert!((m.requests_per_second - 1.0).abs() < 1e-9);
        assert_eq!(rows[1].path, "/b");
    }

    #[test]
    fn old_requests_leave_the_window() {
        let mut top = TopWindow::new(Duration::from_secs(5));
        let t0 = Instant::now();
        top.record(&event("/old", 200, 1), t0);
        top.record(&event("/new", 200, 1), t0 + Duration::from_secs(4));
        let rows = top.rows(t0 + Duration::from_secs(6), 10);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].path, "/new");
        assert!(top.rows(t0 + Duration::from_secs(20), 10).is_empty());
    }

    #[test]
    fn proxy_errors_count_as_failures() {
        let mut top = TopWindow::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let mut e = event("/x", 0, 1);
        e.error = "timeout".into();
        top.record(&e, t0);
        let m = top.rows(t0, 10)[0].metrics.unwrap();
        assert_eq!(m.failure_count, 1);
    }
}
