//! Remote write out: how fast the store forwards what it ingests to a
//! remote-write endpoint (VictoriaMetrics, the fastest receiver at hand,
//! so the figure is the forwarder's), against twice the demo's rate.

use std::time::{Duration, Instant};

use super::http;
use super::peer::Peer;
use super::stream::Stream;

/// Samples per second `conduit demo` produces: 6 proxies (5 Deployments,
/// emoji ×2), each reporting about 200 series (counters, latency windows
/// and the bucket series derived from them) once a second.
pub(crate) const DEMO_SAMPLES_PER_SEC: f64 = 6.0 * 200.0;

pub(crate) struct ForwardFigures {
    pub(crate) samples_per_sec: f64,
    pub(crate) samples: u64,
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends `stream` to `conduit` (which forwards to VictoriaMetrics) and
/// waits until everything is forwarded.
pub(crate) async fn run(conduit: &Peer, stream: &Stream) -> Result<ForwardFigures, String> {
    let client = http::client();
    let began = Instant::now();
    super::ingest(conduit, stream).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (_, m) = http::get(&client, &format!("http://{}/metrics", conduit.http)).await?;
        let sent = metric(&m, "conduit_store_remote_write_sent_samples_total");
        if sent >= stream.samples {
            return Ok(ForwardFigures {
                samples_per_sec: sent as f64 / began.elapsed().as_secs_f64(),
                samples: sent,
            });
        }
        let failed = metric(&m, "conduit_store_remote_write_failed_samples_total");
        if failed > 0 {
            return Err(format!(
                "VictoriaMetrics refused {failed} forwarded samples"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "forwarded only {sent} of {} samples in 10 minutes",
                stream.samples
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
