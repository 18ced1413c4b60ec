//! Clients that do what no well-behaved one does, to show a server's
//! timeouts and caps hold: a slowloris that trickles its request a byte
//! at a time, and a stream flood that ignores the stream limit a server
//! advertises (on [`crate::raw_h2`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw_h2::{GOAWAY, REFUSED_STREAM, RawH2, open_stream, reset_code};

/// Sends `first`, then `trickle` one byte every 200 ms, until the server
/// closes the connection; returns how long that took (at most `give_up`).
pub async fn closed_after(
    addr: SocketAddr,
    first: &[u8],
    trickle: &[u8],
    give_up: Duration,
) -> Duration {
    let started = Instant::now();
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = conn.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        // EOF or a reset: either way the server is done with us.
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        started.elapsed()
    });
    wr.write_all(first).await.unwrap();
    for b in trickle.iter().cycle() {
        if reader.is_finished() || started.elapsed() > give_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if wr.write_all(&[*b]).await.is_err() {
            break;
        }
    }
    tokio::time::timeout(Duration::from_secs(2), reader)
        .await
        .map(|r| r.unwrap())
        .unwrap_or(give_up)
}

/// What a server answered a stream flood with.
#[derive(Debug)]
pub struct Flood {
    /// Streams refused (RST_STREAM REFUSED_STREAM).
    pub refused: usize,
    /// The GOAWAY's error code, if the server closed the connection.
    pub goaway: Option<u32>,
}

/// Opens `streams` gRPC calls of `path` on one plaintext connection and
/// leaves them open (no END_STREAM), as a client ignoring the server's
/// advertised stream limit would; reads what the server answers for up to
/// 8 s, or until it closes the connection.
pub async fn stream_flood(addr: SocketAddr, path: &str, streams: u32) -> Flood {
    let mut conn = RawH2::connect(addr).await;
    conn.handshake().await;
    let fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "server"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    let flood: Vec<u8> = (0..streams)
        .flat_map(|i| open_stream(2 * i + 1, &fields))
        .collect();
    conn.write(&flood).await;
    let mut out = Flood {
        refused: 0,
        goaway: None,
    };
    out.goaway = conn
        .until(Duration::from_secs(8), |frame| {
            if reset_code(frame) == Some(REFUSED_STREAM) {
                out.refused += 1;
            }
            let (kind, _, _, payload) = frame;
            (*kind == GOAWAY).then(|| u32::from_be_bytes(payload[4..8].try_into().unwrap()))
        })
        .await;
    out
}
