//! `vote-bot`: steady traffic against web, so the mesh always has live
//! numbers. Mostly votes for random emoji, now and then a listing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use crate::emoji::CATALOGUE;
use crate::peer;
use crate::random::Random;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Authority of web
    #[arg(long, default_value = "web.demo.svc.cluster.local:8080")]
    web: String,
    /// The local proxy's outbound address; web is dialed directly if unset
    #[arg(long)]
    outbound_proxy: Option<String>,
    /// Requests per second
    #[arg(long, default_value_t = 50)]
    rps: u32,
    /// Requests in flight at most; ticks beyond it are skipped and counted
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.rps > 0, "--rps must be at least 1");
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let dial = peer::dial_addr(&args.web, args.outbound_proxy.as_deref()).to_string();
    let random = Random::from_time();
    let tally = Arc::new(Tally::default());
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rps);
    let mut report = tokio::time::interval(Duration::from_secs(10));
    tracing::info!(web = %args.web, rps = args.rps, "vote-bot started");
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = report.tick() => {
                tracing::info!(
                    ok = tally.ok.load(Ordering::Relaxed),
                    failed = tally.failed.load(Ordering::Relaxed),
                    skipped = tally.skipped.load(Ordering::Relaxed),
                    "vote-bot totals"
                );
                continue;
            }
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tally.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let path = if random.chance(0.1) {
            "/api/list".to_string()
        } else {
            let (_, code) = CATALOGUE[random.next_u64() as usize % CATALOGUE.len()];
            format!("/api/vote?choice={code}")
        };
        let request = Request::get(format!("http://{dial}{path}"))
            .header(header::HOST, &args.web)
            .body(Empty::new())?;
        let (client, tally) = (client.clone(), tally.clone());
        tokio::spawn(async move {
            let ok = match client.request(request).await {
                Ok(response) => {
                    let success = response.status().is_success();
                    success && response.into_body().collect().await.is_ok()
                }
                Err(e) => {
                    tracing::debug!("request failed: {e}");
                    false
                }
            };
            let counter = if ok { &tally.ok } else { &tally.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}
