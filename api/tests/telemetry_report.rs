//! A telemetry report survives the wire: encode it with prost, decode it,
//! and the HdrHistogram inside answers the same quantiles as the one the
//! proxy recorded.

use conduit_api::histogram::{self, LATENCY_VALUE_SCALE};
use conduit_api::metrics::{RESPONSE_LATENCY_MS, label};
use conduit_api::proto::telemetry::v1::{HistogramSeries, ProxyMeta, Report};
use conduit_api::{DeploymentRef, Direction, Labels};
use prost::Message;

/// A latency spread like a real service's: mostly fast, a long tail.
fn recorded_latencies() -> hdrhistogram::Histogram<u64> {
    let mut h = histogram::new_latency_histogram();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..10_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let micros = match seed % 100 {
            0..=89 => 200 + seed % 2_000,
            90..=98 => 20_000 + seed % 80_000,
            _ => 500_000 + seed % 1_500_000,
        };
        histogram::record_latency_us(&mut h, micros);
    }
    h
}

#[test]
fn report_round_trips_with_identical_quantiles() {
    let recorded = recorded_latencies();
    let labels = Labels::try_from_pairs([
        (label::DIRECTION, Direction::Inbound.as_str()),
        (label::NAMESPACE, "demo"),
        (label::DEPLOYMENT, "voting"),
    ])
    .unwrap();
    let report = Report {
        proxy: Some(ProxyMeta {
            deployment: Some(DeploymentRef::new("demo", "voting").into()),
            pod: "voting-7d9f-abcde".into(),
            ..Default::default()
        }),
        sequence: 42,
        start_unix_ms: 1_700_000_000_000,
        end_unix_ms: 1_700_000_001_000,
        histograms: vec![HistogramSeries {
            metric: RESPONSE_LATENCY_MS.into(),
            labels: labels.to_proto(),
            hdr: histogram::encode(&recorded).unwrap(),
            value_scale: LATENCY_VALUE_SCALE,
            sum: recorded.mean() * recorded.len() as f64 * LATENCY_VALUE_SCALE,
            exemplars: Vec::new(),
        }],
        ..Default::default()
    };

    let wire = report.encode_to_vec();
    let decoded = Report::decode(wire.as_slice()).unwrap();
    assert_eq!(decoded, report);

    let series = &decoded.histograms[0];
    assert_eq!(Labels::from_proto(series.labels.clone()).unwrap(), labels);
    let received = histogram::decode(&series.hdr).unwrap();
    assert_eq!(received.len(), 10_000);
    for q in [0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
        assert_eq!(
            received.value_at_quantile(q),
            recorded.value_at_quantile(q),
            "quantile {q}"
        );
    }
    // The spread is real: p50 is sub-3 ms, p99 is in the slow tail.
    assert!(received.value_at_quantile(0.5) < 3_000);
    assert!(received.value_at_quantile(0.995) > 400_000);
}

#[test]
fn truncated_report_is_an_error() {
    let report = Report {
        sequence: 7,
        histograms: vec![HistogramSeries {
            metric: RESPONSE_LATENCY_MS.into(),
            hdr: histogram::encode(&recorded_latencies()).unwrap(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let wire = report.encode_to_vec();
    assert!(Report::decode(&wire[..wire.len() / 2]).is_err());
}
