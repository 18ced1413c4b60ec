//! The gRPC server's caps hold against a client that ignores them: a
//! flood of streams on one connection is refused past the stream cap and
//! the connection closed past the reset cap, connections past the cap wait
//! to be accepted, and a report larger than its limit is refused.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use conduit_api::proto::telemetry::v1::telemetry_client::TelemetryClient;
use conduit_api::proto::telemetry::v1::{CounterSeries, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK header block of literal fields, no indexing, no Huffman.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend(name.as_bytes());
        out.push(value.len() as u8);
        out.extend(value.as_bytes());
    }
    out
}

/// Reads one frame: (type, flags, stream, payload).
async fn read_frame(conn: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    conn.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    conn.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], stream, payload))
}

/// Opens an HTTP/2 connection the way a client must: preface, settings,
/// and an acknowledgement of the server's settings.
async fn handshake(addr: SocketAddr) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(PREFACE).await.unwrap();
    conn.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    loop {
        let (kind, flags, _, _) =
            tokio::time::timeout(Duration::from_secs(5), read_frame(&mut conn))
                .await
                .expect("the server's settings")
                .expect("a frame");
        if kind == SETTINGS && flags & ACK == 0 {
            break;
        }
    }
    conn.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_is_refused_past_the_cap_then_the_connection_closed() {
    let s = start_store(|c| {
        c.grpc_max_streams = 10;
        c.grpc_max_reset_streams = 20;
    })
    .await;
    let mut conn = handshake(s.grpc()).await;
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/conduit.telemetry.v1.Telemetry/Report"),
        (":authority", "store"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    // 100 report streams opened and left open (no END_STREAM), as a
    // client ignoring the advertised 10 would.
    let mut flood = Vec::new();
    for i in 0..100u32 {
        flood.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    conn.write_all(&flood).await.unwrap();
    let (mut refused, mut goaway) = (0, None);
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let Ok(Some((kind, _, _, payload))) =
            tokio::time::timeout(Duration::from_secs(2), read_frame(&mut conn)).await
        else {
            break;
        };
        match kind {
            RST_STREAM
                if u32::from_be_bytes(payload[..4].try_into().unwrap()) == REFUSED_STREAM =>
            {
                refused += 1;
            }
            GOAWAY => {
                goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                break;
            }
            _ => {}
        }
    }
    assert!(refused > 0, "no stream past the cap of 10 was refused");
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "past 20 refused streams the connection is closed ({refused} refused)"
    );
    // Others are served.
    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let summary = client
        .report(tokio_stream::iter(vec![Report::default()]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.accepted_reports, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_and_oversized_reports_are_refused() {
    let s = start_store(|c| {
        c.grpc_max_connections = 2;
        c.grpc_max_report_size = 10_000;
    })
    .await;
    let held = vec![handshake(s.grpc()).await, handshake(s.grpc()).await];
    let mut third = TcpStream::connect(s.grpc()).await.unwrap();
    third.write_all(PREFACE).await.unwrap();
    third.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(700), read_frame(&mut third)).await;
    assert!(early.is_err(), "a third connection was served");
    drop(held);
    let (kind, _, _, _) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut third))
        .await
        .expect("served once a place is free")
        .expect("a frame");
    assert_eq!(kind, SETTINGS);
    drop(third);

    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let big = Report {
        counters: (0..1000)
            .map(|i| CounterSeries {
                metric: "request_total".into(),
                labels: vec![conduit_api::proto::mesh::v1::Label {
                    name: "n".into(),
                    value: i.to_string(),
                }],
                value: 1.0,
            })
            .collect(),
        ..Default::default()
    };
    let err = client
        .report(tokio_stream::iter(vec![big]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_report_stream_is_ended() {
    let s = start_store(|c| c.grpc_report_idle_timeout = Duration::from_secs(1)).await;
    let mut client = TelemetryClient::new(grpc_channel(s.grpc()).await);
    let (tx, rx) = tokio::sync::mpsc::channel::<Report>(1);
    tx.send(Report::default()).await.unwrap();
    let started = Instant::now();
    // The sender stays open and sends nothing more.
    let err = tokio::time::timeout(
        Duration::from_secs(8),
        client.report(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .expect("the silent stream is still open after 8 s")
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    assert!(
        err.message().contains("--grpc-report-idle-timeout"),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    drop(tx);
}
